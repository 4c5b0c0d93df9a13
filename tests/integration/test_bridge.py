"""The trio-to-asyncio bridge on its own uvloop thread, without a database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import trio

from persistence.bridge import AsyncioBridge


@pytest.fixture
def bridge() -> Iterator[AsyncioBridge]:
    bridge = AsyncioBridge()
    yield bridge
    bridge.close()


async def test_bridge_returns_value(bridge):
    async def add(left: int, right: int) -> int:
        await asyncio.sleep(0)
        return left + right

    with trio.fail_after(5):
        assert await bridge.run(add, 2, 3) == 5


async def test_bridge_raises_error(bridge):
    async def fail() -> None:
        await asyncio.sleep(0)
        raise LookupError("no such row")

    with trio.fail_after(5), pytest.raises(LookupError, match="no such row"):
        await bridge.run(fail)


async def test_bridge_sync_failure_raises(bridge):
    def not_a_coroutine_function() -> None:
        raise ValueError("invalid argument")

    async def call() -> None:
        await bridge.run(not_a_coroutine_function)

    # A bridge that never wakes its caller cannot be cancelled either, so the
    # call runs in its own trio loop on a worker thread that a timeout abandons.
    with trio.fail_after(5), pytest.raises(ValueError, match="invalid argument"):
        await trio.to_thread.run_sync(trio.run, call, abandon_on_cancel=True)


async def test_bridge_cancel_waits_cleanup(bridge):
    cleaned_up = False

    async def slow() -> None:
        nonlocal cleaned_up
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)
            cleaned_up = True

    with trio.fail_after(5):
        with trio.move_on_after(0.05) as scope:
            await bridge.run(slow)

    assert scope.cancelled_caught
    assert cleaned_up
