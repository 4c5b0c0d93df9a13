"""Conventional baseline on the service's stack: Quart-Trio, Hypercorn's trio worker, the uvloop bridge.

Every buy, book or cancel is one PostgreSQL transaction with
``SELECT ... FOR UPDATE`` (see ``conventional_sql``), handed to the bridge
thread whole, exactly as the service crosses it once per batch. No actors,
no batching. Serve with
``hypercorn --worker-class trio --workers 0 benchmarks.baselines.conventional_trio:app``
and TICKETS_DATABASE_URL set.
"""

from __future__ import annotations

import logging

from quart import Response
from quart_trio import QuartTrio

from api.config import Settings
from api.errors import error_response
from persistence.database import Database
from persistence.errors import DatabaseError

from .routes import configure_app, register_routes

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> QuartTrio:
    if settings.database_url is None:
        raise RuntimeError("TICKETS_DATABASE_URL must be set for the conventional-trio baseline")
    app = QuartTrio(__name__)
    configure_app(app, settings)
    databases: list[Database] = []

    @app.before_serving
    async def open_pool() -> None:
        databases.append(
            await Database.open(
                settings.database_url,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                command_timeout=settings.db_command_timeout,
            )
        )

    @app.after_serving
    async def close_pool() -> None:
        await databases.pop().close()

    @app.errorhandler(DatabaseError)
    async def database_error(error: DatabaseError) -> Response:
        log.warning("request failed with a database error: %s", error)
        return error_response(503, "database_unavailable", "the database did not complete the request; retry later", {"Retry-After": "1"})

    async def in_transaction(work, *args):
        return await databases[0].transaction(work, *args)

    async def on_connection(work, *args):
        return await databases[0].connection(work, *args)

    register_routes(app, settings, in_transaction, on_connection)
    return app


app = create_app(Settings())
