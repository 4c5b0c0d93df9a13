"""Helpers shared by the end-to-end and fault tests: passengers, seeding, database snapshots."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import trio

from persistence.database import Database
from persistence.seed import seed_flights


def passenger(number: int) -> dict[str, str]:
    return {
        "email": f"passenger{number}@mail.com",
        "firstname": "Ivan",
        "lastname": f"Ivanov{number}",
        "passNumber": f"4322-{number:06d}",
    }


async def seed_one_flight(database: Database, seats: int = 10) -> int:
    departure = datetime.now(UTC) + timedelta(days=5)
    (flight_id,) = await seed_flights(database, [("SU", "Moscow", "Berlin", departure)], seats)
    return flight_id


async def snapshot(database: Database) -> dict[str, list[tuple]]:
    """Every row that a request could change, with ticket versions, for before/after comparisons."""
    queries = {
        "flights": "SELECT id, status, seats_available FROM flights ORDER BY id",
        "tickets": "SELECT id, status, passenger_id, booked_until, date_of_sale, version FROM tickets ORDER BY id",
        "passengers": "SELECT id, email, pass_number, firstname, lastname FROM passengers ORDER BY id",
        "outbox": "SELECT id, kind, passenger_id, status FROM outbox ORDER BY id",
        "flight_events": "SELECT flight_id, event FROM flight_events ORDER BY flight_id, event",
        "idempotency_keys": "SELECT key, status FROM idempotency_keys ORDER BY key",
    }
    result = {}
    for table, query in queries.items():
        result[table] = [tuple(row) for row in await database.fetch(query)]
    return result


async def hold_ticket_lock(
    database: Database,
    ticket_ids: list[int],
    seconds: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Lock ticket rows for ``seconds`` in another transaction, so commits touching them wait.

    Use with ``nursery.start``: it reports started once the lock is held.
    """
    token = trio.lowlevel.current_trio_token()
    locked = trio.Event()

    async def work(connection) -> None:
        await connection.execute("SELECT 1 FROM tickets WHERE id = ANY($1::bigint[]) FOR UPDATE", ticket_ids)
        token.run_sync_soon(locked.set)
        await asyncio.sleep(seconds)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(database.transaction, work)
        await locked.wait()
        task_status.started()


async def wait_for_lock_waiters(database: Database, count: int, timeout: float = 10) -> None:
    """Wait until ``count`` sessions of this database are blocked on a lock."""
    with trio.fail_after(timeout):
        while True:
            waiting = await database.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if waiting >= count:
                return
            await trio.sleep(0.02)


def pending_commands(actor) -> int:
    """Commands in the actor's batch being committed plus those queued in its mailbox."""
    if actor is None:
        return 0
    return len(actor._in_flight) + actor.mailbox_depth
