"""Slow and abusive clients: header trickling, stalled bodies, too many requests at once."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from api.server import raise_open_file_limit
from tests.conftest import start_live_server, test_settings
from tests.server_process import ServerProcess
from tests.support import hold_ticket_lock, passenger, pending_commands, seed_one_flight

pytestmark = pytest.mark.trio

TRICKLERS = 1000
TRICKLE_INTERVAL = 2.0
KEEP_ALIVE_TIMEOUT = 3.0
READ_TIMEOUT = 4.0
HEADER = b"POST /api/v1/tickets/buy HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


async def trickle_headers(port: int, results: Counter) -> None:
    """Send one header byte every TRICKLE_INTERVAL seconds until the server closes the connection."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        results["connect_failed"] += 1
        return
    async with stream:
        for byte in HEADER:
            try:
                await stream.send_all(bytes([byte]))
                with trio.move_on_after(TRICKLE_INTERVAL):
                    await stream.receive_some(1024)
                    results["closed_by_server"] += 1
                    return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                results["closed_by_server"] += 1
                return
    results["survived"] += 1


async def serve_new_clients(base_url: str, flight_id: int, statuses: list[int]) -> None:
    """Make requests on fresh connections while the tricklers are connected; each must get its response in time."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
        for number in range(1, 21):
            with trio.fail_after(10):
                listing = await client.get(f"/api/v1/tickets/flight-{flight_id}")
                buy = await client.post("/api/v1/tickets/buy", json={"ticketId": number, "passenger": passenger(number)})
            statuses += [listing.status_code, buy.status_code]
            await trio.sleep(0.2)


@pytest.mark.slow
async def test_header_trickling_does_not_block_new_clients(database, database_url, tmp_path):
    raise_open_file_limit()
    flight_id = await seed_one_flight(database, seats=20)
    server = ServerProcess(
        database_url, tmp_path / "server.log", keep_alive_timeout=KEEP_ALIVE_TIMEOUT, read_timeout=READ_TIMEOUT
    )
    port = urlsplit(await server.start()).port
    results: Counter = Counter()
    statuses: list[int] = []

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(TRICKLERS):
                    nursery.start_soon(trickle_headers, port, results)
                await trio.sleep(1.0)
                await serve_new_clients(server.base_url, flight_id, statuses)
    finally:
        await server.kill()

    print(f"header trickling: {dict(results)}; new clients got {Counter(statuses)}")
    assert results["connect_failed"] == 0
    assert results["survived"] == 0
    assert results["closed_by_server"] == TRICKLERS
    assert statuses == [200, 201] * 20


@pytest.mark.slow
async def test_stalled_body_closed_after_read_timeout(database, database_url, tmp_path):
    await seed_one_flight(database)
    server = ServerProcess(database_url, tmp_path / "server.log", read_timeout=2)
    port = urlsplit(await server.start()).port

    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(HEADER + b"Content-Length: 100\r\n\r\n" + b'{"ticketId": 1')
            received = b""
            with trio.fail_after(20):
                try:
                    while chunk := await stream.receive_some(4096):
                        received += chunk
                except trio.BrokenResourceError:
                    pass
    finally:
        await server.kill()

    assert not received.startswith(b"HTTP/1.1 2")
    tickets = await database.fetchval("SELECT count(*) FROM tickets WHERE status <> 'available'")
    assert tickets == 0


async def test_request_cap_answers_503(database, database_url, nursery):
    flight_id = await seed_one_flight(database)
    runtime, base_url = await start_live_server(nursery, test_settings(database_url, max_concurrent_requests=3))
    statuses: list[int] = []

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def stalled_buy(number: int) -> None:
            response = await client.post("/api/v1/tickets/buy", json={"ticketId": number, "passenger": passenger(number)})
            statuses.append(response.status_code)

        with trio.fail_after(30):
            async with trio.open_nursery() as requests:
                # All three rows: a purchase of an unlocked seat could commit
                # on its own before the others arrive.
                await requests.start(hold_ticket_lock, database, [1, 2, 3], 3.0)
                for number in (1, 2, 3):
                    requests.start_soon(stalled_buy, number)
                # Wait until all three purchases are pending in the flight's
                # actor, so that the three running requests are exactly those.
                with trio.fail_after(2.5):
                    while pending_commands(runtime.registry.actor(flight_id)) < 3:
                        await trio.sleep(0.02)
                rejected = await client.get("/api/v1/flights")
                health = await client.get("/healthz")
            after = await client.get("/api/v1/flights")

    assert rejected.status_code == 503
    assert rejected.json()["code"] == "overloaded"
    assert rejected.headers["Retry-After"] == "1"
    assert health.status_code == 200
    assert sorted(statuses) == [201, 201, 201]
    assert after.status_code == 200
    nursery.cancel_scope.cancel()
