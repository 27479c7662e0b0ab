"""Browser-facing protections: security headers on every response and a ``Host`` allow-list.

A server bound to a loopback address is reachable by any web page the user opens, through
DNS rebinding (a hostile name that resolves to 127.0.0.1): refusing unknown ``Host`` headers
closes that door. :func:`loopback_hosts` gives the names such a server accepts by default.
"""

from __future__ import annotations

import ipaddress
import json

#: The page and its static files: scripts, styles and fetches from this server only; photos as blob: URLs.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: Swagger UI at /docs starts itself with an inline script and styles elements inline.
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as given to ``--host``) is a loopback address or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_hosts(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Host names a loopback-bound server accepts: ``localhost``, ``127.0.0.1``, ``::1`` and ``extra``."""
    return ["localhost", "127.0.0.1", "::1", *extra]


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8000`` → ``::1``), lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response; ``allowed_hosts`` (None: any) checked first."""

    def __init__(self, app, allowed_hosts: list[str] | None = None):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = (DOCS_POLICY if scope["path"] == "/docs" else PAGE_POLICY).encode()
        extra = [*_COMMON, (b"content-security-policy", policy)]

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if self.allowed is not None:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), "")
            if host_name(host) not in self.allowed:
                body = json.dumps({"detail": f"host {host!r} is not allowed (imgclf serve --allowed-host NAME)"}).encode()
                await with_headers({"type": "http.response.start", "status": 400,
                                    "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode())]})
                return await send({"type": "http.response.body", "body": body})
        return await self.app(scope, receive, with_headers)
