"""Registry routing with leases, on in-memory fakes of the lease store, flight store and forwarder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio

from engine.actor import ActorSettings
from engine.commands import Buy, ListTickets, SeatReply, TicketsReply
from engine.errors import OwnershipLost, OwnerUnavailable
from engine.idempotency import IdempotentRequest, StoredResponse
from engine.ownership import Holder, NotOwner, Ownership, PeerUnreachable
from engine.ports import Fence, LeaseLost
from engine.registry import Registry
from engine.seats import Changes, Flight, FlightInfo, FlightStatus, Passenger, Ticket, TicketStatus, TicketView

FLIGHT_ID = 1
PASSENGER = Passenger("ivan@mail.com", "4322-000001", "Ivan", "Ivanov")
OTHER = Holder("node-b", "10.0.0.2:9000", 3.0)


class FakeFlightStore:
    def __init__(self) -> None:
        self.commits: list[Fence | None] = []
        self.responses: list[StoredResponse] = []
        self.reject_with: Exception | None = None

    async def load_flight(self, flight_id: int) -> Flight | None:
        info = FlightInfo(flight_id, "SU", "Moscow", "Berlin", datetime(2030, 1, 1, tzinfo=UTC))
        return Flight(info, FlightStatus.ON_SALE, [Ticket(1, 1), Ticket(2, 2)])

    async def commit(self, flight_id: int, changes: Changes, *, fence: Fence | None = None) -> None:
        await trio.lowlevel.checkpoint()
        if self.reject_with is not None:
            raise self.reject_with
        self.commits.append(fence)
        self.responses.extend(changes.responses)

    async def flight_of_ticket(self, ticket_id: int) -> int | None:
        return FLIGHT_ID

    async def ticket_ids(self, flight_id: int) -> list[int]:
        return [1, 2]


class FakeLeaseStore:
    """Returns scripted results from acquire(), then fresh epochs."""

    def __init__(self, *results: int | Holder) -> None:
        self.results = list(results)
        self.acquired = 0
        self.renewable: set[int] | None = None
        self.released: list[dict[int, int]] = []
        self._epoch = 0

    async def acquire(self, flight_id: int, owner: str, address: str, ttl: float) -> int | Holder | None:
        await trio.sleep(0.01)
        self.acquired += 1
        if self.results:
            return self.results.pop(0)
        self._epoch += 1
        return self._epoch

    async def renew(self, owner: str, epochs: dict[int, int], ttl: float) -> set[int]:
        await trio.lowlevel.checkpoint()
        return set(epochs) if self.renewable is None else self.renewable & set(epochs)

    async def release(self, owner: str, epochs: dict[int, int]) -> int:
        self.released.append(epochs)
        return len(epochs)


class FakeForwarder:
    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[Holder, int]] = []
        self.idempotency: list[IdempotentRequest | None] = []

    async def forward(self, holder, flight_id, command, deadline, *, idempotency=None):
        await trio.lowlevel.checkpoint()
        self.calls.append((holder, flight_id))
        self.idempotency.append(idempotency)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@pytest.fixture
async def make_registry(nursery):
    async def make(leases: FakeLeaseStore, forwarder: FakeForwarder | None = None, store: FakeFlightStore | None = None):
        ownership = Ownership(leases, "node-a", "10.0.0.1:9000", ttl=6.0)
        registry = Registry(store or FakeFlightStore(), ActorSettings(), ownership=ownership, forwarder=forwarder or FakeForwarder())
        await nursery.start(registry.run)
        await nursery.start(ownership.run, registry.revoke)
        return registry, ownership

    return make


async def test_concurrent_commands_take_lease_once(make_registry):
    leases = FakeLeaseStore()
    registry, ownership = await make_registry(leases)
    replies = []

    async def ask() -> None:
        replies.append(await registry.ask(FLIGHT_ID, ListTickets(), trio.current_time() + 5))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(ask)

    assert leases.acquired == 1
    assert len(replies) == 50
    assert all(isinstance(reply, TicketsReply) for reply in replies)
    assert ownership.held == {FLIGHT_ID: Fence("node-a", 1)}


async def test_batch_commits_under_fence(make_registry):
    store = FakeFlightStore()
    registry, _ = await make_registry(FakeLeaseStore(), store=store)

    reply = await registry.ask(FLIGHT_ID, Buy(1, PASSENGER), trio.current_time() + 5)

    assert isinstance(reply, SeatReply)
    assert store.commits == [Fence("node-a", 1)]


async def test_command_forwarded_to_holder(make_registry):
    answer = TicketsReply(FlightInfo(FLIGHT_ID, "SU", "Moscow", "Berlin", datetime(2030, 1, 1, tzinfo=UTC)), [])
    leases = FakeLeaseStore(OTHER)
    forwarder = FakeForwarder(answer, answer)
    registry, _ = await make_registry(leases, forwarder)

    first = await registry.ask(FLIGHT_ID, ListTickets(), trio.current_time() + 5)
    second = await registry.ask(FLIGHT_ID, ListTickets(), trio.current_time() + 5)

    assert first is answer
    assert second is answer
    assert forwarder.calls == [(OTHER, FLIGHT_ID), (OTHER, FLIGHT_ID)]
    assert leases.acquired == 1
    assert registry.actor(FLIGHT_ID) is None


async def test_forwarded_command_keeps_idempotency(make_registry):
    answer = SeatReply(
        FlightInfo(FLIGHT_ID, "SU", "Moscow", "Berlin", datetime(2030, 1, 1, tzinfo=UTC)),
        TicketView(1, 1, TicketStatus.SOLD, None, datetime(2029, 1, 1, tzinfo=UTC)),
        PASSENGER,
    )
    forwarder = FakeForwarder(answer)
    registry, _ = await make_registry(FakeLeaseStore(OTHER), forwarder)
    keyed = IdempotentRequest("buy-1", bytes(32), lambda outcome: (201, b"{}"))

    await registry.ask(FLIGHT_ID, Buy(1, PASSENGER), trio.current_time() + 5, idempotency=keyed)

    assert forwarder.idempotency == [keyed]


async def test_owned_command_stores_response(make_registry):
    store = FakeFlightStore()
    registry, _ = await make_registry(FakeLeaseStore(), store=store)
    first = IdempotentRequest("buy-1", bytes(32), lambda outcome: (201, b"{}"))
    second = IdempotentRequest("buy-2", bytes(32), lambda outcome: (201, b"{}"))

    # The first command takes the lease and starts the actor; the second finds it running.
    await registry.ask_owned(FLIGHT_ID, Buy(1, PASSENGER), trio.current_time() + 5, idempotency=first)
    await registry.ask_owned(FLIGHT_ID, Buy(2, PASSENGER), trio.current_time() + 5, idempotency=second)

    assert [response.key for response in store.responses] == ["buy-1", "buy-2"]


async def test_forwarded_command_not_forwarded_again(make_registry):
    registry, _ = await make_registry(FakeLeaseStore(OTHER))

    with pytest.raises(NotOwner) as raised:
        await registry.ask_owned(FLIGHT_ID, ListTickets(), trio.current_time() + 5)

    assert raised.value.holder == OTHER


async def test_unreachable_owner_flight_taken_after_lapse(make_registry, autojump_clock):
    leases = FakeLeaseStore(OTHER, OTHER)
    forwarder = FakeForwarder(PeerUnreachable("connection refused"))
    registry, ownership = await make_registry(leases, forwarder)
    start = trio.current_time()

    reply = await registry.ask(FLIGHT_ID, ListTickets(), start + 5)

    assert isinstance(reply, TicketsReply)
    assert trio.current_time() - start >= OTHER.expires_in
    assert ownership.held == {FLIGHT_ID: Fence("node-a", 1)}
    assert len(forwarder.calls) == 1


async def test_silent_owner_past_deadline_unavailable(make_registry, autojump_clock):
    silent = Holder("node-b", "10.0.0.2:9000", 30.0)
    registry, _ = await make_registry(FakeLeaseStore(silent, silent), FakeForwarder(PeerUnreachable("refused")))

    with pytest.raises(OwnerUnavailable) as raised:
        await registry.ask(FLIGHT_ID, ListTickets(), trio.current_time() + 5)

    assert raised.value.retry_after == 30
    assert "lapses in 30.0 s" in str(raised.value)


async def test_redirect_follows_new_holder(make_registry):
    answer = TicketsReply(FlightInfo(FLIGHT_ID, "SU", "Moscow", "Berlin", datetime(2030, 1, 1, tzinfo=UTC)), [])
    moved = Holder("node-c", "10.0.0.3:9000", 4.0)
    forwarder = FakeForwarder(NotOwner(moved), answer)
    registry, _ = await make_registry(FakeLeaseStore(OTHER), forwarder)

    assert await registry.ask(FLIGHT_ID, ListTickets(), trio.current_time() + 5) is answer
    assert forwarder.calls == [(OTHER, FLIGHT_ID), (moved, FLIGHT_ID)]


async def test_lost_lease_stops_actor(make_registry, autojump_clock):
    leases = FakeLeaseStore()
    registry, ownership = await make_registry(leases)
    await registry.ask(FLIGHT_ID, ListTickets(), trio.current_time() + 5)
    assert registry.actor(FLIGHT_ID) is not None

    leases.renewable = set()
    await ownership.refresh()
    await trio.sleep(0.1)

    assert registry.actor(FLIGHT_ID) is None
    assert ownership.held == {}
    await registry.ask(FLIGHT_ID, ListTickets(), trio.current_time() + 5)
    assert leases.acquired == 2
    assert ownership.held == {FLIGHT_ID: Fence("node-a", 2)}


async def test_fencing_rejection_fails_callers_and_stops_actor(make_registry):
    store = FakeFlightStore()
    registry, ownership = await make_registry(FakeLeaseStore(), store=store)
    await registry.ask(FLIGHT_ID, ListTickets(), trio.current_time() + 5)
    store.reject_with = LeaseLost("lease epoch 1 is no longer held")

    with pytest.raises(OwnershipLost):
        await registry.ask(FLIGHT_ID, Buy(1, PASSENGER), trio.current_time() + 5)
    await trio.sleep(0.01)

    assert registry.actor(FLIGHT_ID) is None
    assert ownership.held == {}
