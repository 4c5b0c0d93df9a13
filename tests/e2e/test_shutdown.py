"""SIGTERM and SIGINT under load: stop accepting, finish in-flight requests, flush, exit 0.

Clients open a new connection per request and read until the server closes
it. Each request so ends in exactly one of four ways: a complete response, a
refused connection, a reset before any response byte (a connection the
kernel accepted but the server never did), or a truncated response, which
must never happen. The database must then match every complete response.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import trio

from persistence.seed import seed_flights
from tests.server_process import ServerProcess
from tests.support import hold_ticket_lock, wait_for_lock_waiters

pytestmark = [pytest.mark.trio, pytest.mark.slow]

SEATS = 400
CLIENTS = 12
GRACE = 10.0
# Long enough that the held purchase is still running when the test checks,
# after the server has logged the signal; short enough to finish in GRACE.
LOCK_SECONDS = 4.0


@dataclass
class Outcome:
    kind: str  # "complete", "refused", "reset" or "truncated"
    status: int | None = None
    body: dict | None = None


def parse_response(data: bytes) -> Outcome:
    if not data:
        return Outcome("reset")
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return Outcome("truncated")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(":", 1) for line in lines[1:])
    length = int({name.lower(): value for name, value in headers.items()}["content-length"])
    if len(body) != length:
        return Outcome("truncated", status)
    return Outcome("complete", status, json.loads(body))


async def raw_post(port: int, path: str, payload: dict) -> Outcome:
    """POST on a fresh connection and read until the server closes it."""
    body = json.dumps(payload).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return Outcome("refused")
    data = b""
    async with stream:
        try:
            await stream.send_all(request)
            while chunk := await stream.receive_some(65536):
                data += chunk
        except trio.BrokenResourceError:
            pass
    return parse_response(data)


def buyer(ticket_id: int) -> dict:
    return {
        "email": f"shutdown{ticket_id}@mail.com",
        "firstname": "Ivan",
        "lastname": "Ivanov",
        "passNumber": f"SD-{ticket_id:06d}",
    }


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
async def test_shutdown_finishes_in_flight_requests(database, database_url, tmp_path, signum):
    departure = datetime.now(UTC) + timedelta(days=3)
    stalled_flight, busy_flight = await seed_flights(
        database, [("SU", "Moscow", "Kazan", departure), ("SU", "Moscow", "Sochi", departure)], SEATS
    )
    stalled_ticket = await database.fetchval("SELECT min(id) FROM tickets WHERE flight_id = $1", stalled_flight)
    free_tickets = iter(
        [row["id"] for row in await database.fetch("SELECT id FROM tickets WHERE flight_id = $1 ORDER BY id", busy_flight)]
    )
    server = ServerProcess(database_url, tmp_path / "server.log", shutdown_grace=GRACE)
    port = urlsplit(await server.start()).port
    outcomes: dict[int, Outcome] = {}

    async def client() -> None:
        for ticket_id in free_tickets:
            outcome = await raw_post(port, "/api/v1/tickets/buy", {"ticketId": ticket_id, "passenger": buyer(ticket_id)})
            outcomes[ticket_id] = outcome
            if outcome.kind != "complete":
                return

    async def stalled_buy() -> None:
        outcomes[stalled_ticket] = await raw_post(
            port, "/api/v1/tickets/buy", {"ticketId": stalled_ticket, "passenger": buyer(stalled_ticket)}
        )

    try:
        with trio.fail_after(GRACE + 30):
            async with trio.open_nursery() as nursery:
                for _ in range(CLIENTS):
                    nursery.start_soon(client)
                await trio.sleep(0.5)
                await nursery.start(hold_ticket_lock, database, [stalled_ticket], LOCK_SECONDS)
                nursery.start_soon(stalled_buy)
                await wait_for_lock_waiters(database, 1)
                server.send_signal(signum)
                with trio.fail_after(5):
                    while f"received {signum.name}" not in server.new_log():
                        await trio.sleep(0.02)
                await trio.sleep(0.2)
                refused_while_draining = await raw_post(port, "/api/v1/tickets/buy", {"ticketId": 1, "passenger": buyer(1)})
                assert stalled_ticket not in outcomes, "the stalled request finished before the lock was released"
                exit_code = await server.wait(GRACE + 20)
    finally:
        await server.kill()

    log = server.new_log()
    kinds = [outcome.kind for outcome in outcomes.values()]
    print(
        f"{signum.name}: {kinds.count('complete')} complete, {kinds.count('refused')} refused, "
        f"{kinds.count('reset')} reset before any byte, {kinds.count('truncated')} truncated"
    )
    assert exit_code == 0, log[-3000:]
    assert refused_while_draining.kind == "refused"
    assert "truncated" not in kinds
    assert outcomes[stalled_ticket].kind == "complete"
    assert outcomes[stalled_ticket].status == 201
    assert "flight registry drained" in log
    assert "database pool closed" in log

    rows = {
        row["id"]: row
        for row in await database.fetch(
            "SELECT t.id, t.status, p.email FROM tickets t LEFT JOIN passengers p ON p.id = t.passenger_id"
        )
    }
    for ticket_id, outcome in outcomes.items():
        if outcome.kind == "complete" and outcome.status == 201:
            assert rows[ticket_id]["status"] == "sold"
            assert rows[ticket_id]["email"] == buyer(ticket_id)["email"]
        else:
            assert rows[ticket_id]["status"] == "available", f"ticket {ticket_id} was sold but the client saw {outcome}"
    sold = sum(1 for row in rows.values() if row["status"] == "sold")
    assert sold == sum(1 for outcome in outcomes.values() if outcome.status == 201)
