"""ASGI wrappers: a cap on the HTTP requests one process handles at once, and a shielded last send."""

from __future__ import annotations

import logging
from typing import Any

import trio

from .rendering import error_body

log = logging.getLogger(__name__)

# Probes keep responding when the process is saturated, so an orchestrator
# finds it overloaded but alive instead of restarting it.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})


class ConcurrencyLimit:
    """ASGI middleware: respond 503 with Retry-After, without reading the body, past ``limit`` running requests."""

    def __init__(self, app: Any, limit: int) -> None:
        self._app = app
        self.limit = limit
        self.active = 0
        self.rejected = 0
        self._rejected_logged = 0
        self._next_log = 0.0
        self._body = error_body(
            f"the server is handling its maximum of {limit} requests; retry later", "overloaded"
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self._app(scope, receive, send)
            return
        if self.active >= self.limit:
            await self._reject(send)
            return
        self.active += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.active -= 1

    async def _reject(self, send: Any) -> None:
        self.rejected += 1
        now = trio.current_time()
        if now >= self._next_log:
            log.warning(
                "rejected %d requests with 503 since the last report: %d requests already running (limit %d)",
                self.rejected - self._rejected_logged,
                self.active,
                self.limit,
            )
            self._rejected_logged = self.rejected
            self._next_log = now + 1.0
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(self._body)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body})


class ShieldedLastSend:
    """ASGI middleware: shield the last body message of each response from cancellation.

    Hypercorn 0.18 closes a ``Connection: close`` connection inside the
    app's last ``send``. Quart-Trio cancels the request's nursery as soon as
    the disconnect message arrives, which can cancel that close half-way.
    The client then has its full response, but the socket stays open until
    the read timeout, and a graceful shutdown waits for it. Hypercorn
    shields its own socket writes, so shielding the last send adds no new
    way to block.
    """

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_last_shielded(message: dict) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await self._app(scope, receive, send_last_shielded)
