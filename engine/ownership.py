"""Flight ownership across processes: leases taken, renewed and given up through a LeaseStore.

Several processes (workers of one machine, or nodes on several machines)
share one database. A flight's actor may run only in the process that holds
the flight's lease; every other process forwards the flight's commands to
that owner. A lease carries a fencing epoch that grows with every
acquisition, and every batch commits under its epoch (``Fence``), so a
process that lost its lease cannot write for that flight any more.

``Ownership`` keeps this process's side of it: the leases it holds, where
other flights' owners are, the renewal loop, and the wait for a dead owner's
lease to lapse. ``Registry`` routes commands with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from .commands import Command, Reply
from .errors import DeadlineExceeded, FlightNotFound, OwnerUnavailable, ServiceUnavailable
from .idempotency import IdempotentRequest
from .ports import Fence, StoreError

log = logging.getLogger(__name__)

# Extra wait after a lease's expiry before trying to take it, so that a
# rounding of the remaining seconds never makes the attempt come early.
_LAPSE_MARGIN = 0.05

# Renewal failures are logged on the first one and then every this many.
_RENEW_FAILURE_LOG_EVERY = 10


@dataclass(frozen=True, slots=True)
class Holder:
    """Another process's lease on a flight, as the database stored it."""

    owner: str
    address: str
    # Seconds until the lease lapses unless renewed, by the database clock.
    expires_in: float


class LeaseStore(Protocol):
    """The shared table of flight leases; ``persistence.leases`` implements it."""

    async def acquire(self, flight_id: int, owner: str, address: str, ttl: float) -> int | Holder | None:
        """Take the lease if it is free, lapsed or already ``owner``'s, for ``ttl`` seconds.

        Return the new epoch, the current holder when another process holds
        the lease, or None when no such flight exists.
        """

    async def renew(self, owner: str, epochs: dict[int, int], ttl: float) -> set[int]:
        """Extend each lease (flight id to epoch) still held with that epoch; return the flight ids extended."""

    async def release(self, owner: str, epochs: dict[int, int]) -> int:
        """Make each lease (flight id to epoch) still held with that epoch free at once; return how many were."""


class NotOwner(Exception):
    """The process requested to run a flight's command does not own the flight.

    ``holder`` is the owner it found in the database, or None if it does not know.
    """

    def __init__(self, holder: Holder | None) -> None:
        super().__init__(f"not the owner; the lease is held by {holder.owner if holder else 'an unknown process'}")
        self.holder = holder


class PeerUnreachable(Exception):
    """The command could not be delivered to the owner; it was not applied anywhere."""


class Forwarder(Protocol):
    """Sends a command to the process that owns the flight and returns that process's reply."""

    async def forward(
        self,
        holder: Holder,
        flight_id: int,
        command: Command,
        deadline: float,
        *,
        idempotency: IdempotentRequest | None = None,
    ) -> Reply:
        """Run ``command`` on ``holder``'s process before ``deadline`` (trio time).

        With ``idempotency``, its key and request hash go along, and the
        owner's actor stores the rendered outcome under the key in the
        transaction of the change, as it does for a local command.

        Raise the engine error the owner raised, ``NotOwner`` if the peer
        does not own the flight, ``PeerUnreachable`` if the command was not
        delivered, or ``ForwardFailed`` if it was delivered and no reply came.
        """


