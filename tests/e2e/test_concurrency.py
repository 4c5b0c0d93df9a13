"""Concurrent requests through the live server: the database agrees with every response."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import trio

from .support import seat_request, seed_flight

# The booking TTL of test_settings (900 s) is far longer than these tests,
# so no hold lapses while they run and only the requests change tickets.


def passenger(number: int) -> dict[str, str]:
    return {
        "email": f"p{number}@mail.com",
        "firstname": "First",
        "lastname": f"Last {number}",
        "passNumber": f"{number:04d}",
    }


async def test_one_ticket_fifty_buyers(live_server):
    _, tickets = await seed_flight(live_server.database, seats=3)
    responses: dict[int, Any] = {}

    async def buy(number: int) -> None:
        responses[number] = await live_server.client.post(
            "/api/v1/tickets/buy", json=seat_request(tickets[1], passenger(number))
        )

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for number in range(50):
                nursery.start_soon(buy, number)

    statuses = Counter(response.status_code for response in responses.values())
    assert statuses == {201: 1, 400: 49}
    codes = {response.json()["code"] for response in responses.values() if response.status_code == 400}
    assert codes == {"ticket_unavailable"}
    [winner] = [number for number, response in responses.items() if response.status_code == 201]
    assert responses[winner].json()["passenger"]["pass_number"] == passenger(winner)["passNumber"]
    rows = await live_server.database.fetch(
        """
        SELECT t.id, t.status, p.email, p.pass_number
        FROM tickets t LEFT JOIN passengers p ON p.id = t.passenger_id ORDER BY t.id
        """
    )
    assert [row["status"] for row in rows] == ["available", "sold", "available"]
    assert (rows[1]["email"], rows[1]["pass_number"]) == (passenger(winner)["email"], passenger(winner)["passNumber"])
    assert await live_server.database.fetchval("SELECT count(*) FROM passengers") == 1


@dataclass(frozen=True)
class Outcome:
    action: str
    ticket_id: int
    passenger: int
    status: int
    body: Any


async def test_random_load_consistent(live_server):
    """2,000 random book, buy and cancel requests, 100 at a time, over three flights.

    Requests run concurrently, so their order is unknown. The checks use only
    what is true in every order. Per ticket, at most one buy succeeds. Each
    passenger's successful books minus successful cancels is 1 for the
    holder of a booked ticket and 0 for everyone else.
    """
    database = live_server.database
    tickets: list[int] = []
    for route in [("SU", "Moscow", "Berlin"), ("LH", "Munich", "Paris"), ("AF", "Paris", "Tokyo")]:
        _, flight_tickets = await seed_flight(database, seats=40, route=route)
        tickets += flight_tickets
    # Few passengers, so own bookings are often bought or canceled, and few
    # buys, so tickets stay in play until the end.
    passengers = range(4)
    generator = random.Random(20240501)
    actions = generator.choices(["book", "buy", "cancel-reservation"], weights=[45, 10, 45], k=2000)
    plan = [(action, generator.choice(tickets), generator.choice(passengers)) for action in actions]
    outcomes: list[Outcome] = []
    limiter = trio.CapacityLimiter(100)

    async def send(action: str, ticket_id: int, number: int) -> None:
        async with limiter:
            response = await live_server.client.post(
                f"/api/v1/tickets/{action}", json=seat_request(ticket_id, passenger(number))
            )
        outcomes.append(Outcome(action, ticket_id, number, response.status_code, response.json()))

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for action, ticket_id, number in plan:
                nursery.start_soon(send, action, ticket_id, number)

    assert len(outcomes) == len(plan)
    assert Counter(outcome.status for outcome in outcomes).keys() <= {200, 201, 400}
    error_codes = {outcome.body["code"] for outcome in outcomes if outcome.status == 400}
    assert error_codes <= {"ticket_unavailable", "not_reservation_owner", "ticket_not_booked"}
    successes = [outcome for outcome in outcomes if outcome.status in (200, 201)]
    expected_status = {"book": "booked", "buy": "sold", "cancel-reservation": "available"}
    assert all(outcome.body["ticket"]["status"] == expected_status[outcome.action] for outcome in successes)
    assert all(outcome.body["ticket"]["id"] == outcome.ticket_id for outcome in successes)

    rows = await database.fetch(
        """
        SELECT t.id, t.status, p.pass_number
        FROM tickets t LEFT JOIN passengers p ON p.id = t.passenger_id
        """
    )
    buys = Counter((outcome.ticket_id, outcome.passenger) for outcome in successes if outcome.action == "buy")
    books = Counter((outcome.ticket_id, outcome.passenger) for outcome in successes if outcome.action == "book")
    cancels = Counter(
        (outcome.ticket_id, outcome.passenger) for outcome in successes if outcome.action == "cancel-reservation"
    )
    buys_per_ticket = Counter(ticket_id for ticket_id, _ in buys.elements())
    assert buys_per_ticket
    assert all(count == 1 for count in buys_per_ticket.values()), buys_per_ticket
    assert sum(1 for row in rows if row["status"] == "sold") == sum(buys.values())
    assert {row["status"] for row in rows} <= {"available", "booked", "sold"}

    for row in rows:
        ticket_id = row["id"]
        holder = int(row["pass_number"]) if row["pass_number"] is not None else None
        open_bookings = {number: books[ticket_id, number] - cancels[ticket_id, number] for number in passengers}
        assert all(count >= 0 for count in open_bookings.values()), (ticket_id, open_bookings)
        if row["status"] == "sold":
            assert buys[ticket_id, holder] == 1, (ticket_id, holder)
            assert open_bookings[holder] in (0, 1), (ticket_id, open_bookings)
            assert all(open_bookings[number] == 0 for number in passengers if number != holder), (ticket_id, open_bookings)
        elif row["status"] == "booked":
            assert buys_per_ticket[ticket_id] == 0, ticket_id
            assert open_bookings[holder] == 1, (ticket_id, holder, open_bookings)
            assert all(open_bookings[number] == 0 for number in passengers if number != holder), (ticket_id, open_bookings)
        else:
            assert buys_per_ticket[ticket_id] == 0, ticket_id
            assert all(count == 0 for count in open_bookings.values()), (ticket_id, open_bookings)

    counters = await database.fetch(
        """
        SELECT f.id, f.seats_available, count(t.id) FILTER (WHERE t.status = 'available') AS available
        FROM flights f JOIN tickets t ON t.flight_id = f.id GROUP BY f.id
        """
    )
    assert all(row["seats_available"] == row["available"] for row in counters)
    flights = (await live_server.client.get("/api/v1/flights")).json()
    assert sorted(flight["seats_available"] for flight in flights) == sorted(row["available"] for row in counters)
