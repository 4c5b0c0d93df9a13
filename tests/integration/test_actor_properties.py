"""Property: whatever commands, events, clock moves and commit failures hit one flight,
its actor's memory equals the database afterwards, and every success it reported is stored."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.actor import ActorSettings
from engine.commands import Book, Buy, CancelFlight, CancelReservation, CloseSales, ListTickets, SeatReply
from engine.errors import CommitOutcomeUnknown, EngineError, SeatRuleViolation
from engine.idempotency import IdempotentRequest
from engine.ports import StoreUnavailable
from engine.registry import Registry
from engine.seats import Flight, Passenger, TicketStatus
from persistence.database import Database
from persistence.flight_store import PostgresFlightStore
from persistence.seed import seed_flights

pytestmark = pytest.mark.slow

SEATS = 6
HOLD = timedelta(seconds=60)
PASSENGERS = [
    Passenger("anna@mail.com", "AA-1", "Анна", "Петрова"),
    Passenger("omar@mail.com", "OM-2", "عمر", "الفاروق"),
    Passenger("mei@mail.com", "MW-3", "美玲", "王 🚀"),
]


class FaultyStore:
    """The real store, with commits that fail before or after they reach the database, on request."""

    def __init__(self, store: PostgresFlightStore) -> None:
        self._store = store
        self.faults: list[str] = []

    async def load_flight(self, flight_id: int) -> Flight | None:
        return await self._store.load_flight(flight_id)

    async def flight_of_ticket(self, ticket_id: int) -> int | None:
        return await self._store.flight_of_ticket(ticket_id)

    async def commit(self, flight_id, changes) -> None:
        fault = self.faults.pop(0) if self.faults else None
        if fault == "before":
            raise StoreUnavailable("injected: connection lost before the transaction")
        await self._store.commit(flight_id, changes)
        if fault == "after":
            raise StoreUnavailable("injected: connection lost after COMMIT was sent")


seat_command = st.tuples(
    st.sampled_from(["book", "buy", "cancel"]),
    st.integers(min_value=0, max_value=SEATS),  # index SEATS is a ticket id that does not exist
    st.integers(min_value=0, max_value=len(PASSENGERS) - 1),
)
step = st.one_of(
    # One command per ticket in a batch: replies wake their callers in any
    # order, so only then is each reply's ticket state the final one.
    st.tuples(st.just("batch"), st.lists(seat_command, min_size=1, max_size=6, unique_by=lambda command: command[1])),
    st.tuples(st.just("advance"), st.sampled_from([10, 59, 61, 300])),
    st.tuples(st.just("event"), st.sampled_from(["close", "cancel"])),
    st.tuples(st.just("fault"), st.sampled_from(["before", "after"])),
)


def assert_same(memory: Flight, stored: Flight, seats_available: int) -> None:
    assert memory.status == stored.status
    assert memory.tickets.keys() == stored.tickets.keys()
    for ticket_id, ticket in memory.tickets.items():
        row = stored.tickets[ticket_id]
        assert (ticket.status, ticket.version) == (row.status, row.version), f"ticket {ticket_id}"
        assert ticket.holder == row.holder, f"ticket {ticket_id}"
        assert ticket.booked_until == row.booked_until, f"ticket {ticket_id}"
        assert ticket.date_of_sale == row.date_of_sale, f"ticket {ticket_id}"
    assert memory.seats_available == seats_available
    assert seats_available == sum(1 for ticket in stored.tickets.values() if ticket.status is TicketStatus.AVAILABLE)


async def run_steps(database_url: str, steps: list) -> None:
    database = await Database.open(database_url, min_size=1, max_size=2)
    try:
        departure = datetime.now(UTC) + timedelta(days=2)
        (flight_id,) = await seed_flights(database, [("SU", "Moscow", f"Prop {uuid.uuid4().hex[:8]}", departure)], SEATS)
        ticket_ids = [row["id"] for row in await database.fetch("SELECT id FROM tickets WHERE flight_id = $1 ORDER BY id", flight_id)]
        ticket_ids.append(max(ticket_ids) + 10_000_000)
        now = [datetime.now(UTC).replace(microsecond=0)]
        store = FaultyStore(PostgresFlightStore(database))
        registry = Registry(store, ActorSettings(hold=HOLD), clock=lambda: now[0])

        async with trio.open_nursery() as nursery:
            await nursery.start(registry.run)
            for kind, argument in steps:
                if kind == "advance":
                    now[0] += timedelta(seconds=argument)
                elif kind == "fault":
                    store.faults.append(argument)
                elif kind == "event":
                    command = CloseSales(now[0]) if argument == "close" else CancelFlight(now[0])
                    await ask(registry, flight_id, command)
                else:
                    await run_batch(registry, database, flight_id, ticket_ids, argument)
                await check(registry, database, flight_id)
            nursery.cancel_scope.cancel()
    finally:
        await database.close()


async def ask(registry: Registry, flight_id: int, command) -> object:
    try:
        return await registry.ask(flight_id, command, trio.current_time() + 10)
    except EngineError as error:
        return error


def render(outcome: object) -> tuple[int, bytes]:
    if isinstance(outcome, SeatRuleViolation):
        return 400, outcome.code.encode()
    return 201, b"{}"


async def run_batch(registry: Registry, database: Database, flight_id: int, ticket_ids: list[int], commands: list) -> None:
    """Send the commands at once, so the actor decides them in one batch; check the successes it reported.

    Every command carries an Idempotency-Key, so every batch also stores responses.
    """
    outcomes: list[tuple[int, str, Passenger, object]] = []
    keys: dict[str, object] = {}
    before = await ticket_rows(database, flight_id)

    async def send(operation: str, ticket_index: int, passenger_index: int) -> None:
        ticket_id, passenger = ticket_ids[ticket_index], PASSENGERS[passenger_index]
        command = {"book": Book, "buy": Buy, "cancel": CancelReservation}[operation](ticket_id, passenger)
        key = f"property-{uuid.uuid4().hex}"
        idempotency = IdempotentRequest(key, hashlib.sha256(key.encode()).digest(), render)
        try:
            outcome = await registry.ask_for_ticket(ticket_id, command, trio.current_time() + 10, idempotency=idempotency)
        except EngineError as error:
            outcome = error
        outcomes.append((ticket_id, operation, passenger, outcome))
        keys[key] = outcome

    async with trio.open_nursery() as nursery:
        for operation, ticket_index, passenger_index in commands:
            nursery.start_soon(send, operation, ticket_index, passenger_index)

    rows = await ticket_rows(database, flight_id)
    last_success: dict[int, tuple[str, Passenger]] = {}
    for ticket_id, operation, passenger, outcome in outcomes:
        if isinstance(outcome, SeatReply):
            last_success[ticket_id] = (operation, passenger)
    for ticket_id, (operation, passenger) in last_success.items():
        expected = {"book": "booked", "buy": "sold", "cancel": "available"}[operation]
        assert rows[ticket_id]["status"] == expected, f"{operation} of ticket {ticket_id} was answered but not stored"
        if operation != "cancel":
            assert rows[ticket_id]["email"] == passenger.email

    # A success is stored with its change; a 503 other than "outcome
    # unknown" means nothing of its batch was written.
    stored = {row["key"]: row["status"] for row in await database.fetch("SELECT key, status FROM idempotency_keys")}
    for key, outcome in keys.items():
        if isinstance(outcome, SeatReply):
            assert stored.get(key) == 201, f"success {key} has no stored response"
        elif isinstance(outcome, EngineError) and not isinstance(outcome, (SeatRuleViolation, CommitOutcomeUnknown)):
            assert key not in stored, f"{outcome.code} for {key}, yet its response was stored"

    # A ticket whose every command failed changed only if its hold lapsed.
    for ticket_id, old in before.items():
        if ticket_id in last_success or rows[ticket_id]["version"] == old["version"]:
            continue
        change = f"ticket {ticket_id} changed from {dict(old)} to {dict(rows[ticket_id])} though every command on it failed"
        assert old["status"] == "booked", change
        assert rows[ticket_id]["status"] == "available", change


async def ticket_rows(database: Database, flight_id: int) -> dict:
    rows = await database.fetch(
        "SELECT t.id, t.status, t.version, p.email FROM tickets t LEFT JOIN passengers p ON p.id = t.passenger_id "
        "WHERE t.flight_id = $1",
        flight_id,
    )
    return {row["id"]: row for row in rows}


async def check(registry: Registry, database: Database, flight_id: int) -> None:
    # A read goes through the mailbox: once it succeeds (rather than failing
    # with its batch), no batch is half done and no hold is due.
    for _ in range(5):
        if not isinstance(await ask(registry, flight_id, ListTickets()), EngineError):
            break
    actor = registry.actor(flight_id)
    if actor is None or actor.flight is None:
        return
    stored = await PostgresFlightStore(database).load_flight(flight_id)
    seats_available = await database.fetchval("SELECT seats_available FROM flights WHERE id = $1", flight_id)
    assert stored is not None
    assert_same(actor.flight, stored, seats_available)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_actor_memory_matches_database(database_url, steps):
    trio.run(run_steps, database_url, steps)
