"""Database failures, mapped from asyncpg and OS errors in one place.

They subclass the engine's store errors, so the engine can react to them
without importing anything from this package.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from engine.ports import LeaseLost, StaleFlightState, StoreError, StoreUnavailable

T = TypeVar("T")


class DatabaseError(StoreError):
    """A database operation failed and its transaction was rolled back."""


class DatabaseUnavailable(DatabaseError, StoreUnavailable):
    """The database cannot be reached, timed out, or has no free connection."""


class StaleWrite(DatabaseError, StaleFlightState):
    """A guarded UPDATE matched fewer rows than expected: another writer changed them."""


class IdempotencyKeyTaken(DatabaseError):
    """A batch tried to store a response under a key that already has a live response."""


class LeaseMismatch(DatabaseError, LeaseLost):
    """A batch's fencing check matched no lease row: another process owns the flight now."""


# Errors that mean "the server or the pool cannot serve now", as opposed to
# a query that is wrong: connection loss, shutdown, timeouts, pool exhaustion.
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.ConnectionFailureError,
)


def map_database_errors(func: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """Wrap a coroutine function so asyncpg and OS failures surface as DatabaseError."""

    @functools.wraps(func)
    async def wrapper() -> T:
        try:
            return await func()
        except DatabaseError:
            raise
        except _UNAVAILABLE as error:
            raise DatabaseUnavailable(f"database unavailable: {type(error).__name__}: {error}") from error
        except asyncpg.PostgresError as error:
            raise DatabaseError(f"database error: {type(error).__name__}: {error}") from error

    return wrapper
