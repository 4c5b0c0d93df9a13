"""Run asyncpg coroutines from trio on a dedicated uvloop thread.

asyncpg works only on asyncio. Hosting an asyncio loop inside trio
(trio-asyncio) measured about 2.5x slower per round trip, so the loop runs on
its own thread. Trio code crosses to it once per transaction, because each
transaction is written as one asyncio coroutine and handed over whole. A cancelled trio
caller cancels the asyncio task and then waits until that task has really
finished, so a connection is never left inside a transaction or outside the
pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio
import uvloop

log = logging.getLogger(__name__)

T = TypeVar("T")


class BridgeTaskCancelled(Exception):
    """The asyncio side of a bridged call was cancelled before it finished."""


class AsyncioBridge:
    """An asyncio event loop (uvloop) running on a daemon thread."""

    def __init__(self, name: str = "asyncpg-bridge") -> None:
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=name, daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        self._loop.close()

    async def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``func(*args)`` on the asyncio thread and return its result.

        Trio cancellation is forwarded to the asyncio task. The call returns
        only after that task is done, so its cleanup (a ROLLBACK, a release to
        the pool) has always run by then.
        """
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()
        handle: dict[str, asyncio.Task[T]] = {}

        def on_done(asyncio_task: asyncio.Task[T]) -> None:
            if asyncio_task.cancelled():
                result = outcome.Error(BridgeTaskCancelled())
            else:
                error = asyncio_task.exception()
                result = outcome.Error(error) if error is not None else outcome.Value(asyncio_task.result())
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        def start() -> None:
            try:
                asyncio_task = self._loop.create_task(func(*args))
            except BaseException as error:
                # If func(*args) raised or returned no coroutine, no task will
                # ever call on_done, so the trio task is woken with the error here.
                token.run_sync_soon(trio.lowlevel.reschedule, task, outcome.Error(error))
                return
            handle["task"] = asyncio_task
            asyncio_task.add_done_callback(on_done)

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            # Ask asyncio to cancel, then keep waiting for on_done. Returning
            # FAILED means the wake-up still comes from on_done.
            self._loop.call_soon_threadsafe(self._cancel, handle)
            return trio.lowlevel.Abort.FAILED

        self._loop.call_soon_threadsafe(start)
        try:
            return await trio.lowlevel.wait_task_rescheduled(abort)
        except BridgeTaskCancelled:
            # Normally the trio scope that asked for the cancellation is still
            # cancelled, and this checkpoint raises trio.Cancelled for it.
            await trio.lowlevel.checkpoint()
            raise

    @staticmethod
    def _cancel(handle: dict[str, asyncio.Task[Any]]) -> None:
        asyncio_task = handle.get("task")
        if asyncio_task is not None:
            asyncio_task.cancel()

    def run_blocking(self, coroutine: Awaitable[T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop from plain synchronous code (CLI, tests)."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def close(self) -> None:
        """Stop the loop and join its thread; close pools before calling this."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            log.warning("asyncio bridge thread did not stop within 5 s")
