"""Several server processes on one database: one owner per flight, forwarding, takeover and fencing.

Every node is a `tickets serve` subprocess on a loopback port; leases last
two seconds so that takeovers happen within the tests' bounded waits.
TICKETS_TEST_LEASE_TTL sets another lease time, for example the default 5
seconds to measure the takeover time a deployment sees (run with -s).
"""

from __future__ import annotations

import itertools
import os
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import trio

from api.rendering import format_time
from persistence.seed import seed_flights
from tests.cluster import Cluster, Node
from tests.conftest import CALLBACK_SECRET

pytestmark = [pytest.mark.trio, pytest.mark.slow]

LEASE_TTL = float(os.environ.get("TICKETS_TEST_LEASE_TTL", "2.0"))


@pytest.fixture
async def cluster(database, database_url, tmp_path):
    """Starts server processes on an emptied database and stops them, by PID, after the test."""
    nodes = Cluster(database_url, tmp_path)
    try:
        yield nodes
    finally:
        nodes.stop_all()


def passenger(number: int) -> dict[str, str]:
    return {
        "email": f"passenger{number}@mail.com",
        "firstname": "Ivan",
        "lastname": f"Ivanov{number}",
        "passNumber": f"4322-{number:06d}",
    }


def seat_request(ticket_id: int, number: int) -> dict:
    return {"ticketId": ticket_id, "passenger": passenger(number)}


async def seed(database, flights: int, seats: int) -> dict[int, list[int]]:
    """Insert flights; return each flight's ticket ids."""
    departure = datetime.now(UTC) + timedelta(days=5)
    await seed_flights(database, [("SU", "Moscow", f"City {number}", departure) for number in range(flights)], seats)
    tickets: dict[int, list[int]] = {}
    for row in await database.fetch("SELECT id, flight_id FROM tickets ORDER BY id"):
        tickets.setdefault(row["flight_id"], []).append(row["id"])
    return tickets


async def lease_of(database, flight_id: int):
    rows = await database.fetch("SELECT owner, address, epoch FROM flight_leases WHERE flight_id = $1", flight_id)
    return rows[0] if rows else None


async def ticket_rows(database) -> dict[int, dict]:
    rows = await database.fetch(
        """
        SELECT t.id, t.flight_id, t.status, t.date_of_sale, p.pass_number
        FROM tickets t LEFT JOIN passengers p ON p.id = t.passenger_id
        """
    )
    return {row["id"]: dict(row) for row in rows}


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=300, max_keepalive_connections=300))


@pytest.mark.parametrize("node_count", [2, 3])
async def test_one_ticket_sold_once(cluster, database, node_count):
    tickets = await seed(database, 1, 10)
    ticket_id = next(iter(tickets.values()))[0]
    nodes = await cluster.start(node_count, lease_ttl=str(LEASE_TTL))
    responses: dict[int, httpx.Response] = {}

    async with client() as http:

        async def buy(number: int) -> None:
            node = nodes[number % node_count]
            responses[number] = await http.post(f"{node.url}/api/v1/tickets/buy", json=seat_request(ticket_id, number))

        async with trio.open_nursery() as nursery:
            for number in range(200):
                nursery.start_soon(buy, number)

    statuses = Counter(response.status_code for response in responses.values())
    assert statuses[201] == 1, statuses
    assert statuses[400] == 199, statuses
    codes = {response.json()["code"] for response in responses.values() if response.status_code == 400}
    assert codes == {"ticket_unavailable"}
    (winner,) = [number for number, response in responses.items() if response.status_code == 201]
    row = (await ticket_rows(database))[ticket_id]
    assert row["status"] == "sold"
    assert row["pass_number"] == passenger(winner)["passNumber"]
    assert format_time(row["date_of_sale"]) == responses[winner].json()["ticket"]["date_of_sale"]


