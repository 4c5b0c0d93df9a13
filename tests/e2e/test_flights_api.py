"""GET /api/v1/flights and GET /api/v1/tickets/flight-{id} over HTTP."""

from __future__ import annotations

import pytest

from persistence.seed import seed_flights

from .support import (
    ANNA,
    DEPARTURE,
    DEPARTURE_TEXT,
    IVAN,
    assert_error,
    seat_request,
    seed_flight,
    set_flight_status,
)


async def test_flights_shape(live_server):
    first, _ = await seed_flight(live_server.database, seats=3)
    second, _ = await seed_flight(live_server.database, seats=5, route=("LH", "Munich", "Berlin"))

    response = await live_server.client.get("/api/v1/flights")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == [
        {
            "id": first,
            "company": "SU",
            "departure": "Moscow",
            "arrival": "Berlin",
            "departure_time": DEPARTURE_TEXT,
            "seats_available": 3,
        },
        {
            "id": second,
            "company": "LH",
            "departure": "Munich",
            "arrival": "Berlin",
            "departure_time": DEPARTURE_TEXT,
            "seats_available": 5,
        },
    ]


async def test_flights_empty(live_server):
    response = await live_server.client.get("/api/v1/flights")

    assert response.status_code == 200
    assert response.json() == []


async def test_flights_only_on_sale(live_server):
    database = live_server.database
    flight_ids = await seed_flights(database, [("SU", "Moscow", "Berlin", DEPARTURE)] * 3, 2)
    await set_flight_status(database, flight_ids[1], "sales_closed")
    await set_flight_status(database, flight_ids[2], "canceled")

    response = await live_server.client.get("/api/v1/flights")

    assert [flight["id"] for flight in response.json()] == [flight_ids[0]]


async def test_flights_seats_follow_sales(live_server):
    flight_id, tickets = await seed_flight(live_server.database, seats=5)
    client = live_server.client

    async def seats_available() -> int:
        [flight] = (await client.get("/api/v1/flights")).json()
        return flight["seats_available"]

    assert (await client.post("/api/v1/tickets/buy", json=seat_request(tickets[0]))).status_code == 201
    assert await seats_available() == 4
    assert (await client.post("/api/v1/tickets/book", json=seat_request(tickets[1], ANNA))).status_code == 201
    assert await seats_available() == 3
    cancel = await client.post("/api/v1/tickets/cancel-reservation", json=seat_request(tickets[1], ANNA))
    assert cancel.status_code == 200
    assert await seats_available() == 4


async def test_tickets_shape(live_server):
    flight_id, tickets = await seed_flight(live_server.database, seats=3)

    response = await live_server.client.get(f"/api/v1/tickets/flight-{flight_id}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == [
        {"id": tickets[0], "seat": 1, "status": "available"},
        {"id": tickets[1], "seat": 2, "status": "available"},
        {"id": tickets[2], "seat": 3, "status": "available"},
    ]


async def test_tickets_hide_taken(live_server):
    flight_id, tickets = await seed_flight(live_server.database, seats=4)
    client = live_server.client
    await client.post("/api/v1/tickets/buy", json=seat_request(tickets[0], IVAN))
    await client.post("/api/v1/tickets/book", json=seat_request(tickets[2], ANNA))

    response = await client.get(f"/api/v1/tickets/flight-{flight_id}")

    assert [ticket["id"] for ticket in response.json()] == [tickets[1], tickets[3]]


async def test_tickets_unknown_flight(live_server):
    flight_id, _ = await seed_flight(live_server.database, seats=1)

    response = await live_server.client.get(f"/api/v1/tickets/flight-{flight_id + 1}")

    assert_error(response, 404, "flight_not_found")


async def test_tickets_largest_id(live_server):
    response = await live_server.client.get(f"/api/v1/tickets/flight-{2**63 - 1}")

    assert_error(response, 404, "flight_not_found")


@pytest.mark.parametrize("status", ["sales_closed", "canceled"])
async def test_tickets_empty_off_sale(live_server, status):
    flight_id, _ = await seed_flight(live_server.database, seats=3)
    await set_flight_status(live_server.database, flight_id, status)

    response = await live_server.client.get(f"/api/v1/tickets/flight-{flight_id}")

    assert response.status_code == 200
    assert response.json() == []
