"""The airline webhook over HTTP: validation, secret, and what each event does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import trio

from persistence.seed import seed_flights
from tests.conftest import CALLBACK_SECRET, start_live_server, test_settings

pytestmark = pytest.mark.trio


def passenger(number: int) -> dict[str, str]:
    return {
        "email": f"passenger{number}@mail.com",
        "firstname": "Ivan",
        "lastname": f"Ivanov{number}",
        "passNumber": f"4322-{number:06d}",
    }


def event(flight_id: object, name: object = "flight_canceled", **overrides: object) -> dict:
    data = {"flight_id": flight_id, "triggered_at": 1585012345, "event": name, "secret_key": CALLBACK_SECRET}
    data.update(overrides)
    return {"data": data}


async def seed_one_flight(database, seats: int = 10) -> int:
    departure = datetime.now(UTC) + timedelta(days=5)
    (flight_id,) = await seed_flights(database, [("SU", "Moscow", "Berlin", departure)], seats)
    return flight_id


async def ticket_rows(database, flight_id: int) -> dict[int, str]:
    rows = await database.fetch("SELECT seat, status FROM tickets WHERE flight_id = $1", flight_id)
    return {row["seat"]: row["status"] for row in rows}


async def test_webhook_cancel_marks_booked_and_sold(live_server):
    flight_id = await seed_one_flight(live_server.database)
    client = live_server.client
    assert (await client.post("/api/v1/tickets/book", json={"ticketId": 1, "passenger": passenger(1)})).status_code == 201
    assert (await client.post("/api/v1/tickets/buy", json={"ticketId": 2, "passenger": passenger(2)})).status_code == 201

    response = await client.post("/api/v1/callback/events", json=event(flight_id))

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    statuses = await ticket_rows(live_server.database, flight_id)
    assert statuses[1] == "canceled"
    assert statuses[2] == "canceled"
    assert statuses[3] == "available"


async def test_webhook_cancel_queues_one_email_per_passenger(live_server):
    flight_id = await seed_one_flight(live_server.database)
    client = live_server.client
    for ticket_id in (1, 2):
        await client.post("/api/v1/tickets/book", json={"ticketId": ticket_id, "passenger": passenger(1)})
    await client.post("/api/v1/tickets/buy", json={"ticketId": 3, "passenger": passenger(2)})

    await client.post("/api/v1/callback/events", json=event(flight_id))

    rows = await live_server.database.fetch("SELECT kind, payload::text AS payload FROM outbox ORDER BY id")
    assert [row["kind"] for row in rows] == ["flight_canceled", "flight_canceled"]
    assert any('"seats": [1, 2]' in row["payload"] for row in rows)


async def test_webhook_cancel_rejects_later_sales(live_server):
    flight_id = await seed_one_flight(live_server.database)
    await live_server.client.post("/api/v1/callback/events", json=event(flight_id))

    buy = await live_server.client.post("/api/v1/tickets/buy", json={"ticketId": 4, "passenger": passenger(4)})
    listing = await live_server.client.get(f"/api/v1/tickets/flight-{flight_id}")
    flights = await live_server.client.get("/api/v1/flights")

    assert buy.status_code == 400
    assert buy.json()["code"] == "flight_canceled"
    assert listing.json() == []
    assert flights.json() == []


async def test_webhook_sales_completed_releases_holds(live_server):
    flight_id = await seed_one_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/book", json={"ticketId": 1, "passenger": passenger(1)})
    await client.post("/api/v1/tickets/buy", json={"ticketId": 2, "passenger": passenger(2)})

    response = await client.post("/api/v1/callback/events", json=event(flight_id, "flight_ticket_sales_completed"))

    assert response.status_code == 200
    statuses = await ticket_rows(live_server.database, flight_id)
    assert statuses[1] == "available"
    assert statuses[2] == "sold"
    kinds = [row["kind"] for row in await live_server.database.fetch("SELECT kind FROM outbox")]
    assert kinds == ["reservation_released"]


async def test_webhook_sales_completed_rejects_book_and_buy(live_server):
    flight_id = await seed_one_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/callback/events", json=event(flight_id, "flight_ticket_sales_completed"))

    book = await client.post("/api/v1/tickets/book", json={"ticketId": 1, "passenger": passenger(1)})
    buy = await client.post("/api/v1/tickets/buy", json={"ticketId": 1, "passenger": passenger(1)})
    flights = await client.get("/api/v1/flights")

    assert book.status_code == 400
    assert book.json()["code"] == "sales_closed"
    assert buy.json()["code"] == "sales_closed"
    assert flights.json() == []


async def test_webhook_replay_changes_nothing(live_server):
    flight_id = await seed_one_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/buy", json={"ticketId": 1, "passenger": passenger(1)})

    async def send() -> None:
        response = await client.post("/api/v1/callback/events", json=event(flight_id))
        assert response.status_code == 200

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(send)
    await send()

    assert await live_server.database.fetchval("SELECT count(*) FROM outbox") == 1
    assert await live_server.database.fetchval("SELECT count(*) FROM flight_events") == 1


async def test_webhook_ignores_events_after_cancel(live_server):
    flight_id = await seed_one_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/book", json={"ticketId": 1, "passenger": passenger(1)})
    await client.post("/api/v1/callback/events", json=event(flight_id))

    response = await client.post("/api/v1/callback/events", json=event(flight_id, "flight_ticket_sales_completed"))

    assert response.status_code == 200
    status = await live_server.database.fetchval("SELECT status FROM flights WHERE id = $1", flight_id)
    assert status == "canceled"
    assert (await ticket_rows(live_server.database, flight_id))[1] == "canceled"


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        (event(1, secret_key="wrong-secret"), 403, "invalid_secret", "secret_key"),
        (event(999_999), 404, "flight_not_found", "999999"),
        (event(1, "flight_delayed"), 400, "invalid_request", "data.event"),
        (event(1, triggered_at=True), 400, "invalid_request", "data.triggered_at"),
        (event(1, triggered_at="1585012345"), 400, "invalid_request", "data.triggered_at"),
        (event(1, triggered_at=1585012345.5), 400, "invalid_request", "data.triggered_at"),
        (event(1, triggered_at=1585012345000), 400, "invalid_request", "milliseconds"),
        (event(1, triggered_at=-5), 400, "invalid_request", "negative"),
        (event(1, triggered_at=12), 400, "invalid_request", "between"),
        (event(0), 400, "invalid_request", "data.flight_id"),
        (event("1"), 400, "invalid_request", "data.flight_id"),
        ({"data": {"flight_id": 1, "event": "flight_canceled", "secret_key": CALLBACK_SECRET}}, 400, "invalid_request", "triggered_at"),
        ({"flight_id": 1}, 400, "invalid_request", "data"),
        ([], 400, "invalid_request", "object"),
    ],
)
async def test_webhook_rejects_bad_event(live_server, body, status, code, words):
    flight_id = await seed_one_flight(live_server.database)
    assert flight_id == 1

    response = await live_server.client.post("/api/v1/callback/events", json=body)

    assert response.status_code == status
    assert response.json()["code"] == code
    assert words in response.json()["error"]
    assert await live_server.database.fetchval("SELECT status FROM flights WHERE id = 1") == "on_sale"


async def test_webhook_rejects_non_json(live_server):
    response = await live_server.client.post(
        "/api/v1/callback/events", content=b"data=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


async def test_webhook_without_secret_is_disabled(database, database_url, nursery):
    settings = test_settings(database_url, callback_secret=None)
    _, base_url = await start_live_server(nursery, settings)
    import httpx

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/api/v1/callback/events", json=event(1))

    assert response.status_code == 503
    assert response.json()["code"] == "callback_secret_not_configured"
    assert "Retry-After" in response.headers
    nursery.cancel_scope.cancel()
