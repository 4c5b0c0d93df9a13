"""Wake the notifier when the engine commits outbox rows, through PostgreSQL LISTEN.

The engine runs ``pg_notify('tickets_outbox', flight_id)`` in the
transaction that inserts outbox rows, so PostgreSQL delivers the
notification right after COMMIT. A dedicated asyncpg connection (not a
pooled one, since LISTEN belongs to a session) lives on the bridge's
asyncio thread. asyncpg calls the listener on that thread, and the callback
hands the wake-up to trio through the trio token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg
import trio

from persistence.database import Database
from persistence.errors import DatabaseError, map_database_errors
from persistence.batch_writes import OUTBOX_CHANNEL

from .backoff import retry_delay

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
# How often an idle LISTEN connection is checked with SELECT 1, in seconds.
# A dead TCP connection is not noticed without traffic.
KEEPALIVE_INTERVAL = 30.0
# Backoff between reconnection attempts, in seconds.
RECONNECT_BASE_DELAY = 1.0
MAX_RECONNECT_DELAY = 30.0
CLOSE_TIMEOUT = 5.0


class OutboxListener:
    """A connection that LISTENs on the outbox channel and calls ``wake`` for each NOTIFY.

    ``wake`` runs on the trio thread. It is also called after each
    (re)connection, because the NOTIFY of rows committed while no
    connection was listening went to no one. Connection failures are logged and retried with
    backoff and never raised, because the notifier's poll still finds new
    rows without LISTEN.
    """

    def __init__(self, database: Database, wake: Callable[[], None], *, channel: str = OUTBOX_CHANNEL) -> None:
        self._database = database
        self._wake = wake
        self._channel = channel

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """LISTEN until cancelled, reconnecting after failures.

        Reports started after the first connection attempt, whether or not it succeeded.
        """
        failures = 0
        while True:
            lost = trio.Event()
            try:
                connection = await self._connect(lost)
            except DatabaseError as error:
                failures += 1
                delay = retry_delay(failures, RECONNECT_BASE_DELAY, MAX_RECONNECT_DELAY)
                log.warning(
                    "cannot LISTEN on %s (failure %d in a row), retrying in %.1f s: %s",
                    self._channel,
                    failures,
                    delay,
                    error,
                )
                task_status.started()
                task_status = trio.TASK_STATUS_IGNORED
                await trio.sleep(delay)
                continue

            try:
                log.info("listening on channel %s for new outbox rows", self._channel)
                failures = 0
                task_status.started()
                task_status = trio.TASK_STATUS_IGNORED
                self._wake()
                await self._watch(connection, lost)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT + 1):
                    await self._database.bridge.run(_close, connection)

    async def _connect(self, lost: trio.Event) -> asyncpg.Connection:
        token = trio.lowlevel.current_trio_token()
        wake = self._wake

        # Both callbacks run on the asyncio thread.
        def on_notify(_connection: asyncpg.Connection, _pid: int, _channel: str, payload: str) -> None:
            log.debug("NOTIFY %s %s", self._channel, payload)
            _run_in_trio(token, wake)

        def on_terminate(_connection: asyncpg.Connection) -> None:
            _run_in_trio(token, lost.set)

        async def connect() -> asyncpg.Connection:
            connection = await asyncpg.connect(
                self._database.dsn,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": "tickets-notifier"},
            )
            try:
                connection.add_termination_listener(on_terminate)
                await connection.add_listener(self._channel, on_notify)
            except BaseException:
                connection.terminate()
                raise
            return connection

        return await self._database.bridge.run(map_database_errors(connect))

    async def _watch(self, connection: asyncpg.Connection, lost: trio.Event) -> None:
        """Return when the connection is lost or fails a keepalive query."""

        async def ping() -> None:
            await connection.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)

        while True:
            with trio.move_on_after(KEEPALIVE_INTERVAL):
                await lost.wait()
                log.warning("LISTEN connection on %s lost, reconnecting", self._channel)
                return
            try:
                await self._database.bridge.run(map_database_errors(ping))
            except DatabaseError as error:
                log.warning("LISTEN connection on %s failed a keepalive query, reconnecting: %s", self._channel, error)
                return


def _run_in_trio(token: trio.lowlevel.TrioToken, function: Callable[[], object]) -> None:
    try:
        token.run_sync_soon(function)
    except trio.RunFinishedError:
        pass


async def _close(connection: asyncpg.Connection) -> None:
    # Runs on the asyncio thread. A connection that does not close in time
    # (or is already broken) is dropped without the goodbye message.
    try:
        await connection.close(timeout=CLOSE_TIMEOUT)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        connection.terminate()
