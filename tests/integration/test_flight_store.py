"""Flight actors on the PostgreSQL store: group commit, guards, crashes, restarts.

Real time only: asyncpg runs on its own thread and cannot follow a mock clock.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import trio

from engine.actor import ActorSettings
from engine.commands import Book, Buy, CancelFlight, CancelReservation, CloseSales, ListTickets
from engine.errors import ActorCrashed, CommitFailed, TicketUnavailable
from engine.registry import Registry
from engine.seats import Changes, Flight, Passenger, TicketStatus
from persistence.database import Database
from persistence.errors import StaleWrite
from persistence.flight_store import PostgresFlightStore
from persistence.seed import seed_flights
from tests.calls import send_in_order, wait_done

DEPARTURE = datetime(2030, 3, 25, 2, 3, 28, tzinfo=UTC)
IVAN = Passenger("ivan@mail.com", "4322-22-333-45", "Ivan", "Ivanov")
ANNA = Passenger("anna@mail.com", "1111-11-111-11", "Anna", "Petrova")
ZOYA = Passenger("zoya@mail.com", "7777-77-777-77", "Zoya", "Kosmodemyanskaya")


class GatedStore(PostgresFlightStore):
    """The PostgreSQL store, with loads and commits counted and optionally blocked or failed."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.loads = 0
        self.commit_calls = 0
        # While set and not yet fired, loads or commits wait on these events.
        # Set commit_gate through blocking_commits.
        self.load_gate: trio.Event | None = None
        self.commit_gate: trio.Event | None = None
        # Raised by the next commit, once, before anything is written.
        self.commit_error: BaseException | None = None

    async def load_flight(self, flight_id: int) -> Flight | None:
        self.loads += 1
        if self.load_gate is not None:
            await self.load_gate.wait()
        return await super().load_flight(flight_id)

    @contextmanager
    def blocking_commits(self) -> Iterator[trio.Event]:
        """Block every commit until the returned event is set or the block exits.

        The actor waits for its commit in a shielded scope, so a gate left
        closed by a failed assertion would hang the test instead of failing it.
        """
        self.commit_gate = gate = trio.Event()
        try:
            yield gate
        finally:
            gate.set()

    async def commit(self, flight_id: int, changes: Changes) -> None:
        self.commit_calls += 1
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        if self.commit_error is not None:
            error, self.commit_error = self.commit_error, None
            raise error
        await super().commit(flight_id, changes)


@asynccontextmanager
async def running_registry(store: PostgresFlightStore, **settings: object) -> AsyncIterator[Registry]:
    registry = Registry(store, ActorSettings(**settings))
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        yield registry
        nursery.cancel_scope.cancel()


async def seed_one(database: Database, seats: int = 10) -> tuple[int, list[int]]:
    """Insert one flight and return its id and its ticket ids in seat order."""
    [flight_id] = await seed_flights(database, [("SU", "Moscow", "Berlin", DEPARTURE)], seats)
    rows = await database.fetch("SELECT id FROM tickets WHERE flight_id = $1 ORDER BY seat", flight_id)
    return flight_id, [row["id"] for row in rows]


async def ask(registry: Registry, flight_id: int, command: object) -> object:
    with trio.fail_after(10):
        return await registry.ask(flight_id, command, math.inf)


async def ticket_rows(database: Database, flight_id: int) -> dict[int, dict]:
    rows = await database.fetch(
        """
        SELECT t.id, t.status, t.version, t.booked_until, t.date_of_sale, t.xmin::text AS xmin,
               p.email, p.pass_number
        FROM tickets t LEFT JOIN passengers p ON p.id = t.passenger_id
        WHERE t.flight_id = $1
        """,
        flight_id,
    )
    return {row["id"]: dict(row) for row in rows}


async def counter_and_available(database: Database, flight_id: int) -> tuple[int, int]:
    counter = await database.fetchval("SELECT seats_available FROM flights WHERE id = $1", flight_id)
    available = await database.fetchval(
        "SELECT count(*) FROM tickets WHERE flight_id = $1 AND status = 'available'", flight_id
    )
    return counter, available


# Group commit ----------------------------------------------------------