@pytest.mark.parametrize("node_count", [2, 3])
async def test_mixed_load_matches_database(cluster, database, node_count):
    tickets = await seed(database, 3, 8)
    flight_of = {ticket_id: flight_id for flight_id, ids in tickets.items() for ticket_id in ids}
    nodes = await cluster.start(node_count, lease_ttl=str(LEASE_TTL))
    rng = random.Random(20261204)
    operations = [
        (rng.choice(["book", "buy", "cancel-reservation", "list"]), rng.choice(sorted(flight_of)), rng.randrange(6), rng.randrange(node_count))
        for _ in range(600)
    ]
    results: list[tuple[str, int, int, httpx.Response]] = []
    limiter = trio.CapacityLimiter(32)

    async with client() as http:

        async def run(kind: str, ticket_id: int, number: int, node_index: int) -> None:
            url = nodes[node_index].url
            async with limiter:
                if kind == "list":
                    response = await http.get(f"{url}/api/v1/tickets/flight-{flight_of[ticket_id]}")
                else:
                    response = await http.post(f"{url}/api/v1/tickets/{kind}", json=seat_request(ticket_id, number))
            results.append((kind, ticket_id, number, response))

        async with trio.open_nursery() as nursery:
            for operation in operations:
                nursery.start_soon(run, *operation)

    statuses = Counter(response.status_code for _, _, _, response in results)
    assert set(statuses) <= {200, 201, 400}, statuses
    assert statuses[201] > 0
    rows = await ticket_rows(database)

    for ticket_id in flight_of:
        applied = [(kind, number, response) for kind, t, number, response in results if t == ticket_id and kind != "list" and response.status_code in (200, 201)]
        buyers = [number for kind, number, _ in applied if kind == "buy"]
        bookings = Counter(number for kind, number, _ in applied if kind == "book")
        bookings.subtract(number for kind, number, _ in applied if kind == "cancel-reservation")
        row = rows[ticket_id]

        assert len(buyers) <= 1, (ticket_id, applied)
        assert all(count in (0, 1) for count in bookings.values()), (ticket_id, bookings)
        holders = [number for number, count in bookings.items() if count == 1]
        assert len(holders) <= 1, (ticket_id, holders)
        if buyers:
            sale = next(response for kind, _, response in applied if kind == "buy").json()["ticket"]
            assert row["status"] == "sold", (ticket_id, row)
            assert row["pass_number"] == passenger(buyers[0])["passNumber"]
            assert format_time(row["date_of_sale"]) == sale["date_of_sale"]
            assert holders in ([], buyers), (ticket_id, holders, buyers)
        elif holders:
            assert row["status"] == "booked", (ticket_id, row)
            assert row["pass_number"] == passenger(holders[0])["passNumber"]
        else:
            assert row["status"] == "available", (ticket_id, row)

    counters = await database.fetch(
        """
        SELECT f.id, f.seats_available, count(t.id) FILTER (WHERE t.status = 'available') AS available
        FROM flights f JOIN tickets t ON t.flight_id = f.id GROUP BY f.id
        """
    )
    for counter in counters:
        assert counter["seats_available"] == counter["available"], dict(counter)


