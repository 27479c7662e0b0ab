"""Upload limits: bodies over ``--max-upload-mb`` are refused without being buffered."""

from __future__ import annotations

import asyncio
import json

#: Multipart framing (boundaries, part headers) allowed on top of --max-upload-mb.
MULTIPART_SLACK = 64 * 1024


class PayloadTooLarge(Exception):
    """The request body went over the limit while it was being received."""

    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


def too_large_message(limit_bytes: int) -> str:
    return f"upload too large: over {limit_bytes / 2**20:g} MB (the server's --max-upload-mb)"


class UploadLimit:
    """ASGI middleware: refuse bodies over the limit without buffering them.

    A declared ``Content-Length`` over the limit is answered with 413 before any of the
    body is read; a chunked (or lying) body is counted as it arrives and the request
    fails with :class:`PayloadTooLarge` (413) as soon as it goes over. The 413 goes out
    at once; the server then reads and discards what the client is still sending for at
    most :attr:`DRAIN_SECONDS` (nginx's "lingering close"), so a client that only reads
    the answer after sending everything gets the 413 instead of a connection reset.
    """

    DRAIN_SECONDS = 1.0
    DRAIN_BYTES = 256 * 2**20

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limit + MULTIPART_SLACK
        headers = dict(scope.get("headers", ()))
        try:
            declared = int(headers[b"content-length"]) if b"content-length" in headers else None
        except ValueError:
            declared = None
        if declared is not None and declared > limit:
            # With "Expect: 100-continue" the client waits for our verdict: nothing to drain.
            drain = headers.get(b"expect", b"").lower() != b"100-continue"
            return await self._reject(receive, send, drain)
        received = 0
        over = False

        async def limited_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise PayloadTooLarge(self.limit)
            return message

        async def lingering_send(message):
            if over and message["type"] == "http.response.body" and not message.get("more_body", False):
                await send({**message, "more_body": True})
                await self._drain(receive)
                return await send({"type": "http.response.body", "body": b"", "more_body": False})
            return await send(message)

        return await self.app(scope, limited_receive, lingering_send)

    async def _reject(self, receive, send, drain: bool) -> None:
        body = json.dumps({"detail": too_large_message(self.limit)}).encode()
        await send({
            "type": "http.response.start", "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body, "more_body": drain})
        if drain:
            await self._drain(receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _drain(self, receive) -> None:
        """Read and drop the rest of the body, for a bounded time and size."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.DRAIN_SECONDS
        dropped = 0
        while dropped < self.DRAIN_BYTES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except (asyncio.TimeoutError, Exception):
                return
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
