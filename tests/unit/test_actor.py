"""Flight actors and their registry, over an in-memory FlightStore.

The fake store checks each ticket's guard (expected status and version) as
the SQL does. It can block a load or a commit on an event, fail either, or
raise a non-store error, so every step of the actor loop can be observed
without I/O. Tests that need time to pass use trio's autojump clock, which
the actors also read as wall time through ``clock_now``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from engine.actor import ActorSettings
from engine.commands import Book, Buy, CancelReservation, Command, ListTickets, SeatReply, TicketsReply
from engine.errors import (
    ActorCrashed,
    CommitFailed,
    DeadlineExceeded,
    FlightNotFound,
    Overloaded,
    ServiceUnavailable,
    TicketNotFound,
    TicketUnavailable,
)
from engine.ports import StaleFlightState, StoreUnavailable
from engine.registry import Registry
from engine.seats import Changes, Flight, FlightInfo, FlightStatus, Passenger, Ticket, TicketStatus
from tests.calls import Call, send_in_order

FLIGHT_ID = 1
FIRST_TICKET = 11
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
IVAN = Passenger("ivan@mail.com", "4322-22-333-45", "Ivan", "Ivanov")
ANNA = Passenger("anna@mail.com", "1111-11-111-11", "Anna", "Petrova")


def clock_now() -> datetime:
    """Wall time that follows trio's clock, so a mock clock moves it too."""
    return START + timedelta(seconds=trio.current_time())


def passenger(number: int) -> Passenger:
    return Passenger(f"p{number}@mail.com", f"{number:04d}", "First", "Last")


class FakeStore:
    """One flight kept in memory, written only by ``commit`` as the SQL store would."""

    def __init__(self, seats: int = 5) -> None:
        self.info = FlightInfo(FLIGHT_ID, "SU", "Moscow", "Berlin", START + timedelta(days=3))
        self.status = FlightStatus.ON_SALE
        self.rows = {
            FIRST_TICKET + seat - 1: Ticket(FIRST_TICKET + seat - 1, seat) for seat in range(1, seats + 1)
        }
        self.loads = 0
        self.lookups = 0
        self.commit_calls = 0
        self.commits: list[Changes] = []
        # While set and not yet fired, loads or commits wait on these events.
        # Set commit_gate through blocking_commits.
        self.load_gate: trio.Event | None = None
        self.commit_gate: trio.Event | None = None
        # Raised by the next load or commit, once.
        self.load_error: BaseException | None = None
        self.commit_error: BaseException | None = None

    async def load_flight(self, flight_id: int) -> Flight | None:
        self.loads += 1
        if self.load_gate is not None:
            await self.load_gate.wait()
        await trio.lowlevel.checkpoint()
        if self.load_error is not None:
            error, self.load_error = self.load_error, None
            raise error
        if flight_id != FLIGHT_ID:
            return None
        tickets = [dataclasses.replace(row) for row in self.rows.values()]
        return Flight(self.info, self.status, tickets)

    async def commit(self, flight_id: int, changes: Changes) -> None:
        self.commit_calls += 1
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        await trio.lowlevel.checkpoint()
        if self.commit_error is not None:
            error, self.commit_error = self.commit_error, None
            raise error

        for change in changes.tickets:
            row = self.rows[change.ticket.id]
            if (row.status, row.version) != (change.expected_status, change.expected_version):
                raise StaleFlightState(f"ticket {row.id} is {row.status} v{row.version}")
        for change in changes.tickets:
            self.rows[change.ticket.id] = dataclasses.replace(change.ticket, version=change.expected_version + 1)
        if changes.flight_status is not None:
            self.status = changes.flight_status
        self.commits.append(changes)

    async def flight_of_ticket(self, ticket_id: int) -> int | None:
        self.lookups += 1
        await trio.lowlevel.checkpoint()
        return FLIGHT_ID if ticket_id in self.rows else None

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

    def sell_behind_actors_back(self, ticket_id: int, buyer: Passenger) -> None:
        """Change a row as another writer would: new status, holder and version."""
        row = self.rows[ticket_id]
        self.rows[ticket_id] = dataclasses.replace(
            row, status=TicketStatus.SOLD, holder=buyer, date_of_sale=START, version=row.version + 1
        )