async def test_batch_one_transaction(database, nursery):
    flight_id, tickets = await seed_one(database)
    store = GatedStore(database)
    store.load_gate = trio.Event()

    async with running_registry(store) as registry:
        calls = await send_in_order(
            nursery,
            registry,
            flight_id,
            Book(tickets[0], IVAN),
            Buy(tickets[1], ANNA),
            Buy(tickets[0], ANNA),
            Book(tickets[2], IVAN),
            CancelReservation(tickets[2], IVAN),
            Buy(tickets[3], ZOYA),
        )
        store.load_gate.set()
        await wait_done(calls)

    assert [call.error is None for call in calls] == [True, True, False, True, True, True]
    assert store.commit_calls == 1
    rows = await ticket_rows(database, flight_id)
    assert (rows[tickets[0]]["status"], rows[tickets[0]]["email"]) == ("booked", IVAN.email)
    assert rows[tickets[0]]["booked_until"] is not None
    assert (rows[tickets[1]]["status"], rows[tickets[1]]["email"]) == ("sold", ANNA.email)
    assert (rows[tickets[2]]["status"], rows[tickets[2]]["email"]) == ("available", None)
    assert (rows[tickets[3]]["status"], rows[tickets[3]]["email"]) == ("sold", ZOYA.email)
    assert {rows[ticket]["version"] for ticket in tickets[:4]} == {1}
    assert {rows[ticket]["version"] for ticket in tickets[4:]} == {0}
    batch_xids = {rows[ticket]["xmin"] for ticket in tickets[:4]}
    assert len(batch_xids) == 1
    passenger_xids = {row["xmin"] for row in await database.fetch("SELECT xmin::text AS xmin FROM passengers")}
    assert passenger_xids == batch_xids
    assert await counter_and_available(database, flight_id) == (7, 7)


async def test_batch_passengers_upserted(database, nursery):
    flight_id, tickets = await seed_one(database)
    renamed = Passenger(IVAN.email, IVAN.pass_number, "Vanya", "Ivanoff")

    async with running_registry(GatedStore(database)) as registry:
        await ask(registry, flight_id, Buy(tickets[0], IVAN))
        await ask(registry, flight_id, Buy(tickets[1], renamed))

    rows = await database.fetch("SELECT email, pass_number, firstname, lastname FROM passengers")
    assert [tuple(row) for row in rows] == [(IVAN.email, IVAN.pass_number, "Vanya", "Ivanoff")]


# Guarded writes --------------------------------------------------------


async def sell_behind_actors_back(database: Database, ticket_id: int, buyer: Passenger) -> None:
    """Sell a ticket with plain SQL, as a second writer would."""
    await database.execute(
        """
        WITH buyer AS (
            INSERT INTO passengers (email, pass_number, firstname, lastname)
            VALUES ($2, $3, $4, $5) RETURNING id
        ), sale AS (
            UPDATE tickets SET status = 'sold', passenger_id = (SELECT id FROM buyer),
                   date_of_sale = now(), version = version + 1
            WHERE id = $1 RETURNING flight_id
        )
        UPDATE flights SET seats_available = seats_available - 1 WHERE id = (SELECT flight_id FROM sale)
        """,
        ticket_id,
        buyer.email,
        buyer.pass_number,
        buyer.firstname,
        buyer.lastname,
    )


async def test_guard_mismatch_aborts_batch(database, nursery):
    flight_id, tickets = await seed_one(database)
    store = GatedStore(database)

    async with running_registry(store) as registry:
        await ask(registry, flight_id, ListTickets())
        await sell_behind_actors_back(database, tickets[0], ANNA)
        with store.blocking_commits():
            # The first buy keeps the actor waiting in its commit, so the next three form one batch.
            [unrelated] = await send_in_order(nursery, registry, flight_id, Buy(tickets[9], IVAN))
            stale_batch = await send_in_order(
                nursery, registry, flight_id, Buy(tickets[0], IVAN), Book(tickets[1], IVAN), Buy(tickets[2], ZOYA)
            )
        await wait_done([unrelated, *stale_batch])

    assert unrelated.error is None
    assert all(isinstance(call.error, CommitFailed) for call in stale_batch)
    assert store.commit_calls == 2
    assert store.loads == 2
    rows = await ticket_rows(database, flight_id)
    assert (rows[tickets[0]]["status"], rows[tickets[0]]["email"]) == ("sold", ANNA.email)
    assert (rows[tickets[1]]["status"], rows[tickets[1]]["version"]) == ("available", 0)
    assert (rows[tickets[2]]["status"], rows[tickets[2]]["version"]) == ("available", 0)
    assert await database.fetchval("SELECT count(*) FROM passengers WHERE email = $1", ZOYA.email) == 0
    assert await counter_and_available(database, flight_id) == (8, 8)


