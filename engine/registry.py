"""Find, start, supervise and stop flight actors; route commands to them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import trio

from .actor import ActorSettings, Envelope, EnvelopeState, FlightActor, utc_now
from .commands import Command, Reply
from .errors import (
    ActorCrashed,
    DeadlineExceeded,
    EngineError,
    FlightNotFound,
    ForwardFailed,
    Overloaded,
    OwnershipLost,
    ServiceUnavailable,
    TicketNotFound,
)
from .idempotency import IdempotentRequest
from .observer import NULL_OBSERVER, EngineObserver
from .ownership import Forwarder, NotOwner, Ownership, PeerUnreachable
from .ports import Fence, FlightStore, StoreError

log = logging.getLogger(__name__)

# Hops a command may take while ownership moves: a redirect or an owner
# that turns out to be gone counts one each.
_MAX_ROUTING_ATTEMPTS = 4

# Longest wait for the database to record released leases, in seconds;
# leases not released lapse by themselves.
_RELEASE_TIMEOUT = 2.0


class Registry:
    """One actor per active flight, started on its first command.

    Runs its actors in its own nursery (``run``). An actor that crashes is
    removed and its waiters fail with a 503-class error; the next command for
    that flight starts a new actor from the database. Idle actors passivate.

    With ``ownership``, an actor runs only while this process holds the
    flight's lease, and commands for flights that another process owns go
    to that process through ``forwarder``.
    """

    def __init__(
        self,
        store: FlightStore,
        settings: ActorSettings = ActorSettings(),
        *,
        clock: Callable[[], datetime] = utc_now,
        ticket_cache_size: int = 1_000_000,
        observer: EngineObserver = NULL_OBSERVER,
        ownership: Ownership | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        self._store = store
        self._observer = observer
        self._ownership = ownership
        self._forwarder = forwarder
        self._settings = settings
        self._clock = clock
        self._actors: dict[int, FlightActor] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = False
        # Ticket ids never move between flights, so this cache never goes stale.
        self._ticket_flights: dict[int, int] = {}
        # Flights whose ticket ids were looked up, or are being, to fill that cache.
        self._listing: set[int] = set()
        self._ticket_cache_size = ticket_cache_size

    @property
    def active_flights(self) -> int:
        return len(self._actors)

    def actor(self, flight_id: int) -> FlightActor | None:
        return self._actors.get(flight_id)

    def mailbox_depths(self) -> list[int]:
        """Return the number of queued commands of each active actor."""
        return [actor.mailbox_depth for actor in self._actors.values()]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the actors until cancelled or until ``close`` lets them drain."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            log.info("flight registry started")
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
        log.info("flight registry stopped")

    async def close(self) -> None:
        """Stop taking commands, let every actor finish what it has queued, then stop."""
        self._closing = True
        actors = list(self._actors.values())
        for actor in actors:
            actor.mailbox.close()
        while self._actors:
            await trio.sleep(0.01)
        log.info("flight registry drained %d actors", len(actors))
        if self._ownership is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(_RELEASE_TIMEOUT):
                await self._ownership.release_all()

    async def ask(
        self, flight_id: int, command: Command, deadline: float, *, idempotency: IdempotentRequest | None = None
    ) -> Reply:
        """Send a command to the flight's actor and wait for its reply until ``deadline`` (trio time).

        With ``idempotency``, the actor stores the rendered outcome in the
        same transaction as the command's change. With ownership, a flight
        owned by another process gets the command through the forwarder, and
        its reply comes from that process.
        """
        if self._ownership is None or (flight_id in self._actors and self._ownership.valid()):
            envelope = Envelope(command, idempotency)
            self._post(flight_id, envelope)
            return await self._await_reply(envelope, deadline)
        return await self._route(flight_id, command, deadline, forward=True, idempotency=idempotency)

    async def ask_owned(
        self, flight_id: int, command: Command, deadline: float, *, idempotency: IdempotentRequest | None = None
    ) -> Reply:
        """Like ``ask``, for a command another process forwarded: raise NotOwner instead of forwarding it on."""
        if self._ownership is None or (flight_id in self._actors and self._ownership.valid()):
            return await self.ask(flight_id, command, deadline, idempotency=idempotency)
        return await self._route(flight_id, command, deadline, forward=False, idempotency=idempotency)

    def revoke(self, flight_id: int, fence: Fence) -> None:
        """Stop the flight's actor because its lease ``fence`` is lost; its pending commands fail."""
        actor = self._actors.get(flight_id)
        if actor is None or actor.fence != fence:
            return
        del self._actors[flight_id]
        actor.revoke(OwnershipLost(f"flight {flight_id} moved to another server; the request was not applied, retry"))

    async def _route(
        self,
        flight_id: int,
        command: Command,
        deadline: float,
        *,
        forward: bool,
        idempotency: IdempotentRequest | None = None,
    ) -> Reply:
        ownership = self._ownership
        assert ownership is not None
        if not ownership.valid():
            # After a pause (or failed renewals) the leases held may be gone:
            # confirm them before this process acts as an owner again.
            await ownership.refresh()

        for _ in range(_MAX_ROUTING_ATTEMPTS):
            if self._closing:
                raise ServiceUnavailable("the server is shutting down; retry on another instance or later")
            target = await ownership.resolve(flight_id, deadline)
            if isinstance(target, Fence):
                envelope = Envelope(command, idempotency)
                self._post(flight_id, envelope, target)
                return await self._await_reply(envelope, deadline)
            if not forward or self._forwarder is None:
                raise NotOwner(target)
            self._remember_remote_flight(flight_id)

            try:
                return await self._forwarder.forward(target, flight_id, command, deadline, idempotency=idempotency)
            except NotOwner as redirect:
                log.info("flight %d: node %s is not its owner (it names %s); looking again",
                         flight_id, target.owner, redirect.holder.owner if redirect.holder else "none")
                ownership.redirected(flight_id, target, redirect.holder)
            except PeerUnreachable as error:
                log.warning("flight %d: owner %s at %s is unreachable: %s", flight_id, target.owner, target.address, error)
                ownership.suspect(target)
            except ForwardFailed as error:
                log.warning("flight %d: forwarding to owner %s at %s failed: %s", flight_id, target.owner, target.address, error)
                ownership.suspect(target)
                raise
            if trio.current_time() >= deadline:
                raise DeadlineExceeded(f"flight {flight_id}: no reply within the request deadline; the request was not applied, retry later")
        raise ServiceUnavailable(f"the owner of flight {flight_id} keeps changing; the request was not applied, retry later")

    async def ask_for_ticket(
        self, ticket_id: int, command: Command, deadline: float, *, idempotency: IdempotentRequest | None = None
    ) -> Reply:
        """Like ``ask``, for the flight that ticket ``ticket_id`` belongs to."""
        flight_id = await self.flight_of_ticket(ticket_id, deadline)
        return await self.ask(flight_id, command, deadline, idempotency=idempotency)

    async def flight_of_ticket(self, ticket_id: int, deadline: float) -> int:
        flight_id = self._ticket_flights.get(ticket_id)
        if flight_id is not None:
            return flight_id

        with trio.move_on_at(deadline) as scope:
            try:
                flight_id = await self._store.flight_of_ticket(ticket_id)
            except StoreError as error:
                log.warning("ticket %d: flight lookup failed: %s", ticket_id, error)
                raise ServiceUnavailable(f"ticket {ticket_id} could not be looked up; retry later") from error
        if scope.cancelled_caught:
            raise DeadlineExceeded(f"ticket {ticket_id} could not be looked up in time; retry later")
        if flight_id is None:
            raise TicketNotFound(f"ticket {ticket_id} does not exist")
        self._remember_tickets([ticket_id], flight_id)
        return flight_id

    def _remember_remote_flight(self, flight_id: int) -> None:
        # Another process owns the flight, so no actor load here fills the
        # cache with its tickets: look them all up at once instead of one
        # query per ticket.
        if flight_id not in self._listing and self._nursery is not None:
            self._listing.add(flight_id)
            self._nursery.start_soon(self._remember_flight_tickets, flight_id)

    async def _remember_flight_tickets(self, flight_id: int) -> None:
        try:
            ticket_ids = await self._store.ticket_ids(flight_id)
        except StoreError as error:
            log.warning("flight %d: ticket ids could not be loaded for lookups: %s", flight_id, error)
            self._listing.discard(flight_id)
            return
        self._remember_tickets(ticket_ids, flight_id)

    def _remember_tickets(self, ticket_ids: list[int], flight_id: int) -> None:
        if len(self._ticket_flights) + len(ticket_ids) > self._ticket_cache_size:
            self._ticket_flights.clear()
            self._listing.clear()
        for ticket_id in ticket_ids:
            self._ticket_flights[ticket_id] = flight_id

    def _post(self, flight_id: int, envelope: Envelope, fence: Fence | None = None) -> None:
        if self._closing:
            raise ServiceUnavailable("the server is shutting down; retry on another instance or later")
        actor = self._actors.get(flight_id) or self._start(flight_id, fence)
        try:
            actor.mailbox.send_nowait(envelope)
        except trio.WouldBlock:
            raise Overloaded(f"flight {flight_id} has too many pending requests; retry later") from None

    async def _await_reply(self, envelope: Envelope, deadline: float) -> Reply:
        try:
            with trio.move_on_at(deadline):
                return await envelope.wait()
        finally:
            if envelope.state is EnvelopeState.QUEUED:
                envelope.abandoned = True

        if envelope.state is EnvelopeState.QUEUED:
            raise DeadlineExceeded("no reply within the request deadline; the request was not applied, retry later")
        # The command is in a transaction already: its outcome comes soon
        # (the database command timeout bounds it) and must not be dropped.
        return await envelope.wait()

    def _start(self, flight_id: int, fence: Fence | None) -> FlightActor:
        if self._nursery is None:
            raise ServiceUnavailable("the flight registry is not running")
        assert fence is not None or self._ownership is None, "an owned flight's actor needs its lease"
        actor = FlightActor(
            flight_id,
            self._store,
            self._settings,
            clock=self._clock,
            on_idle=self._passivate,
            on_loaded=lambda flight: self._remember_tickets(list(flight.tickets), flight.id),
            observer=self._observer,
            fence=fence,
        )
        self._actors[flight_id] = actor
        self._nursery.start_soon(self._supervise, actor, name=f"flight-{flight_id}")
        return actor

    def _passivate(self, actor: FlightActor) -> bool:
        # Runs in the actor's task with no checkpoint before it returns, so no
        # command can be posted to the mailbox after this check.
        if actor.mailbox_depth:
            return False
        if self._actors.get(actor.flight_id) is actor:
            del self._actors[actor.flight_id]
        actor.mailbox.close()
        return True

    async def _supervise(self, actor: FlightActor) -> None:
        error: EngineError = ActorCrashed(f"flight {actor.flight_id} is restarting; retry later")
        try:
            await actor.run()
        except FlightNotFound as not_found:
            error = not_found
        except OwnershipLost as lost:
            error = lost
        except StoreError as store_error:
            log.error("flight %d actor stopped: database failure: %s", actor.flight_id, store_error)
            error = ServiceUnavailable(f"flight {actor.flight_id} could not be loaded; retry later")
        except Exception:
            log.exception("flight %d actor crashed; the next request restarts it from the database", actor.flight_id)
        finally:
            if self._actors.get(actor.flight_id) is actor:
                del self._actors[actor.flight_id]
            actor.fail_pending(error)
            if self._ownership is not None and actor.fence is not None:
                await self._release(actor.flight_id, actor.fence, lost=isinstance(error, OwnershipLost))

    async def _release(self, flight_id: int, fence: Fence, *, lost: bool) -> None:
        assert self._ownership is not None
        if self._closing:
            # close() releases every lease left in one statement once all
            # actors have stopped.
            return
        if self._ownership.drop(flight_id, fence) and not lost:
            with trio.CancelScope(shield=True), trio.move_on_after(_RELEASE_TIMEOUT):
                await self._ownership.release({flight_id: fence.epoch})
