"""Group commit across flights: the batches of many actors in one transaction.

Each flight actor already writes its own batch in one transaction. When
requests spread over many flights, each actor's batch contains one command, and
the per-transaction costs (a pooled connection, BEGIN, COMMIT and its WAL
flush, a crossing to the bridge thread) are paid once per request. Here the
actors' commits queue up, and whoever commits next takes every queued batch
into one transaction with set-based statements, so those costs are shared.

There is no committer task and no timer: the first caller to find a free
slot commits what is queued, itself included, while the others wait. Up to
``max_groups`` transactions run at once; while they do, new batches
accumulate, so groups grow with the load and a lone request is never held
back.

A guard that fails for one flight in a group (a changed row, a lost lease, a
taken idempotency key) rolls back the whole transaction. The group is then
written again one batch per transaction, so only the flight that broke the
rule gets its error. Any other failure (a lost connection, a timeout) fails
every batch of the group with it, as it would have failed each alone.

NOTE: one flight's commit that waits on a row lock (held by a stale owner or
by hand, outside the service) delays the other flights of its group with it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .batch_writes import Batch, GroupConflict
from .errors import DatabaseUnavailable

log = logging.getLogger(__name__)

WriteGroup = Callable[[list[Batch]], Awaitable[None]]


@dataclass(eq=False, slots=True)
class _Waiter:
    batch: Batch
    done: bool = False
    committed: bool = False
    error: Exception | None = None


class GroupCommitter:
    """Commits queued batches in groups through ``write``, one transaction per call.

    ``write`` must write every batch it gets or none, and raise GroupConflict
    when a guard fails for one of several batches.
    """

    def __init__(self, write: WriteGroup, *, max_groups: int = 2, max_batches: int = 64) -> None:
        if max_groups < 1 or max_batches < 1:
            raise ValueError(f"max_groups and max_batches must be at least 1, got {max_groups} and {max_batches}")
        self._write = write
        self._max_groups = max_groups
        self._max_batches = max_batches
        self._queue: list[_Waiter] = []
        self._running = 0
        self._progress = trio.Event()
        # Read by the metrics: transactions committed, the flight batches
        # they wrote, and groups a guard failure made write one by one.
        self.groups_committed = 0
        self.batches_committed = 0
        self.groups_split = 0

    async def commit(self, batch: Batch) -> None:
        """Write ``batch`` in the next group; return once it is committed or raise why it is not."""
        waiter = _Waiter(batch)
        self._queue.append(waiter)
        while not waiter.done:
            if self._queue and self._running < self._max_groups:
                await self._commit_group(self._take())
            else:
                await self._progress.wait()
        if not waiter.committed:
            assert waiter.error is not None
            raise waiter.error

    def _take(self) -> list[_Waiter]:
        # A process commits only fenced or only unfenced batches, so the two are never mixed.
        fenced = self._queue[0].batch.fence is not None
        group: list[_Waiter] = []
        rest: list[_Waiter] = []
        for waiter in self._queue:
            if len(group) < self._max_batches and (waiter.batch.fence is not None) == fenced:
                group.append(waiter)
            else:
                rest.append(waiter)
        self._queue = rest
        return group

    async def _commit_group(self, group: list[_Waiter]) -> None:
        self._running += 1
        try:
            await self._write_group(group)
        finally:
            for waiter in group:
                if not waiter.committed and waiter.error is None:
                    # Interrupted by KeyboardInterrupt or a bug: the other
                    # callers must not take the group for written.
                    waiter.error = DatabaseUnavailable(
                        f"flight {waiter.batch.flight_id}: the commit was interrupted; it may have been written"
                    )
                waiter.done = True
            self._running -= 1
            progress, self._progress = self._progress, trio.Event()
            progress.set()

    async def _write_group(self, group: list[_Waiter]) -> None:
        try:
            await self._write([waiter.batch for waiter in group])
        except GroupConflict as conflict:
            log.warning("group commit of %d flights rolled back (%s); writing each flight alone", len(group), conflict)
            self.groups_split += 1
        except Exception as error:
            for waiter in group:
                waiter.error = error
            return
        else:
            self.groups_committed += 1
            self.batches_committed += len(group)
            for waiter in group:
                waiter.committed = True
            return

        for waiter in group:
            try:
                await self._write([waiter.batch])
            except Exception as error:
                waiter.error = error
            else:
                self.groups_committed += 1
                self.batches_committed += 1
                waiter.committed = True
