"""The flight actor: the only writer of one flight's tickets in this process.

It takes commands from a bounded mailbox, decides a batch of them in memory,
writes the batch's changes in one transaction, and replies only after COMMIT.
If the transaction fails, the actor reloads the flight from the database, so
no uncommitted change survives in memory. Every caller in the batch then gets
an error, unless the reloaded rows show that the commit did reach the
database, which happens when the connection is lost during COMMIT.

When the flight's lease is held under a ``Fence``, every batch commits
under it. A batch whose fence no longer matches (another process took the
flight over) fails its callers and stops the actor instead of reloading:
the flight now belongs to that other process.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import trio

from .commands import Command, Reply, decide
from .errors import CommitFailed, CommitOutcomeUnknown, EngineError, FlightNotFound, OwnershipLost, SeatRuleViolation
from .idempotency import IdempotentRequest, StoredResponse
from .observer import NULL_OBSERVER, EngineObserver
from .ports import Fence, FlightStore, LeaseLost, StaleFlightState, StoreError
from .seats import Changes, Flight

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class EnvelopeState(enum.Enum):
    QUEUED = "queued"
    DECIDING = "deciding"
    DONE = "done"


class Envelope:
    """A command in a mailbox, and the slot its reply arrives in."""

    __slots__ = ("command", "idempotency", "state", "abandoned", "_done", "_reply", "_error")

    def __init__(self, command: Command, idempotency: IdempotentRequest | None = None) -> None:
        self.command = command
        self.idempotency = idempotency
        self.state = EnvelopeState.QUEUED
        # Set by a caller that gave up while the command was still queued;
        # the actor then skips it, so a 503 always means "not applied".
        self.abandoned = False
        self._done = trio.Event()
        self._reply: Reply | None = None
        self._error: EngineError | None = None

    def resolve(self, reply: Reply) -> None:
        self._reply = reply
        self._finish()

    def fail(self, error: EngineError) -> None:
        self._error = error
        self._finish()

    def _finish(self) -> None:
        self.state = EnvelopeState.DONE
        self._done.set()

    async def wait(self) -> Reply:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._reply is not None
        return self._reply


@dataclass(frozen=True)
class ActorSettings:
    mailbox_size: int = 1024
    batch_cap: int = 256
    hold: timedelta = timedelta(minutes=15)
    idle_timeout: float = 300.0


class FlightActor:
    """Serial owner of one flight's seat map; see the module docstring."""

    def __init__(
        self,
        flight_id: int,
        store: FlightStore,
        settings: ActorSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_idle: Callable[[FlightActor], bool] = lambda actor: True,
        on_loaded: Callable[[Flight], None] = lambda flight: None,
        observer: EngineObserver = NULL_OBSERVER,
        fence: Fence | None = None,
    ) -> None:
        self.flight_id = flight_id
        self.fence = fence
        self.flight: Flight | None = None
        self._store = store
        self._settings = settings
        self._clock = clock
        self._on_idle = on_idle
        self._on_loaded = on_loaded
        self._observer = observer
        self.mailbox, self._inbox = trio.open_memory_channel[Envelope](settings.mailbox_size)
        self._in_flight: list[Envelope] = []
        self._last_activity = trio.current_time()
        self._revoked: EngineError | None = None
        self._wait_scope: trio.CancelScope | None = None

    @property
    def mailbox_depth(self) -> int:
        return self._inbox.statistics().current_buffer_used

    async def run(self) -> None:
        """Load the flight and serve the mailbox until passivated, revoked or the mailbox closes.

        Raise the revocation error (after ``revoke``) or ``OwnershipLost``
        (after a fenced batch found the lease taken over).
        """
        self.flight = await self._load()
        log.debug("flight %d actor started with %d tickets", self.flight_id, len(self.flight.tickets))

        while True:
            if self._revoked is not None:
                raise self._revoked
            envelope = None
            with trio.move_on_at(self._wake_time()) as self._wait_scope:
                try:
                    envelope = await self._inbox.receive()
                except trio.EndOfChannel:
                    log.debug("flight %d actor stopped: mailbox closed", self.flight_id)
                    return
            self._wait_scope = None
            if self._revoked is not None:
                if envelope is not None:
                    envelope.fail(self._revoked)
                raise self._revoked

            if envelope is None:
                if self._holds_due():
                    await self._process([])
                elif self._idle() and self._on_idle(self):
                    log.debug("flight %d actor passivated after %.0f s idle", self.flight_id, self._settings.idle_timeout)
                    return
                continue

            batch = [envelope]
            while len(batch) < self._settings.batch_cap:
                try:
                    batch.append(self._inbox.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await self._process(batch)
            self._last_activity = trio.current_time()

    def revoke(self, error: EngineError) -> None:
        """Stop the actor before its next batch (its lease is gone); its queued commands fail with ``error``."""
        self._revoked = error
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def fail_pending(self, error: EngineError) -> None:
        """Fail the batch being processed and everything still queued (after a crash)."""
        for envelope in self._in_flight:
            if envelope.state is not EnvelopeState.DONE:
                envelope.fail(error)
        self._in_flight = []
        while True:
            try:
                envelope = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            envelope.fail(error)
        self._inbox.close()

    async def _load(self) -> Flight:
        flight = await self._store.load_flight(self.flight_id)
        if flight is None:
            raise FlightNotFound(f"flight {self.flight_id} does not exist")
        self._on_loaded(flight)
        return flight

    async def _process(self, batch: list[Envelope]) -> None:
        flight = self.flight
        assert flight is not None
        self._in_flight = batch
        now = self._clock()
        flight.release_expired(now)

        decided: list[tuple[Envelope, Reply | SeatRuleViolation]] = []
        for envelope in batch:
            if envelope.abandoned:
                continue
            envelope.state = EnvelopeState.DECIDING
            try:
                decided.append((envelope, decide(flight, envelope.command, now, self._settings.hold)))
            except SeatRuleViolation as violation:
                decided.append((envelope, violation))

        changes = flight.take_changes()
        changes.responses = self._responses_to_store(decided)
        if changes:
            started = trio.current_time()
            try:
                # Shielded: once sent, the transaction's outcome must be known
                # before any caller gets a reply. asyncpg's command timeout bounds it.
                with trio.CancelScope(shield=True):
                    if self.fence is None:
                        await self._store.commit(self.flight_id, changes)
                    else:
                        await self._store.commit(self.flight_id, changes, fence=self.fence)
            except LeaseLost as error:
                self._give_up(decided, error)
            except StoreError as error:
                self._observer.batch_failed(len(decided), trio.current_time() - started)
                await self._recover(decided, changes, error)
                return
            self._observer.batch_committed(len(decided), trio.current_time() - started)
            flight.mark_written(changes)

        self._answer(decided)

    def _answer(self, decided: list[tuple[Envelope, Reply | SeatRuleViolation]]) -> None:
        for envelope, outcome in decided:
            if isinstance(outcome, SeatRuleViolation):
                envelope.fail(outcome)
            else:
                envelope.resolve(outcome)
        self._in_flight = []

    @staticmethod
    def _responses_to_store(decided: list[tuple[Envelope, Reply | SeatRuleViolation]]) -> list[StoredResponse]:
        responses = []
        for envelope, outcome in decided:
            if envelope.idempotency is not None:
                response = envelope.idempotency.stored_response(outcome)
                if response is not None:
                    responses.append(response)
        return responses

    def _give_up(self, decided: list[tuple[Envelope, object]], error: LeaseLost) -> None:
        assert self.fence is not None
        log.error(
            "flight %d: batch of %d commands rejected by the fencing check (epoch %d of node %s): %s",
            self.flight_id, len(decided), self.fence.epoch, self.fence.owner, error,
        )
        lost = OwnershipLost(f"flight {self.flight_id} moved to another server; the request was not applied, retry")
        for envelope, _ in decided:
            envelope.fail(lost)
        self._in_flight = []
        self.flight = None
        raise lost

    async def _recover(
        self, decided: list[tuple[Envelope, Reply | SeatRuleViolation]], changes: Changes, error: StoreError
    ) -> None:
        if isinstance(error, StaleFlightState):
            log.error("flight %d: guarded write found rows changed by another writer; reloading: %s", self.flight_id, error)
        else:
            log.error("flight %d: batch of %d commands failed to commit; reloading: %s", self.flight_id, len(decided), error)

        # If the reload fails too, whether the batch was committed is
        # unknown, so its callers get CommitOutcomeUnknown and the actor
        # crashes. Its supervisor fails the queued commands, and the next
        # command starts a fresh actor.
        self.flight = None
        try:
            self.flight = await self._load()
        except StoreError:
            unknown = CommitOutcomeUnknown(
                f"flight {self.flight_id}: the database failed while saving the change, which may have been "
                "applied; retry with the same Idempotency-Key, or check the ticket before retrying"
            )
            for envelope, _ in decided:
                envelope.fail(unknown)
            self._in_flight = []
            raise
        log.info("flight %d reloaded from the database after a failed batch", self.flight_id)

        # A connection lost during COMMIT leaves the outcome unknown to the
        # client library, though the server may have committed. The reloaded
        # rows show which, and a 503 for a committed batch would deny a sale
        # that exists.
        if not isinstance(error, StaleFlightState) and self._batch_is_in(self.flight, changes):
            log.warning(
                "flight %d: the reloaded rows show the failed batch of %d commands as written, or it changed "
                "no seat; replying with its decisions",
                self.flight_id,
                len(decided),
            )
            self._answer(decided)
            return

        failure = CommitFailed(f"flight {self.flight_id}: the change could not be saved; retry later")
        for envelope, _ in decided:
            envelope.fail(failure)
        self._in_flight = []

    @staticmethod
    def _batch_is_in(flight: Flight, changes: Changes) -> bool:
        """Return True if the reloaded ``flight`` shows the batch's ticket and status changes as written.

        Each written ticket's version is one above the version the batch
        expected, which no other writer could produce without the guard
        failing. A flight status only moves forward (on sale, sales closed,
        canceled), so a reloaded status equal to the batch's new one was
        written by it. A batch that changed neither only stored responses:
        its outcomes are rejections and reads, true whether or not that
        commit happened, so it counts as written.
        """
        if changes.flight_status is not None and flight.status is not changes.flight_status:
            return False
        for change in changes.tickets:
            ticket = flight.tickets.get(change.ticket.id)
            if ticket is None or ticket.version != change.expected_version + 1 or ticket.status is not change.ticket.status:
                return False
        return True

    def _wake_time(self) -> float:
        assert self.flight is not None
        expiry = self.flight.next_expiry()
        if expiry is None:
            return self._last_activity + self._settings.idle_timeout
        # An actor with a pending hold never passivates, so it sleeps until the
        # hold lapses. Waking at an idle deadline already past would spin the loop.
        seconds = (expiry - self._clock()).total_seconds()
        return trio.current_time() + max(seconds, 0.0)

    def _holds_due(self) -> bool:
        assert self.flight is not None
        expiry = self.flight.next_expiry()
        return expiry is not None and expiry <= self._clock()

    def _idle(self) -> bool:
        assert self.flight is not None
        return (
            self.flight.next_expiry() is None
            and trio.current_time() >= self._last_activity + self._settings.idle_timeout
        )
