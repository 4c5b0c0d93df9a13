"""GroupCommitter: who commits, what goes into one group, and how failures reach each caller."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from engine.ports import Fence
from engine.seats import Changes
from persistence.batch_writes import Batch, GroupConflict
from persistence.errors import DatabaseUnavailable, StaleWrite
from persistence.group_commit import GroupCommitter

FENCE = Fence("node-a", 1)


class FakeWrites:
    """Records each group written; a group waits while ``gate`` is closed, then fails as configured."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate: trio.Event | None = None
        # Flight ids whose batch breaks a guard: alone it raises StaleWrite,
        # with others the whole group raises GroupConflict.
        self.stale: set[int] = set()
        self.error: Exception | None = None

    async def write(self, batches: list[Batch]) -> None:
        flight_ids = [batch.flight_id for batch in batches]
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        broken = self.stale.intersection(flight_ids)
        if broken and len(batches) > 1:
            raise GroupConflict(f"flights {sorted(broken)} broke a guard")
        if broken:
            raise StaleWrite(f"flight {flight_ids[0]}: guarded update matched 0 of 1 tickets")
        self.groups.append(flight_ids)


def batch(flight_id: int, fence: Fence | None = None) -> Batch:
    return Batch(flight_id, Changes(), fence)


async def record(committer: GroupCommitter, item: Batch, outcomes: dict[int, BaseException | None]) -> None:
    """Commit ``item`` and record its error, or None once it is committed."""
    try:
        await committer.commit(item)
    except Exception as error:
        outcomes[item.flight_id] = error
    else:
        outcomes[item.flight_id] = None


async def commit_behind_first(
    committer: GroupCommitter, writes: FakeWrites, first: Batch, rest: list[Batch]
) -> dict[int, BaseException | None]:
    """Commit ``first`` while the gate is closed, queue ``rest`` behind it in order, then open the gate.

    Return each flight's error, or None for a committed batch.
    """
    writes.gate = trio.Event()
    outcomes: dict[int, BaseException | None] = {}

    async with trio.open_nursery() as nursery:
        for item in [first, *rest]:
            nursery.start_soon(record, committer, item, outcomes)
            await trio.testing.wait_all_tasks_blocked()
        writes.gate.set()
    return outcomes


async def commit_all(committer: GroupCommitter, batches: list[Batch]) -> dict[int, BaseException | None]:
    """Commit each batch in its own task, the way actors do; return each flight's error or None."""
    outcomes: dict[int, BaseException | None] = {}

    async with trio.open_nursery() as nursery:
        for item in batches:
            nursery.start_soon(record, committer, item, outcomes)
    return outcomes


async def test_lone_commit_writes_at_once():
    writes = FakeWrites()
    committer = GroupCommitter(writes.write)

    await committer.commit(batch(1))

    assert writes.groups == [[1]]
    assert committer.groups_committed == 1


async def test_queued_commits_share_next_group():
    writes = FakeWrites()
    committer = GroupCommitter(writes.write, max_groups=1)

    await commit_behind_first(committer, writes, batch(1), [batch(2), batch(3), batch(4)])

    assert [sorted(group) for group in writes.groups] == [[1], [2, 3, 4]]
    assert committer.groups_committed == 2
    assert committer.batches_committed == 4


async def test_max_groups_run_at_once():
    writes = FakeWrites()
    writes.gate = trio.Event()
    committer = GroupCommitter(writes.write, max_groups=2)

    async with trio.open_nursery() as nursery:
        for flight_id in (1, 2, 3, 4):
            nursery.start_soon(committer.commit, batch(flight_id))
            await trio.testing.wait_all_tasks_blocked()
        writes.gate.set()

    # 1 and 2 each started a group while a slot was free; 3 and 4 waited and went together.
    assert sorted(writes.groups) == [[1], [2], [3, 4]]


async def test_group_size_is_capped():
    writes = FakeWrites()
    writes.gate = trio.Event()
    committer = GroupCommitter(writes.write, max_groups=1, max_batches=2)

    async with trio.open_nursery() as nursery:
        for flight_id in (1, 2, 3, 4, 5, 6):
            nursery.start_soon(committer.commit, batch(flight_id))
            await trio.testing.wait_all_tasks_blocked()
        writes.gate.set()

    assert writes.groups == [[1], [2, 3], [4, 5], [6]]


async def test_fenced_and_unfenced_kept_apart():
    writes = FakeWrites()
    committer = GroupCommitter(writes.write, max_groups=1)

    await commit_behind_first(committer, writes, batch(1), [batch(2, FENCE), batch(3), batch(4, FENCE)])

    assert writes.groups == [[1], [2, 4], [3]]


async def test_conflict_fails_only_its_cause():
    writes = FakeWrites()
    writes.stale = {3}
    committer = GroupCommitter(writes.write, max_groups=1)

    outcomes = await commit_behind_first(committer, writes, batch(1), [batch(2), batch(3), batch(4)])

    assert outcomes[2] is None
    assert outcomes[4] is None
    assert isinstance(outcomes[3], StaleWrite)
    assert sorted(writes.groups) == [[1], [2], [4]]
    assert committer.groups_split == 1
    assert committer.batches_committed == 3


async def test_failure_fails_whole_group():
    writes = FakeWrites()
    writes.gate = trio.Event()
    committer = GroupCommitter(writes.write, max_groups=1)

    async with trio.open_nursery() as nursery:
        outcomes: dict[int, BaseException | None] = {}

        async def run() -> None:
            outcomes.update(await commit_all(committer, [batch(1), batch(2), batch(3)]))

        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        writes.error = DatabaseUnavailable("database unavailable: connection lost")
        writes.gate.set()

    assert set(outcomes) == {1, 2, 3}
    assert all(isinstance(error, DatabaseUnavailable) for error in outcomes.values())


class Interrupted(BaseException):
    """Stands for KeyboardInterrupt: not an Exception, so it passes every handler."""


async def test_interrupted_group_never_written():
    writes = FakeWrites()
    writes.gate = trio.Event()
    errors: list[DatabaseUnavailable] = []

    async def commit(flight_id: int) -> None:
        try:
            await committer.commit(batch(flight_id))
        except DatabaseUnavailable as error:
            errors.append(error)

    original = writes.write

    async def interrupt_groups(batches: list[Batch]) -> None:
        await original(batches)
        if len(batches) > 1:
            raise Interrupted()

    committer = GroupCommitter(interrupt_groups, max_groups=1)
    with pytest.raises(BaseExceptionGroup) as raised:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(commit, 1)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(commit, 2)
            nursery.start_soon(commit, 3)
            await trio.testing.wait_all_tasks_blocked()
            writes.gate.set()

    assert raised.group_contains(Interrupted)
    # The group [2, 3] was written and then interrupted: its leader raised
    # Interrupted, and the other batch must not pass for committed.
    assert [sorted(group) for group in writes.groups] == [[1], [2, 3]]
    assert len(errors) == 1
    assert "may have been written" in str(errors[0])


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommitter(FakeWrites().write, max_groups=0)
