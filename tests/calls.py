"""Send commands to a registry from separate tasks and keep what came back."""

from __future__ import annotations

import math

import trio
from trio.testing import wait_all_tasks_blocked

from engine.commands import Command, Reply
from engine.errors import EngineError
from engine.registry import Registry


class Call:
    """One command sent through ``registry.ask`` in its own task, and its outcome."""

    def __init__(self, registry: Registry, flight_id: int, command: Command, deadline: float = math.inf) -> None:
        self.registry = registry
        self.flight_id = flight_id
        self.command = command
        self.deadline = deadline
        self.reply: Reply | None = None
        self.error: EngineError | None = None
        self.done = trio.Event()

    async def run(self) -> None:
        try:
            self.reply = await self.registry.ask(self.flight_id, self.command, self.deadline)
        except EngineError as error:
            self.error = error
        self.done.set()


async def send_in_order(
    nursery: trio.Nursery, registry: Registry, flight_id: int, *commands: Command, deadline: float = math.inf
) -> list[Call]:
    """Start one task per command and return once every task is blocked.

    Each task is posted before the next one starts, so the commands reach
    the mailbox in the order given. Wait on ``Call.done`` for the outcome
    when the actor does real I/O.
    """
    calls = [Call(registry, flight_id, command, deadline) for command in commands]
    for call in calls:
        nursery.start_soon(call.run)
        await wait_all_tasks_blocked()
    return calls


async def wait_done(calls: list[Call], timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        for call in calls:
            await call.done.wait()