async def test_killed_owner_flights_move(cluster, database):
    tickets = await seed(database, 2, 300)
    first_flight, second_flight = sorted(tickets)
    all_tickets = [ticket_id for ids in tickets.values() for ticket_id in ids]
    nodes = await cluster.start(3, lease_ttl=str(LEASE_TTL))
    victim, survivors = nodes[0], nodes[1:]
    numbers = itertools.count(1)
    rng = random.Random(7)
    # (ticket id, passenger number, node, sent at, response at, status or None for a transport error, body)
    results: list[tuple[int, int, Node, float, float, int | None, dict | None]] = []

    async with client() as http:
        opening = await http.post(f"{victim.url}/api/v1/tickets/buy", json=seat_request(tickets[first_flight][0], 0))
        assert opening.status_code == 201
        lease = await lease_of(database, first_flight)
        assert victim.owns(lease["owner"])
        killed_at: list[float] = []
        end = trio.current_time() + 1.5 + LEASE_TTL + 4.0

        async def load() -> None:
            while trio.current_time() < end:
                number = next(numbers)
                ticket_id = rng.choice(all_tickets)
                node = victim if not killed_at and number % 3 == 0 else survivors[number % 2]
                sent = trio.current_time()
                try:
                    response = await http.post(f"{node.url}/api/v1/tickets/buy", json=seat_request(ticket_id, number))
                except httpx.TransportError:
                    results.append((ticket_id, number, node, sent, trio.current_time(), None, None))
                else:
                    results.append((ticket_id, number, node, sent, trio.current_time(), response.status_code, response.json()))

        async with trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(load)
            await trio.sleep(1.5)
            victim.kill()
            killed_at.append(trio.current_time())

    killed = killed_at[0]
    served_after = [
        answered - killed
        for ticket_id, _, node, sent, answered, status, _ in results
        if node is not victim and sent > killed and status in (201, 400) and ticket_id in tickets[first_flight]
    ]
    after_kill = Counter(
        (node.name, status, (body or {}).get("code"))
        for ticket_id, _, node, sent, _, status, body in results
        if sent > killed and ticket_id in tickets[first_flight]
    )
    assert served_after, f"no request for flight {first_flight} was served after the kill: {after_kill}\n" + "\n".join(
        node.log()[-4000:] for node in survivors
    )
    takeover = min(served_after)
    print(f"\nflight {first_flight} served again {takeover:.2f} s after its owner was killed (lease {LEASE_TTL} s)")
    assert takeover < LEASE_TTL + 3.0

    new_lease = await lease_of(database, first_flight)
    assert not victim.owns(new_lease["owner"])
    assert new_lease["epoch"] > lease["epoch"]

    created = [(ticket_id, number, body) for ticket_id, number, _, _, _, status, body in results if status == 201]
    unknown = [result for result in results if result[5] is None or (result[5] == 503 and result[6]["code"] == "forward_failed")]
    statuses = Counter(status for *_, status, _ in results)
    assert set(statuses) <= {201, 400, 503, None}, statuses
    sold_twice = [ticket_id for ticket_id, count in Counter(ticket_id for ticket_id, _, _ in created).items() if count > 1]
    assert sold_twice == []

    rows = await ticket_rows(database)
    for ticket_id, number, body in created:
        row = rows[ticket_id]
        assert row["status"] == "sold", (ticket_id, row)
        assert row["pass_number"] == passenger(number)["passNumber"], (ticket_id, row)
        assert format_time(row["date_of_sale"]) == body["ticket"]["date_of_sale"]
    sold = sum(1 for row in rows.values() if row["status"] == "sold") - 1  # minus the opening sale
    assert len(created) <= sold <= len(created) + len(unknown), (len(created), sold, len(unknown))


async def _wait_for_lock_wait(database) -> None:
    with trio.fail_after(10):
        while True:
            waiting = await database.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting:
                return
            await trio.sleep(0.05)


async def test_stale_owner_cannot_commit(cluster, database):
    tickets = await seed(database, 1, 10)
    (flight_id,) = tickets
    first, second, third = tickets[flight_id][:3]
    owner, other = await cluster.start(2, lease_ttl=str(LEASE_TTL))

    async with client() as http:
        opening = await http.post(f"{owner.url}/api/v1/tickets/buy", json=seat_request(first, 1))
        assert opening.status_code == 201
        lease = await lease_of(database, flight_id)
        assert owner.owns(lease["owner"])

        # Hold passenger 1's row, so the owner's next batch stops inside its
        # transaction, before its fencing check; then freeze the owner there.
        async def acquire():
            return await database.pool.acquire()

        connection = await database.bridge.run(acquire)
        try:
            await database.bridge.run(connection.execute, "BEGIN")
            await database.bridge.run(
                connection.execute, "SELECT 1 FROM passengers WHERE pass_number = $1 FOR UPDATE", passenger(1)["passNumber"]
            )
            stale: list[httpx.Response] = []
            async with trio.open_nursery() as nursery:

                async def buy_on_owner() -> None:
                    stale.append(await http.post(f"{owner.url}/api/v1/tickets/buy", json=seat_request(second, 1)))

                nursery.start_soon(buy_on_owner)
                await _wait_for_lock_wait(database)
                owner.pause()
                try:
                    await trio.sleep(LEASE_TTL + 1.0)
                    takeover = await http.post(f"{other.url}/api/v1/tickets/buy", json=seat_request(third, 2))
                    assert takeover.status_code == 201, takeover.text
                    await database.bridge.run(connection.execute, "COMMIT")
                finally:
                    owner.resume()
        finally:
            await database.bridge.run(database.pool.release, connection)

        (response,) = stale
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "flight_moved"
        assert "Retry-After" in response.headers

        rows = await ticket_rows(database)
        assert rows[second]["status"] == "available"
        assert rows[third]["status"] == "sold"
        new_lease = await lease_of(database, flight_id)
        assert new_lease["epoch"] == lease["epoch"] + 1
        assert not owner.owns(new_lease["owner"])
        assert "rejected by the fencing check" in owner.log()

        # The old owner now forwards to the new one and returns its result.
        retry = await http.post(f"{owner.url}/api/v1/tickets/buy", json=seat_request(second, 1))
        assert retry.status_code == 201, retry.text
        assert (await ticket_rows(database))[second]["status"] == "sold"