class LimitedClock:
    """``clock_now`` that raises after ``limit`` reads.

    An actor loop that spins never blocks, so the autojump clock never moves
    and the test would hang. With this clock the actor crashes instead.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        if self.reads > self.limit:
            raise RuntimeError(f"clock read more than {self.limit} times: the actor loop spins")
        return clock_now()


async def start_registry(
    nursery: trio.Nursery, store: FakeStore, clock: Callable[[], datetime] = clock_now, **settings: object
) -> Registry:
    registry = Registry(store, ActorSettings(**settings), clock=clock)
    await nursery.start(registry.run)
    return registry


async def send(nursery: trio.Nursery, registry: Registry, *commands: Command, deadline: float = math.inf) -> list[Call]:
    return await send_in_order(nursery, registry, FLIGHT_ID, *commands, deadline=deadline)


async def activate(registry: Registry) -> None:
    """Start the flight's actor and wait until its flight is loaded."""
    with trio.fail_after(5):
        await registry.ask(FLIGHT_ID, ListTickets(), math.inf)


# Batching and replies --------------------------------------------------


async def test_batch_commits_once(nursery):
    store = FakeStore()
    store.load_gate = trio.Event()
    registry = await start_registry(nursery, store)

    calls = await send(
        nursery,
        registry,
        Book(FIRST_TICKET, IVAN),
        Buy(FIRST_TICKET, ANNA),
        Buy(FIRST_TICKET + 1, ANNA),
        Book(FIRST_TICKET + 2, IVAN),
        CancelReservation(FIRST_TICKET + 2, IVAN),
    )
    assert registry.actor(FLIGHT_ID).mailbox_depth == 5
    store.load_gate.set()
    await wait_all_tasks_blocked()

    assert all(call.done.is_set() for call in calls)
    assert store.commit_calls == 1
    assert {change.ticket.id for change in store.commits[0].tickets} == {
        FIRST_TICKET,
        FIRST_TICKET + 1,
        FIRST_TICKET + 2,
    }
    assert calls[0].reply.ticket.status is TicketStatus.BOOKED
    assert isinstance(calls[1].error, TicketUnavailable)
    assert calls[2].reply.ticket.status is TicketStatus.SOLD
    assert calls[3].reply.ticket.status is TicketStatus.BOOKED
    assert calls[4].reply.ticket.status is TicketStatus.AVAILABLE
    assert store.rows[FIRST_TICKET].status is TicketStatus.BOOKED
    assert store.rows[FIRST_TICKET + 1].status is TicketStatus.SOLD
    assert store.rows[FIRST_TICKET + 2].status is TicketStatus.AVAILABLE


async def test_batch_respects_cap(nursery):
    store = FakeStore(seats=5)
    store.load_gate = trio.Event()
    registry = await start_registry(nursery, store, batch_cap=2)

    calls = await send(nursery, registry, *(Buy(FIRST_TICKET + number, passenger(number)) for number in range(5)))
    store.load_gate.set()
    await wait_all_tasks_blocked()

    assert all(call.reply is not None for call in calls)
    assert [len(changes.tickets) for changes in store.commits] == [2, 2, 1]


async def test_reply_after_commit(nursery):
    store = FakeStore()
    registry = await start_registry(nursery, store)
    await activate(registry)

    with store.blocking_commits() as commits:
        [call] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))
        assert store.commit_calls == 1
        assert not call.done.is_set()
        commits.set()
        await wait_all_tasks_blocked()

    assert call.done.is_set()
    assert isinstance(call.reply, SeatReply)
    assert call.reply.ticket.status is TicketStatus.SOLD


async def test_read_waits_for_batch_commit(nursery):
    store = FakeStore()
    store.load_gate = trio.Event()
    registry = await start_registry(nursery, store)

    with store.blocking_commits() as commits:
        buy, listing = await send(nursery, registry, Buy(FIRST_TICKET, IVAN), ListTickets())
        store.load_gate.set()
        await wait_all_tasks_blocked()
        assert store.commit_calls == 1
        assert not listing.done.is_set()
        commits.set()
        await wait_all_tasks_blocked()

    assert isinstance(listing.reply, TicketsReply)
    assert FIRST_TICKET not in [ticket.id for ticket in listing.reply.tickets]


async def test_rejection_writes_nothing(nursery):
    store = FakeStore()
    registry = await start_registry(nursery, store)
    await activate(registry)

    [call] = await send(nursery, registry, CancelReservation(FIRST_TICKET, IVAN))

    assert call.error is not None
    assert call.error.code == "ticket_not_booked"
    assert store.commit_calls == 0


# Failed commits --------------------------------------------------------


