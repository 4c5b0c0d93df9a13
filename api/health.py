"""Liveness and readiness probes."""

from __future__ import annotations

import logging

import trio
from quart import Response
from quart_trio import QuartTrio

from persistence.errors import DatabaseError
from persistence.migrations import pending_migrations

from .rendering import json_response
from .runtime import Runtime

log = logging.getLogger(__name__)

_READY_TIMEOUT = 2.0


def register_health(app: QuartTrio, runtime: Runtime) -> None:
    """Add /healthz (the process serves HTTP) and /readyz (the database answers, schema current)."""

    @app.get("/healthz")
    async def healthz() -> Response:
        """Liveness: the process serves HTTP."""
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        """Readiness: the database responds and its schema is current."""
        problem = None
        with trio.move_on_after(_READY_TIMEOUT) as scope:
            try:
                pending = await pending_migrations(runtime.database)
            except DatabaseError as error:
                problem = f"database unavailable: {error}"
            else:
                if pending:
                    problem = f"migrations not applied: {pending}"
        if scope.cancelled_caught:
            problem = f"database did not answer within {_READY_TIMEOUT:.0f} s"
        if problem is not None:
            log.warning("readiness check failed: %s", problem)
            response = json_response({"status": "unavailable", "error": problem, "code": "not_ready"}, 503)
            response.headers["Retry-After"] = "1"
            return response
        return json_response({"status": "ok"})
