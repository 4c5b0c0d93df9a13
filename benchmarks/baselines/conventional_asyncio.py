"""Conventional baseline as most Python developers would build it.

Plain Quart on Hypercorn's asyncio worker with uvloop, asyncpg used
directly: one pooled connection and one transaction per request with
``SELECT ... FOR UPDATE`` (see ``conventional_sql``). Serve with
``hypercorn --worker-class uvloop --workers 0 benchmarks.baselines.conventional_asyncio:app``
and TICKETS_DATABASE_URL set.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from quart import Quart, Response

from api.config import Settings
from api.errors import error_response

from .routes import configure_app, register_routes

log = logging.getLogger(__name__)

# Same acquire timeout as the service's Database.
ACQUIRE_TIMEOUT = 5.0


def create_app(settings: Settings) -> Quart:
    if settings.database_url is None:
        raise RuntimeError("TICKETS_DATABASE_URL must be set for the conventional-asyncio baseline")
    app = Quart(__name__)
    configure_app(app, settings)
    pools: list[asyncpg.Pool] = []

    @app.before_serving
    async def open_pool() -> None:
        pools.append(
            await asyncpg.create_pool(
                settings.database_url,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                command_timeout=settings.db_command_timeout,
            )
        )

    @app.after_serving
    async def close_pool() -> None:
        await pools.pop().close()

    @app.errorhandler(asyncpg.PostgresError)
    @app.errorhandler(asyncpg.InterfaceError)
    @app.errorhandler(asyncio.TimeoutError)
    @app.errorhandler(OSError)
    async def database_error(error: Exception) -> Response:
        log.warning("request failed with a database error: %s: %s", type(error).__name__, error)
        return error_response(503, "database_unavailable", "the database did not complete the request; retry later", {"Retry-After": "1"})

    async def in_transaction(work, *args):
        async with pools[0].acquire(timeout=ACQUIRE_TIMEOUT) as connection:
            async with connection.transaction():
                return await work(connection, *args)

    async def on_connection(work, *args):
        async with pools[0].acquire(timeout=ACQUIRE_TIMEOUT) as connection:
            return await work(connection, *args)

    register_routes(app, settings, in_transaction, on_connection)
    return app


app = create_app(Settings())