async def test_guard_mismatch_then_reload(database, nursery):
    flight_id, tickets = await seed_one(database)

    async with running_registry(GatedStore(database)) as registry:
        await ask(registry, flight_id, ListTickets())
        await sell_behind_actors_back(database, tickets[0], ANNA)
        with pytest.raises(CommitFailed):
            await ask(registry, flight_id, Buy(tickets[0], IVAN))
        with pytest.raises(TicketUnavailable):
            await ask(registry, flight_id, Buy(tickets[0], IVAN))
        reply = await ask(registry, flight_id, Book(tickets[1], IVAN))

    assert reply.ticket.status is TicketStatus.BOOKED
    rows = await ticket_rows(database, flight_id)
    assert (rows[tickets[0]]["status"], rows[tickets[0]]["email"]) == ("sold", ANNA.email)
    sold_to_ivan = await database.fetchval(
        "SELECT count(*) FROM tickets t JOIN passengers p ON p.id = t.passenger_id WHERE p.email = $1", IVAN.email
    )
    assert sold_to_ivan == 1
    assert await counter_and_available(database, flight_id) == (8, 8)


async def test_store_guard_raises_stale(database):
    flight_id, tickets = await seed_one(database)
    store = PostgresFlightStore(database)
    flight = await store.load_flight(flight_id)
    flight.buy(tickets[0], IVAN, datetime.now(UTC))
    await sell_behind_actors_back(database, tickets[0], ANNA)

    with pytest.raises(StaleWrite):
        await store.commit(flight_id, flight.take_changes())

    assert await database.fetchval("SELECT count(*) FROM passengers WHERE email = $1", IVAN.email) == 0


async def test_store_unknown_ids(database):
    flight_id, tickets = await seed_one(database)
    store = PostgresFlightStore(database)

    assert await store.load_flight(flight_id + 1) is None
    assert await store.flight_of_ticket(tickets[-1] + 1) is None
    assert await store.flight_of_ticket(tickets[0]) == flight_id


# Crashes and restarts --------------------------------------------------


async def test_actor_crash_survived(database, nursery):
    flight_id, tickets = await seed_one(database)
    [other_flight] = await seed_flights(database, [("LH", "Munich", "Berlin", DEPARTURE)], 3)
    store = GatedStore(database)

    async with running_registry(store) as registry:
        await ask(registry, flight_id, ListTickets())
        store.commit_error = RuntimeError("bug while writing the batch")
        with pytest.raises(ActorCrashed):
            await ask(registry, flight_id, Buy(tickets[0], IVAN))
        other = await ask(registry, other_flight, ListTickets())
        retried = await ask(registry, flight_id, Buy(tickets[0], IVAN))

    assert len(other.tickets) == 3
    assert retried.ticket.status is TicketStatus.SOLD
    assert store.loads == 3
    rows = await ticket_rows(database, flight_id)
    assert (rows[tickets[0]]["status"], rows[tickets[0]]["email"], rows[tickets[0]]["version"]) == (
        "sold",
        IVAN.email,
        1,
    )