async def test_commit_failure_fails_batch(nursery):
    store = FakeStore()
    store.load_gate = trio.Event()
    store.commit_error = StoreUnavailable("connection lost")
    registry = await start_registry(nursery, store)

    calls = await send(
        nursery, registry, Buy(FIRST_TICKET, IVAN), Book(FIRST_TICKET + 1, ANNA), Buy(FIRST_TICKET + 2, ANNA)
    )
    store.load_gate.set()
    await wait_all_tasks_blocked()

    assert all(isinstance(call.error, CommitFailed) for call in calls)
    assert store.loads == 2
    assert store.commits == []
    flight = registry.actor(FLIGHT_ID).flight
    assert {ticket.status for ticket in flight.tickets.values()} == {TicketStatus.AVAILABLE}
    assert flight.seats_available == 5


async def test_commit_failure_then_retry(nursery):
    store = FakeStore()
    store.commit_error = StoreUnavailable("connection lost")
    registry = await start_registry(nursery, store)
    await activate(registry)

    [failed] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))
    [retried] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))

    assert isinstance(failed.error, CommitFailed)
    assert retried.reply.ticket.status is TicketStatus.SOLD
    assert store.rows[FIRST_TICKET].status is TicketStatus.SOLD
    assert store.rows[FIRST_TICKET].version == 1


async def test_stale_guard_reloads(nursery):
    store = FakeStore()
    registry = await start_registry(nursery, store)
    await activate(registry)
    store.sell_behind_actors_back(FIRST_TICKET, ANNA)

    with store.blocking_commits():
        # The first buy keeps the actor waiting in its commit, so the next two form one batch.
        [unrelated] = await send(nursery, registry, Buy(FIRST_TICKET + 4, ANNA))
        stale_batch = await send(nursery, registry, Buy(FIRST_TICKET, IVAN), Buy(FIRST_TICKET + 1, IVAN))
    await wait_all_tasks_blocked()
    [second] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))

    assert unrelated.reply.ticket.status is TicketStatus.SOLD
    assert all(isinstance(call.error, CommitFailed) for call in stale_batch)
    assert store.loads == 2
    assert store.rows[FIRST_TICKET + 1].status is TicketStatus.AVAILABLE
    assert isinstance(second.error, TicketUnavailable)
    assert store.rows[FIRST_TICKET].holder == ANNA


# Back-pressure and deadlines -------------------------------------------


async def test_full_mailbox_overloaded(nursery):
    store = FakeStore()
    store.load_gate = trio.Event()
    registry = await start_registry(nursery, store, mailbox_size=2)

    queued = await send(nursery, registry, Buy(FIRST_TICKET, IVAN), Buy(FIRST_TICKET + 1, ANNA))

    with pytest.raises(Overloaded):
        await registry.ask(FLIGHT_ID, Buy(FIRST_TICKET + 2, ANNA), math.inf)
    store.load_gate.set()
    await wait_all_tasks_blocked()
    assert all(call.reply is not None for call in queued)
    assert store.rows[FIRST_TICKET + 2].status is TicketStatus.AVAILABLE


async def test_deadline_while_queued(nursery, autojump_clock):
    store = FakeStore()
    store.load_gate = trio.Event()
    registry = await start_registry(nursery, store)

    [late] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN), deadline=trio.current_time() + 5)
    await trio.sleep(6)
    assert isinstance(late.error, DeadlineExceeded)
    store.load_gate.set()
    [later] = await send(nursery, registry, ListTickets())

    assert store.commit_calls == 0
    assert store.rows[FIRST_TICKET].status is TicketStatus.AVAILABLE
    assert FIRST_TICKET in [ticket.id for ticket in later.reply.tickets]


async def test_deadline_during_commit(nursery, autojump_clock):
    store = FakeStore()
    registry = await start_registry(nursery, store)
    await activate(registry)

    with store.blocking_commits():
        [call] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN), deadline=trio.current_time() + 5)
        await trio.sleep(6)
        assert not call.done.is_set()
    await wait_all_tasks_blocked()

    assert call.error is None
    assert call.reply.ticket.status is TicketStatus.SOLD
    assert store.rows[FIRST_TICKET].status is TicketStatus.SOLD


# Crashes and supervision -----------------------------------------------


async def test_crash_fails_waiters(nursery):
    store = FakeStore()
    registry = await start_registry(nursery, store)
    await activate(registry)
    store.commit_error = RuntimeError("bug in the store")

    with store.blocking_commits():
        [in_commit] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))
        queued = await send(nursery, registry, Buy(FIRST_TICKET + 1, ANNA), ListTickets())
    await wait_all_tasks_blocked()

    assert isinstance(in_commit.error, ActorCrashed)
    assert all(isinstance(call.error, ActorCrashed) for call in queued)
    assert registry.actor(FLIGHT_ID) is None
    assert store.commits == []


