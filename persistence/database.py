"""A pool of asyncpg connections, used from trio through the bridge."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import trio

from .bridge import AsyncioBridge
from .errors import DatabaseError, map_database_errors

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class Database:
    """An asyncpg pool living on an asyncio bridge thread.

    ``transaction`` and ``connection`` hand a whole coroutine to the asyncio
    thread, so each transaction crosses the thread boundary once.
    """

    def __init__(
        self, bridge: AsyncioBridge, pool: asyncpg.Pool, dsn: str, *, owns_bridge: bool, acquire_timeout: float
    ) -> None:
        self.bridge = bridge
        self.pool = pool
        self.dsn = dsn
        self.acquire_timeout = acquire_timeout
        self._owns_bridge = owns_bridge

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        acquire_timeout: float = 5.0,
        command_timeout: float = 10.0,
        idle_in_transaction_timeout: float | None = None,
        bridge: AsyncioBridge | None = None,
    ) -> Database:
        """Connect a pool; raise DatabaseUnavailable when the server does not answer.

        ``idle_in_transaction_timeout`` (seconds) makes the server end a
        session that leaves a transaction open that long without sending a
        statement, as a stopped or frozen process does, so its row locks do
        not outlive it.
        """
        owns_bridge = bridge is None
        bridge = bridge or AsyncioBridge()
        # An application_name in the URL wins, so that pg_stat_activity can
        # distinguish several instances on one server.
        server_settings = {} if "application_name" in parse_qs(urlsplit(dsn).query) else {"application_name": "tickets"}
        if idle_in_transaction_timeout is not None:
            server_settings["idle_in_transaction_session_timeout"] = str(max(1, round(idle_in_transaction_timeout * 1000)))

        async def create() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=command_timeout,
                timeout=acquire_timeout,
                server_settings=server_settings,
                reset=_keep_session,
            )

        try:
            pool = await bridge.run(map_database_errors(create))
        except BaseException:
            if owns_bridge:
                bridge.close()
            raise
        database = cls(bridge, pool, dsn, owns_bridge=owns_bridge, acquire_timeout=acquire_timeout)
        log.info("database pool open (min %d, max %d connections)", min_size, max_size)
        return database

    async def connection(
        self, work: Callable[Concatenate[asyncpg.Connection, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``work(connection, ...)`` on a pooled connection, outside a transaction."""

        async def run() -> T:
            async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
                return await work(connection, *args, **kwargs)

        return await self.bridge.run(map_database_errors(run))

    async def transaction(
        self, work: Callable[Concatenate[asyncpg.Connection, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``work(connection, ...)`` inside one transaction; commit if it returns."""

        async def run() -> T:
            async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
                async with connection.transaction():
                    return await work(connection, *args, **kwargs)

        return await self.bridge.run(map_database_errors(run))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.connection(lambda connection: connection.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.connection(lambda connection: connection.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.connection(lambda connection: connection.fetchval(query, *args))

    async def execute(self, query: str, *args: Any) -> str:
        return await self.connection(lambda connection: connection.execute(query, *args))

    async def close(self, timeout: float = 10.0) -> None:
        """Close the pool, then the bridge; terminate the connections still busy after ``timeout`` seconds.

        Shielded from cancellation: a cancelled close would leave the
        connections open on the server until this process exits.
        """
        with trio.CancelScope(shield=True):
            try:
                with trio.move_on_after(timeout) as scope:
                    try:
                        await self.bridge.run(map_database_errors(self.pool.close))
                    except DatabaseError as error:
                        log.warning("database pool closed with an error: %s", error)
                if scope.cancelled_caught:
                    log.warning("database pool did not close within %.0f s; terminating its connections", timeout)
                    await self.bridge.run(self._terminate)
            finally:
                if self._owns_bridge:
                    self.bridge.close()
        log.info("database pool closed")

    async def _terminate(self) -> None:
        self.pool.terminate()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Return a released connection to the pool as it is.

    asyncpg's default reset sends one more query on every release (unlock
    advisory locks, close cursors, UNLISTEN, RESET ALL) to undo session
    state. Pooled sessions here never keep any: advisory locks are
    transaction-scoped, LISTEN has its own connection, nothing runs SET. The
    pool still rolls back a transaction left open before calling this.
    """
