"""503 responses over HTTP: a full mailbox and a passed deadline, with nothing applied.

A second database session locks a ticket row, so the flight's actor waits
inside its commit and later requests queue behind it, as under heavy load.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from persistence.database import Database

from .support import ANNA, IVAN, assert_error, seat_request, seed_flight, ticket_row

BUY = "/api/v1/tickets/buy"


@asynccontextmanager
async def row_locked(database: Database, ticket_id: int) -> AsyncIterator[None]:
    """Hold ``SELECT ... FOR UPDATE`` on one ticket in another session until the block exits."""

    async def acquire() -> Any:
        return await database.pool.acquire()

    connection = await database.bridge.run(acquire)
    try:
        await database.bridge.run(connection.execute, "BEGIN")
        await database.bridge.run(connection.execute, "SELECT 1 FROM tickets WHERE id = $1 FOR UPDATE", ticket_id)
        yield
    finally:
        await database.bridge.run(connection.execute, "ROLLBACK")
        await database.bridge.run(database.pool.release, connection)


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not await condition():
            await trio.sleep(0.02)


async def commit_waits_on_lock(database: Database) -> bool:
    waiting = await database.fetchval(
        """
        SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'tickets' AND wait_event_type = 'Lock'
        """
    )
    return waiting > 0


class Background:
    """A request sent from its own task; ``response`` is set when it completes."""

    def __init__(self, client: Any, path: str, body: dict[str, Any]) -> None:
        self.client = client
        self.path = path
        self.body = body
        self.response: Any = None
        self.done = trio.Event()

    async def run(self) -> None:
        self.response = await self.client.post(self.path, json=self.body)
        self.done.set()


async def test_full_mailbox_503(live_server_factory, database, nursery):
    server = await live_server_factory(mailbox_size=1)
    flight_id, tickets = await seed_flight(database, seats=3)
    registry = server.runtime.registry

    async with row_locked(database, tickets[0]):
        in_commit = Background(server.client, BUY, seat_request(tickets[0], IVAN))
        nursery.start_soon(in_commit.run)
        await wait_until(lambda: commit_waits_on_lock(database))
        queued = Background(server.client, BUY, seat_request(tickets[1], ANNA))
        nursery.start_soon(queued.run)

        async def one_queued() -> bool:
            return registry.actor(flight_id).mailbox_depth == 1

        await wait_until(one_queued)
        before = await ticket_row(database, tickets[2])
        rejected = await server.client.post(BUY, json=seat_request(tickets[2], ANNA))

    with trio.fail_after(10):
        await in_commit.done.wait()
        await queued.done.wait()
    assert_error(rejected, 503, "overloaded")
    assert rejected.headers["retry-after"] == "1"
    assert in_commit.response.status_code == 201
    assert queued.response.status_code == 201
    assert await ticket_row(database, tickets[2]) == before


async def test_deadline_503_not_applied(live_server_factory, database, nursery):
    server = await live_server_factory(request_deadline=0.5)
    flight_id, tickets = await seed_flight(database, seats=3)

    async with row_locked(database, tickets[0]):
        in_commit = Background(server.client, BUY, seat_request(tickets[0], IVAN))
        nursery.start_soon(in_commit.run)
        await wait_until(lambda: commit_waits_on_lock(database))
        late = await server.client.post(BUY, json=seat_request(tickets[1], ANNA))
        # The deadline has passed for the request in the commit too. It must
        # still get the commit's outcome, not a 503.
        assert not in_commit.done.is_set()

    with trio.fail_after(10):
        await in_commit.done.wait()
    listed = await server.client.get(f"/api/v1/tickets/flight-{flight_id}")
    assert_error(late, 503, "deadline_exceeded")
    assert late.headers["retry-after"] == "1"
    assert in_commit.response.status_code == 201
    assert (await ticket_row(database, tickets[0]))["status"] == "sold"
    assert (await ticket_row(database, tickets[1]))["status"] == "available"
    assert tickets[1] in [ticket["id"] for ticket in listed.json()]