async def test_crash_then_new_actor(nursery):
    store = FakeStore()
    store.commit_error = RuntimeError("bug in the store")
    registry = await start_registry(nursery, store)
    await activate(registry)
    crashed = registry.actor(FLIGHT_ID)

    [failed] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))
    [retried] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))

    assert isinstance(failed.error, ActorCrashed)
    assert retried.reply.ticket.status is TicketStatus.SOLD
    assert registry.actor(FLIGHT_ID) is not crashed
    assert store.loads == 2


async def test_crash_during_load(nursery):
    store = FakeStore()
    store.load_error = RuntimeError("bug in the loader")
    registry = await start_registry(nursery, store)

    [failed] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))
    [retried] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))

    assert isinstance(failed.error, ActorCrashed)
    assert retried.reply.ticket.status is TicketStatus.SOLD


async def test_load_failure_unavailable(nursery):
    store = FakeStore()
    store.load_error = StoreUnavailable("connection refused")
    registry = await start_registry(nursery, store)

    [failed] = await send(nursery, registry, Buy(FIRST_TICKET, IVAN))

    assert isinstance(failed.error, ServiceUnavailable)
    assert registry.actor(FLIGHT_ID) is None


# Lookup and lifecycle --------------------------------------------------


async def test_unknown_flight(nursery):
    store = FakeStore()
    registry = await start_registry(nursery, store)

    with trio.fail_after(5), pytest.raises(FlightNotFound):
        await registry.ask(FLIGHT_ID + 1, ListTickets(), math.inf)
    assert registry.actor(FLIGHT_ID + 1) is None


async def test_unknown_ticket(nursery):
    store = FakeStore()
    registry = await start_registry(nursery, store)

    with trio.fail_after(5), pytest.raises(TicketNotFound):
        await registry.ask_for_ticket(999, Buy(999, IVAN), math.inf)
    assert registry.active_flights == 0


async def test_ticket_lookup_cached(nursery):
    store = FakeStore()
    registry = await start_registry(nursery, store)
    await activate(registry)

    with trio.fail_after(5):
        reply = await registry.ask_for_ticket(FIRST_TICKET, Buy(FIRST_TICKET, IVAN), math.inf)

    assert reply.ticket.status is TicketStatus.SOLD
    assert store.lookups == 0


async def test_passivation_after_idle(nursery, autojump_clock):
    store = FakeStore()
    registry = await start_registry(nursery, store, idle_timeout=60)
    await activate(registry)

    await trio.sleep(59)
    assert registry.active_flights == 1
    await trio.sleep(2)
    assert registry.active_flights == 0
    await activate(registry)
    assert store.loads == 2


async def test_no_passivation_while_held(nursery, autojump_clock):
    store = FakeStore()
    clock = LimitedClock()
    registry = await start_registry(nursery, store, clock, idle_timeout=60, hold=timedelta(minutes=15))
    await activate(registry)
    await registry.ask(FLIGHT_ID, Book(FIRST_TICKET, IVAN), math.inf)

    await trio.sleep(61)
    assert registry.active_flights == 1
    assert store.rows[FIRST_TICKET].status is TicketStatus.BOOKED
    await trio.sleep(15 * 60)
    assert registry.active_flights == 0


async def test_hold_expiry_writes_release(nursery, autojump_clock):
    store = FakeStore()
    registry = await start_registry(nursery, store, hold=timedelta(minutes=15), idle_timeout=3600)
    await activate(registry)
    await registry.ask(FLIGHT_ID, Book(FIRST_TICKET, IVAN), math.inf)

    await trio.sleep(15 * 60 - 1)
    assert store.rows[FIRST_TICKET].status is TicketStatus.BOOKED
    await trio.sleep(2)

    assert store.commit_calls == 2
    assert store.rows[FIRST_TICKET].status is TicketStatus.AVAILABLE
    assert store.rows[FIRST_TICKET].holder is None
    assert store.commits[1].seats_available_delta == 1
    assert registry.actor(FLIGHT_ID).flight.seats_available == 5


async def test_close_drains_queue(nursery):
    store = FakeStore()
    store.load_gate = trio.Event()
    registry = await start_registry(nursery, store)

    calls = await send(nursery, registry, Buy(FIRST_TICKET, IVAN), Buy(FIRST_TICKET + 1, ANNA))
    nursery.start_soon(registry.close)
    await wait_all_tasks_blocked()
    with pytest.raises(ServiceUnavailable):
        await registry.ask(FLIGHT_ID, ListTickets(), math.inf)
    store.load_gate.set()
    with trio.fail_after(5):
        while registry.active_flights:
            await trio.sleep(0.01)

    assert all(call.reply is not None for call in calls)
    assert store.rows[FIRST_TICKET + 1].status is TicketStatus.SOLD
