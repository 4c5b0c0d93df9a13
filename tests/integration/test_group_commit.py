"""Batches of several flights in one transaction, on real PostgreSQL.

Real time only: asyncpg runs on its own thread and cannot follow a mock clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import trio

from engine.ports import Fence, LeaseLost, StaleFlightState, StoreError
from engine.seats import Passenger
from persistence.batch_writes import Batch, write_batches
from persistence.database import Database
from persistence.flight_store import PostgresFlightStore
from persistence.leases import PostgresLeaseStore
from persistence.seed import seed_flights
from tests.support import hold_ticket_lock, wait_for_lock_waiters

pytestmark = pytest.mark.trio

TTL = 5.0
NOW = datetime.now(UTC)


def passenger(number: int) -> Passenger:
    return Passenger(f"p{number}@mail.com", f"4322-{number:06d}", "Ivan", f"Ivanov{number}")


async def seed(database: Database, flights: int) -> list[int]:
    departure = NOW + timedelta(days=3)
    return await seed_flights(database, [("SU", "Moscow", f"City {n}", departure) for n in range(flights)], 3)


async def first_ticket(database: Database, flight_id: int) -> int:
    return await database.fetchval("SELECT min(id) FROM tickets WHERE flight_id = $1", flight_id)


async def sale(store: PostgresFlightStore, flight_id: int, number: int, fence: Fence | None = None) -> Batch:
    """Load the flight, sell its first ticket to passenger ``number``, and return the batch to write."""
    flight = await store.load_flight(flight_id)
    assert flight is not None
    flight.buy(min(flight.tickets), passenger(number), NOW)
    return Batch(flight_id, flight.take_changes(), fence)


async def sold_rows(database: Database, flight_ids: list[int]) -> dict[int, tuple[str, str]]:
    """Map each flight with a sold ticket to that ticket's (buyer email, transaction id)."""
    rows = await database.fetch(
        """
        SELECT t.flight_id, p.email, t.xmin::text AS xmin
        FROM tickets t JOIN passengers p ON p.id = t.passenger_id
        WHERE t.flight_id = ANY($1::bigint[]) AND t.status = 'sold'
        """,
        flight_ids,
    )
    return {row["flight_id"]: (row["email"], row["xmin"]) for row in rows}


async def commit_behind_locked_first(
    database: Database, store: PostgresFlightStore, batches: list[Batch], nursery: trio.Nursery
) -> dict[int, Exception]:
    """Commit ``batches`` so that all but the first form one group.

    The first batch's ticket row is locked for a second, so its commit waits
    in its transaction while the others queue behind it. Return each failed
    flight's StoreError.
    """
    await nursery.start(hold_ticket_lock, database, [await first_ticket(database, batches[0].flight_id)], 1.0)
    errors: dict[int, Exception] = {}

    async def commit(item: Batch) -> None:
        try:
            await store.commit(item.flight_id, item.changes, fence=item.fence)
        except StoreError as error:
            errors[item.flight_id] = error

    async with trio.open_nursery() as commits:
        commits.start_soon(commit, batches[0])
        await wait_for_lock_waiters(database, 1)
        for item in batches[1:]:
            commits.start_soon(commit, item)
    return errors


async def test_three_flights_one_transaction(database):
    flight_ids = await seed(database, 3)
    store = PostgresFlightStore(database)
    batches = [await sale(store, flight_id, n) for n, flight_id in enumerate(flight_ids)]

    await database.transaction(write_batches, batches, idempotency_ttl=60, lease_ttl=TTL)

    sold = await sold_rows(database, flight_ids)
    assert {flight_id: email for flight_id, (email, _) in sold.items()} == {
        flight_id: passenger(n).email for n, flight_id in enumerate(flight_ids)
    }
    assert len({xmin for _, xmin in sold.values()}) == 1
    counters = await database.fetch("SELECT seats_available FROM flights WHERE id = ANY($1::bigint[])", flight_ids)
    assert [row["seats_available"] for row in counters] == [2, 2, 2]


