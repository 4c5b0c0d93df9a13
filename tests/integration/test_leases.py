"""Flight leases on real PostgreSQL: who may take them, and the fencing check in a batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import trio

from engine.ownership import Holder
from engine.ports import Fence, LeaseLost, StaleFlightState
from engine.seats import Changes, FlightStatus, Passenger
from persistence.flight_store import PostgresFlightStore
from persistence.leases import PostgresLeaseStore
from persistence.seed import seed_flights

pytestmark = pytest.mark.trio

TTL = 5.0
PASSENGER = Passenger("ivan@mail.com", "4322-000001", "Ivan", "Ivanov")


async def one_flight(database) -> int:
    (flight_id,) = await seed_flights(database, [("SU", "Moscow", "Berlin", datetime.now(UTC) + timedelta(days=3))], 3)
    return flight_id


async def test_acquire_free_lease_gives_epoch_one(database):
    flight_id = await one_flight(database)

    assert await PostgresLeaseStore(database).acquire(flight_id, "node-a", "127.0.0.1:7001", TTL) == 1


async def test_acquire_held_lease_names_holder(database):
    flight_id = await one_flight(database)
    leases = PostgresLeaseStore(database)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)

    holder = await leases.acquire(flight_id, "node-b", "127.0.0.1:7002", TTL)

    assert isinstance(holder, Holder)
    assert (holder.owner, holder.address) == ("node-a", "127.0.0.1:7001")
    assert 0 < holder.expires_in <= TTL


async def test_acquire_unknown_flight_returns_none(database):
    assert await PostgresLeaseStore(database).acquire(999, "node-a", "127.0.0.1:7001", TTL) is None


async def test_acquire_by_same_owner_raises_epoch(database):
    flight_id = await one_flight(database)
    leases = PostgresLeaseStore(database)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)

    assert await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL) == 2


async def test_released_lease_taken_at_once(database):
    flight_id = await one_flight(database)
    leases = PostgresLeaseStore(database)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)

    assert await leases.release("node-a", {flight_id: 1}) == 1
    assert await leases.acquire(flight_id, "node-b", "127.0.0.1:7002", TTL) == 2


async def test_release_with_old_epoch_changes_nothing(database):
    flight_id = await one_flight(database)
    leases = PostgresLeaseStore(database)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)

    assert await leases.release("node-a", {flight_id: 1}) == 0
    assert isinstance(await leases.acquire(flight_id, "node-b", "127.0.0.1:7002", TTL), Holder)


async def test_expired_lease_taken_over(database):
    flight_id = await one_flight(database)
    leases = PostgresLeaseStore(database)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", 0.2)
    await trio.sleep(0.3)

    assert await leases.acquire(flight_id, "node-b", "127.0.0.1:7002", TTL) == 2
    assert await leases.renew("node-a", {flight_id: 1}, TTL) == set()
    assert await leases.renew("node-b", {flight_id: 2}, TTL) == {flight_id}


def sale(flight, ticket_id: int) -> Changes:
    """Sell one ticket in memory and return the batch's changes."""
    flight.buy(ticket_id, PASSENGER, datetime.now(UTC))
    return flight.take_changes()


async def test_commit_with_current_fence_writes(database):
    flight_id = await one_flight(database)
    await PostgresLeaseStore(database).acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)
    store = PostgresFlightStore(database, lease_ttl=TTL)
    flight = await store.load_flight(flight_id)
    ticket_id = min(flight.tickets)

    await store.commit(flight_id, sale(flight, ticket_id), fence=Fence("node-a", 1))

    assert await database.fetchval("SELECT status FROM tickets WHERE id = $1", ticket_id) == "sold"


async def test_commit_after_takeover_writes_nothing(database):
    flight_id = await one_flight(database)
    leases = PostgresLeaseStore(database)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)
    await leases.release("node-a", {flight_id: 1})
    await leases.acquire(flight_id, "node-b", "127.0.0.1:7002", TTL)
    store = PostgresFlightStore(database, lease_ttl=TTL)
    flight = await store.load_flight(flight_id)
    ticket_id = min(flight.tickets)

    with pytest.raises(LeaseLost, match="no longer held"):
        await store.commit(flight_id, sale(flight, ticket_id), fence=Fence("node-a", 1))

    assert await database.fetchval("SELECT status FROM tickets WHERE id = $1", ticket_id) == "available"
    assert await database.fetchval("SELECT count(*) FROM passengers") == 0
    assert await database.fetchval("SELECT seats_available FROM flights WHERE id = $1", flight_id) == 3


async def test_event_commit_after_takeover_writes_nothing(database):
    flight_id = await one_flight(database)
    leases = PostgresLeaseStore(database)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)
    store = PostgresFlightStore(database, lease_ttl=TTL)
    flight = await store.load_flight(flight_id)
    flight.cancel(datetime.now(UTC))
    changes = flight.take_changes()
    assert not changes.tickets

    with pytest.raises(LeaseLost):
        await store.commit(flight_id, changes, fence=Fence("node-a", 1))

    assert await database.fetchval("SELECT status FROM flights WHERE id = $1", flight_id) == FlightStatus.ON_SALE
    assert await database.fetchval("SELECT count(*) FROM flight_events") == 0


async def test_commit_with_fence_extends_lease(database):
    flight_id = await one_flight(database)
    leases = PostgresLeaseStore(database)
    await leases.acquire(flight_id, "node-a", "127.0.0.1:7001", 0.5)
    store = PostgresFlightStore(database, lease_ttl=TTL)
    flight = await store.load_flight(flight_id)

    await store.commit(flight_id, sale(flight, min(flight.tickets)), fence=Fence("node-a", 1))
    await trio.sleep(0.6)

    assert isinstance(await leases.acquire(flight_id, "node-b", "127.0.0.1:7002", TTL), Holder)


async def test_commit_guard_still_detects_stale_ticket(database):
    flight_id = await one_flight(database)
    await PostgresLeaseStore(database).acquire(flight_id, "node-a", "127.0.0.1:7001", TTL)
    store = PostgresFlightStore(database, lease_ttl=TTL)
    flight = await store.load_flight(flight_id)
    ticket_id = min(flight.tickets)
    await database.execute("UPDATE tickets SET version = version + 1 WHERE id = $1", ticket_id)

    with pytest.raises(StaleFlightState, match="guarded update matched 0 of 1") as raised:
        await store.commit(flight_id, sale(flight, ticket_id), fence=Fence("node-a", 1))

    assert not isinstance(raised.value, LeaseLost)