class Ownership:
    """This process's leases and its view of which process owns each other flight.

    ``node_id`` names this process in the lease table and ``address``
    (host:port) is where other processes reach its forwarding listener.
    Leases last ``ttl`` seconds and are renewed every ``ttl / 3``.
    """

    def __init__(self, store: LeaseStore, node_id: str, address: str, ttl: float) -> None:
        self.node_id = node_id
        self.address = address
        self.ttl = ttl
        self._store = store
        self._held: dict[int, Fence] = {}
        self._remote: dict[int, Holder] = {}
        # Owners that did not respond, mapped to the trio time until which no command goes to them.
        self._suspected: dict[str, float] = {}
        self._acquiring: dict[int, trio.Event] = {}
        self._refreshing: trio.Event | None = None
        self._on_lost: Callable[[int, Fence], None] = lambda flight_id, fence: None
        # The leases held are surely still ours until then (trio time): the
        # last renewal that succeeded was sent ``ttl`` seconds before it.
        self._valid_until = -math.inf
        self._renew_failures = 0

    @property
    def held(self) -> dict[int, Fence]:
        return dict(self._held)

    def valid(self) -> bool:
        """Return whether the leases held are known to be ours now, without asking the database."""
        return trio.current_time() < self._valid_until

    async def run(
        self, on_lost: Callable[[int, Fence], None], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Renew the leases held until cancelled; call ``on_lost`` for each one another process took."""
        self._on_lost = on_lost
        task_status.started()
        log.info("lease renewal started: node %s at %s, leases of %.1f s", self.node_id, self.address, self.ttl)
        try:
            while True:
                await trio.sleep(self.ttl / 3)
                await self.refresh()
        finally:
            log.info("lease renewal stopped: node %s", self.node_id)

    async def refresh(self) -> None:
        """Renew every lease held now, in one statement; concurrent calls share one renewal."""
        if self._refreshing is not None:
            await self._refreshing.wait()
            return
        done = self._refreshing = trio.Event()
        try:
            await self._renew()
        finally:
            self._refreshing = None
            done.set()

    async def _renew(self) -> None:
        epochs = {flight_id: fence.epoch for flight_id, fence in self._held.items()}
        sent = trio.current_time()
        if not epochs:
            self._valid_until = sent + self.ttl
            return
        try:
            renewed = await self._store.renew(self.node_id, epochs, self.ttl)
        except StoreError as error:
            self._renew_failures += 1
            if self._renew_failures % _RENEW_FAILURE_LOG_EVERY == 1:
                log.warning(
                    "node %s: renewing %d leases failed (%d failures in a row): %s",
                    self.node_id, len(epochs), self._renew_failures, error,
                )
            if trio.current_time() >= self._valid_until:
                self._lose_all("renewals failed for longer than the lease time")
            return

        if self._renew_failures:
            log.info("node %s: lease renewal works again after %d failures", self.node_id, self._renew_failures)
            self._renew_failures = 0
        self._valid_until = sent + self.ttl
        for flight_id, epoch in epochs.items():
            fence = self._held.get(flight_id)
            if flight_id not in renewed and fence is not None and fence.epoch == epoch:
                self._lose(flight_id, fence, "another process took it over")

    def _lose_all(self, reason: str) -> None:
        for flight_id, fence in list(self._held.items()):
            self._lose(flight_id, fence, reason)

    def _lose(self, flight_id: int, fence: Fence, reason: str) -> None:
        del self._held[flight_id]
        log.warning("flight %d: lease epoch %d of node %s lost: %s; its actor stops", flight_id, fence.epoch, self.node_id, reason)
        self._on_lost(flight_id, fence)

    async def resolve(self, flight_id: int, deadline: float) -> Fence | Holder:
        """Return this process's fence for the flight, taking the lease if it can, or the process that holds it.

        Waits for the lease of an owner that does not respond to lapse, up to
        ``deadline`` (trio time). Concurrent calls for one flight share one
        database round trip.
        """
        while True:
            fence = self._held.get(flight_id)
            if fence is not None:
                return fence
            holder = self._remote.get(flight_id)
            if holder is not None:
                return holder
            acquiring = self._acquiring.get(flight_id)
            if acquiring is None:
                break
            with trio.move_on_at(deadline):
                await acquiring.wait()
            if not acquiring.is_set():
                raise DeadlineExceeded(f"the owner of flight {flight_id} was not found in time; the request was not applied")

        done = self._acquiring[flight_id] = trio.Event()
        try:
            return await self._acquire(flight_id, deadline)
        finally:
            del self._acquiring[flight_id]
            done.set()

    async def _acquire(self, flight_id: int, deadline: float) -> Fence | Holder:
        while True:
            sent = trio.current_time()
            result: int | Holder | None = None
            try:
                with trio.move_on_at(deadline) as scope:
                    result = await self._store.acquire(flight_id, self.node_id, self.address, self.ttl)
            except StoreError as error:
                log.warning("flight %d: lease lookup failed: %s", flight_id, error)
                raise ServiceUnavailable(f"the owner of flight {flight_id} could not be looked up; retry later") from error
            if scope.cancelled_caught:
                # NOTE: the statement may have committed. Then this process
                # holds a lease it does not know of, which lapses after ttl
                # unless its next command for the flight takes it again.
                raise DeadlineExceeded(f"the owner of flight {flight_id} was not found in time; the request was not applied")

            if result is None:
                raise FlightNotFound(f"flight {flight_id} does not exist")
            if isinstance(result, int):
                fence = Fence(self.node_id, result)
                self._held[flight_id] = fence
                self._valid_until = max(self._valid_until, sent + self.ttl)
                log.info("flight %d: lease taken by node %s (epoch %d)", flight_id, self.node_id, result)
                return fence

            holder = result
            if holder.expires_in > 0 and self._is_suspected(holder.owner):
                wake = trio.current_time() + holder.expires_in + _LAPSE_MARGIN
                if wake > deadline:
                    raise OwnerUnavailable(
                        f"the owner of flight {flight_id} (node {holder.owner} at {holder.address}) does not respond "
                        f"and its lease lapses in {holder.expires_in:.1f} s; the request was not applied, retry then",
                        retry_after=max(1, math.ceil(holder.expires_in)),
                    )
                log.info(
                    "flight %d: owner %s does not respond; waiting %.1f s for its lease to lapse",
                    flight_id, holder.owner, holder.expires_in,
                )
                await trio.sleep_until(wake)
                continue
            if holder.expires_in <= 0:
                # Released or lapsed between the two statements: try again.
                if trio.current_time() >= deadline:
                    raise DeadlineExceeded(f"the owner of flight {flight_id} was not found in time; the request was not applied")
                continue
            self._remote[flight_id] = holder
            return holder

    def _is_suspected(self, owner: str) -> bool:
        until = self._suspected.get(owner)
        if until is None:
            return False
        if trio.current_time() >= until:
            del self._suspected[owner]
            return False
        return True

    def suspect(self, holder: Holder) -> None:
        """Stop forwarding to an owner that did not respond, until its lease lapses or ``ttl`` passes."""
        if not self._is_suspected(holder.owner):
            log.warning("node %s at %s does not respond; its flights move once its leases lapse", holder.owner, holder.address)
        self._suspected[holder.owner] = trio.current_time() + self.ttl
        for flight_id in [flight_id for flight_id, known in self._remote.items() if known.owner == holder.owner]:
            del self._remote[flight_id]

    def redirected(self, flight_id: int, target: Holder, holder: Holder | None) -> None:
        """Record a peer's reply that it does not own the flight, and who it found as owner."""
        if self._remote.get(flight_id) == target:
            del self._remote[flight_id]
        if holder is None or holder.owner == target.owner:
            # The database names that process, but whoever listens at its
            # address is not it: the owner is gone.
            self.suspect(target)
        elif holder.owner != self.node_id and holder.expires_in > 0:
            self._remote[flight_id] = holder

    def drop(self, flight_id: int, fence: Fence) -> bool:
        """Forget a lease whose actor stopped; return whether it was still held (then release it)."""
        if self._held.get(flight_id) == fence:
            del self._held[flight_id]
            return True
        return False

    async def release(self, epochs: dict[int, int]) -> None:
        """Give up leases (flight id to epoch) in the database, so another process can take them at once."""
        if not epochs:
            return
        try:
            released = await self._store.release(self.node_id, epochs)
        except StoreError as error:
            log.warning(
                "node %s: releasing the leases of flights %s failed; they lapse within %.1f s: %s",
                self.node_id, sorted(epochs), self.ttl, error,
            )
            return
        if len(epochs) == 1:
            (flight_id,) = epochs
            if released:
                log.info("flight %d: node %s released its lease (epoch %d)", flight_id, self.node_id, epochs[flight_id])
            else:
                log.info("flight %d: lease epoch %d had already moved from node %s", flight_id, epochs[flight_id], self.node_id)
        else:
            log.info("node %s released the leases of %d of %d flights held", self.node_id, released, len(epochs))

    async def release_all(self) -> None:
        """Give up every lease still held (at shutdown)."""
        epochs = {flight_id: fence.epoch for flight_id, fence in self._held.items()}
        self._held.clear()
        await self.release(epochs)
