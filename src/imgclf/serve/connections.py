"""A uvicorn HTTP protocol that drops slow clients and bounds open connections.

uvicorn's own ``--timeout-keep-alive`` only closes idle connections between requests, and
any byte received resets it: a client sending its headers or body a few bytes at a time
(slow-loris) holds a connection forever. :class:`GuardedH11Protocol` closes a connection whose
request headers are not complete ``T`` seconds after it opened (or after the last response), or
whose body arrives slower than :attr:`MIN_BODY_RATE` bytes a second over a window of ``T / 2``
seconds, and refuses connections beyond :attr:`MAX_CONNECTIONS`. ``T`` is
``$IMGCLF_SERVE_REQUEST_TIMEOUT`` (``imgclf serve --request-timeout``; 10 s by default), read
from the environment so that every worker process gets it.
"""

from __future__ import annotations

import logging
import os

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("imgclf.serve")


TIMEOUT_VARIABLE = "IMGCLF_SERVE_REQUEST_TIMEOUT"
DEFAULT_TIMEOUT = 10.0


class GuardedH11Protocol(H11Protocol):
    MIN_BODY_RATE = 1024
    MAX_CONNECTIONS = 512

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.HEADER_SECONDS = float(os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT)
        self.WINDOW_SECONDS = self.HEADER_SECONDS / 2
        if len(self.connections) > self.MAX_CONNECTIONS:
            log.warning("refused a connection: %d open, the limit is %d", len(self.connections) - 1, self.MAX_CONNECTIONS)
            self.transport.close()
            return
        self._received = 0
        self._request_started = self.loop.time()
        self._window_start, self._window_bytes = self._request_started, 0
        self._guard = self.loop.call_later(self.WINDOW_SECONDS, self._check)

    def connection_lost(self, exc) -> None:
        guard = getattr(self, "_guard", None)
        if guard is not None:
            guard.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._window_bytes += len(data)
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._request_started = self.loop.time()  # the next request's headers are due from now

    def _check(self) -> None:
        if self.transport.is_closing():
            return
        now = self.loop.time()
        state = self.conn.their_state
        waiting_for_headers = state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)
        if waiting_for_headers and now - self._request_started > self.HEADER_SECONDS:
            return self._drop("request headers not complete after %.0f s" % self.HEADER_SECONDS)
        if state is h11.SEND_BODY and not self.flow.read_paused and now - self._window_start >= self.WINDOW_SECONDS:
            rate = self._window_bytes / (now - self._window_start)
            if rate < self.MIN_BODY_RATE:
                return self._drop("request body arriving at %.0f bytes/s" % rate)
        if now - self._window_start >= self.WINDOW_SECONDS:
            self._window_start, self._window_bytes = now, 0
        self._guard = self.loop.call_later(self.WINDOW_SECONDS, self._check)

    def _drop(self, why: str) -> None:
        host, port = self.client or ("?", 0)
        log.warning("dropped a slow client %s:%s: %s", host, port, why)
        self.transport.close()