async def test_webhook_cancel_applied_once_with_three_nodes(cluster, database):
    tickets = await seed(database, 1, 10)
    (flight_id,) = tickets
    ids = tickets[flight_id]
    nodes = await cluster.start(3, lease_ttl=str(LEASE_TTL))
    holdings = [("buy", ids[0], 1), ("book", ids[1], 1), ("buy", ids[2], 2), ("book", ids[3], 3), ("buy", ids[4], 4)]
    event = {"data": {"flight_id": flight_id, "triggered_at": 1585012345, "event": "flight_canceled", "secret_key": CALLBACK_SECRET}}

    async with client() as http:
        for index, (kind, ticket_id, number) in enumerate(holdings):
            response = await http.post(f"{nodes[index % 3].url}/api/v1/tickets/{kind}", json=seat_request(ticket_id, number))
            assert response.status_code == 201, response.text

        responses: list[httpx.Response] = []

        async def send(node: Node) -> None:
            responses.append(await http.post(f"{node.url}/api/v1/callback/events", json=event))

        async with trio.open_nursery() as nursery:
            for node in nodes * 2:
                nursery.start_soon(send, node)

    assert [response.status_code for response in responses] == [200] * 6
    rows = await ticket_rows(database)
    assert sorted(ticket_id for ticket_id, row in rows.items() if row["status"] == "canceled") == sorted(ids[:5])
    outbox = await database.fetch("SELECT passenger_id, kind FROM outbox")
    assert len(outbox) == 4
    assert {row["kind"] for row in outbox} == {"flight_canceled"}
    assert len({row["passenger_id"] for row in outbox}) == 4
    assert await database.fetchval("SELECT count(*) FROM flight_events WHERE flight_id = $1", flight_id) == 1
    assert await database.fetchval("SELECT status FROM flights WHERE id = $1", flight_id) == "canceled"


async def test_workers_share_one_port(cluster, database):
    tickets = await seed(database, 12, 2)
    (parent,) = await cluster.start(1, arguments=("--workers", "2"), lease_ttl=str(LEASE_TTL))
    with trio.fail_after(30):
        while parent.log().count("api.server: serving on") < 2:
            await trio.sleep(0.1)

    for ids in tickets.values():
        # A new connection for each flight, so the kernel spreads them over the workers.
        async with client() as http:
            response = await http.post(f"{parent.url}/api/v1/tickets/buy", json=seat_request(ids[0], 1))
        assert response.status_code == 201, response.text

    worker_pids = {int(pid) for pid in re.findall(r"worker \d started \(pid (\d+)\)", parent.log())}
    owners = {row["owner"] for row in await database.fetch("SELECT owner FROM flight_leases")}
    assert len(worker_pids) == 2
    # Both workers own flights: all twelve on one worker has odds of 1 in 2048.
    assert {int(owner.rsplit("-", 2)[-2]) for owner in owners} == worker_pids

    parent.stop()
    assert parent.process.returncode == 0
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
