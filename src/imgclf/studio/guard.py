"""What keeps other web pages out of a studio: every request that changes anything must carry this session's token
(``X-Studio-Token``, which only the studio's own page can read) and come from the studio's own origin.

A page on another site can make the browser send requests to 127.0.0.1, but cannot read the studio's page to learn the
token, and its requests carry its own ``Origin``: both are refused with 403 before anything runs. Every response says
``Cross-Origin-Resource-Policy: same-origin``, so another site cannot show the project's photos in its own page
either. (The ``Host`` check against DNS rebinding is :class:`~imgclf.serve.security.SecurityHeaders`'.)
"""

from __future__ import annotations

import hmac
import json
import secrets

#: The header the page sends the token in.
TOKEN_HEADER = b"x-studio-token"
_SAFE = ("GET", "HEAD", "OPTIONS")
_SAME_ORIGIN = (b"cross-origin-resource-policy", b"same-origin")


def new_token() -> str:
    return secrets.token_urlsafe(24)


class ChangeGuard:
    """ASGI middleware: requests other than GET, HEAD and OPTIONS need the token and a matching ``Origin``."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def same_origin(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), _SAME_ORIGIN]}
            await send(message)

        if scope["method"] in _SAFE:
            return await self.app(scope, receive, same_origin)
        headers = dict(scope.get("headers", ()))
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin not in (f"http://{host}", f"https://{host}"):
            return await _refuse(same_origin, "refused: this request does not come from the studio's own page (Origin)")
        if not hmac.compare_digest(headers.get(TOKEN_HEADER, b""), self.token):
            return await _refuse(same_origin, "refused: this request lacks the studio's session token; reload the page")
        return await self.app(scope, receive, same_origin)


async def _refuse(send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