async def test_restart_reloads_state(database, database_url, nursery):
    flight_id, tickets = await seed_one(database)
    [canceled_flight] = await seed_flights(database, [("LH", "Munich", "Berlin", DEPARTURE)], 3)
    canceled_tickets = [
        row["id"] for row in await database.fetch("SELECT id FROM tickets WHERE flight_id = $1", canceled_flight)
    ]

    async with running_registry(PostgresFlightStore(database)) as first:
        await ask(first, flight_id, Book(tickets[0], IVAN))
        await ask(first, flight_id, Buy(tickets[1], ANNA))
        await ask(first, flight_id, Book(tickets[2], IVAN))
        await ask(first, flight_id, Buy(tickets[2], IVAN))
        await ask(first, flight_id, Book(tickets[3], ZOYA))
        await ask(first, flight_id, CancelReservation(tickets[3], ZOYA))
        await ask(first, canceled_flight, Book(canceled_tickets[0], IVAN))
        await ask(first, canceled_flight, Buy(canceled_tickets[1], ANNA))
        await ask(first, canceled_flight, CancelFlight(DEPARTURE - timedelta(days=1)))
        before = {id_: first.actor(id_).flight for id_ in (flight_id, canceled_flight)}

    restarted_database = await Database.open(database_url, min_size=1, max_size=2)
    try:
        async with running_registry(PostgresFlightStore(restarted_database)) as second:
            for id_ in (flight_id, canceled_flight):
                await ask(second, id_, ListTickets())
            after = {id_: second.actor(id_).flight for id_ in (flight_id, canceled_flight)}
    finally:
        await restarted_database.close()

    for id_ in (flight_id, canceled_flight):
        assert after[id_].status == before[id_].status
        assert after[id_].info == before[id_].info
        assert after[id_].seats_available == before[id_].seats_available
        assert after[id_].next_expiry() == before[id_].next_expiry()
        assert after[id_].tickets == before[id_].tickets
        assert await counter_and_available(database, id_) == (after[id_].seats_available,) * 2
    assert after[flight_id].seats_available == 7
    assert after[canceled_flight].status.value == "canceled"
    assert after[flight_id].tickets[tickets[2]].version == 2
    assert after[flight_id].tickets[tickets[0]].holder == IVAN


# Airline events --------------------------------------------------------


async def test_cancel_flight_writes_outbox(database):
    flight_id, tickets = await seed_one(database)

    async with running_registry(PostgresFlightStore(database)) as registry:
        await ask(registry, flight_id, Book(tickets[0], IVAN))
        await ask(registry, flight_id, Buy(tickets[1], IVAN))
        await ask(registry, flight_id, Buy(tickets[2], ANNA))
        applied = await ask(registry, flight_id, CancelFlight(DEPARTURE - timedelta(days=1)))
        replayed = await ask(registry, flight_id, CancelFlight(DEPARTURE - timedelta(days=1)))

    assert applied.applied is True
    assert replayed.applied is False
    statuses = {row["status"] for row in (await ticket_rows(database, flight_id)).values()}
    assert statuses == {"canceled", "available"}
    outbox = await database.fetch(
        """
        SELECT p.email, o.kind, o.payload FROM outbox o JOIN passengers p ON p.id = o.passenger_id
        ORDER BY p.email
        """
    )
    assert [(row["email"], row["kind"]) for row in outbox] == [
        (ANNA.email, "flight_canceled"),
        (IVAN.email, "flight_canceled"),
    ]
    assert '"seats": [1, 2]' in outbox[1]["payload"]
    assert await database.fetchval("SELECT status FROM flights WHERE id = $1", flight_id) == "canceled"
    assert await database.fetchval("SELECT count(*) FROM flight_events WHERE flight_id = $1", flight_id) == 1


async def test_close_sales_releases_holds(database):
    flight_id, tickets = await seed_one(database)

    async with running_registry(PostgresFlightStore(database)) as registry:
        await ask(registry, flight_id, Book(tickets[0], IVAN))
        await ask(registry, flight_id, Buy(tickets[1], ANNA))
        applied = await ask(registry, flight_id, CloseSales(DEPARTURE - timedelta(days=1)))

    assert applied.applied is True
    rows = await ticket_rows(database, flight_id)
    assert (rows[tickets[0]]["status"], rows[tickets[0]]["email"]) == ("available", None)
    assert rows[tickets[1]]["status"] == "sold"
    kinds = [row["kind"] for row in await database.fetch("SELECT kind FROM outbox")]
    assert kinds == ["reservation_released"]
    assert await counter_and_available(database, flight_id) == (9, 9)