async def test_canceled_flights_outbox_rows(database):
    flight_ids = await seed(database, 2)
    store = PostgresFlightStore(database)
    for n, flight_id in enumerate(flight_ids):
        await store.commit(flight_id, (await sale(store, flight_id, n)).changes)

    batches = []
    for flight_id in flight_ids:
        flight = await store.load_flight(flight_id)
        flight.cancel(NOW)
        batches.append(Batch(flight_id, flight.take_changes(), None))
    await database.transaction(write_batches, batches, idempotency_ttl=60, lease_ttl=TTL)

    rows = await database.fetch(
        "SELECT o.flight_id, p.email, o.kind FROM outbox o JOIN passengers p ON p.id = o.passenger_id ORDER BY o.flight_id"
    )
    assert [tuple(row) for row in rows] == [
        (flight_ids[0], passenger(0).email, "flight_canceled"),
        (flight_ids[1], passenger(1).email, "flight_canceled"),
    ]
    events = await database.fetch("SELECT flight_id, event FROM flight_events ORDER BY flight_id")
    assert [tuple(row) for row in events] == [(flight_id, "flight_canceled") for flight_id in flight_ids]


async def test_queued_commits_share_one_transaction(database, nursery):
    flight_ids = await seed(database, 4)
    store = PostgresFlightStore(database, commit_groups=1)
    batches = [await sale(store, flight_id, n) for n, flight_id in enumerate(flight_ids)]

    errors = await commit_behind_locked_first(database, store, batches, nursery)

    assert errors == {}
    sold = await sold_rows(database, flight_ids)
    assert set(sold) == set(flight_ids)
    assert sold[flight_ids[0]][1] not in {sold[flight_id][1] for flight_id in flight_ids[1:]}
    assert len({sold[flight_id][1] for flight_id in flight_ids[1:]}) == 1
    assert store.committer.groups_committed == 2


async def test_stale_batch_fails_alone(database, nursery):
    flight_ids = await seed(database, 4)
    store = PostgresFlightStore(database, commit_groups=1)
    batches = [await sale(store, flight_id, n) for n, flight_id in enumerate(flight_ids)]
    # Another writer sells flight 2's ticket first, so that batch's guard fails.
    await database.execute("UPDATE tickets SET version = version + 1 WHERE id = $1", await first_ticket(database, flight_ids[2]))

    errors = await commit_behind_locked_first(database, store, batches, nursery)

    assert set(errors) == {flight_ids[2]}
    assert isinstance(errors[flight_ids[2]], StaleFlightState)
    assert set(await sold_rows(database, flight_ids)) == {flight_ids[0], flight_ids[1], flight_ids[3]}
    assert store.committer.groups_split == 1
    assert await database.fetchval("SELECT count(*) FROM passengers WHERE email = $1", passenger(2).email) == 0


async def test_lost_lease_fails_alone(database, nursery):
    flight_ids = await seed(database, 4)
    leases = PostgresLeaseStore(database)
    fences = {}
    for flight_id in flight_ids:
        fences[flight_id] = Fence("node-a", await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL))
    store = PostgresFlightStore(database, lease_ttl=TTL, commit_groups=1)
    batches = [await sale(store, flight_id, n, fences[flight_id]) for n, flight_id in enumerate(flight_ids)]
    # Node B takes flight 2 over after node A's lease lapsed.
    await database.execute("UPDATE flight_leases SET expires_at = now() WHERE flight_id = $1", flight_ids[2])
    assert isinstance(await leases.acquire(flight_ids[2], "node-b", "127.0.0.1:7002", TTL), int)

    errors = await commit_behind_locked_first(database, store, batches, nursery)

    assert set(errors) == {flight_ids[2]}
    assert isinstance(errors[flight_ids[2]], LeaseLost)
    assert set(await sold_rows(database, flight_ids)) == {flight_ids[0], flight_ids[1], flight_ids[3]}
    assert store.committer.groups_split == 1
