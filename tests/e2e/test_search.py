"""Flight search filters and paging of the flight and ticket lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from persistence.seed import seed_flights

pytestmark = pytest.mark.trio

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=10)


async def seed_routes(database) -> list[int]:
    """Five flights: three Moscow-Berlin (two on DAY), one Moscow-Paris and one Berlin-Moscow."""
    flights = [
        ("SU", "Moscow", "Berlin", DAY + timedelta(hours=8)),
        ("SU", "Moscow", "Berlin", DAY + timedelta(hours=8)),  # same time: the id breaks the tie
        ("LH", "Moscow", "Berlin", DAY + timedelta(days=1, hours=9)),
        ("AF", "Moscow", "Paris", DAY + timedelta(hours=12)),
        ("LH", "Berlin", "Moscow", DAY + timedelta(hours=6)),
    ]
    return await seed_flights(database, flights, 4)


async def follow_pages(client: httpx.AsyncClient, url: str, max_pages: int = 20) -> list[list[dict]]:
    """Return the pages of a list, following its Link headers."""
    pages = []
    while url is not None and len(pages) < max_pages:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        url = response.links.get("next", {}).get("url")
    return pages


async def test_flights_without_parameters_unchanged(live_server):
    await seed_routes(live_server.database)

    response = await live_server.client.get("/api/v1/flights")

    assert response.status_code == 200
    assert "link" not in response.headers
    body = response.json()
    assert isinstance(body, list)
    assert len(body) == 5
    assert set(body[0]) == {"id", "company", "departure", "arrival", "departure_time", "seats_available"}


async def test_flights_unknown_parameter_ignored(live_server):
    await seed_routes(live_server.database)

    response = await live_server.client.get("/api/v1/flights", params={"_": "1700000000"})

    assert response.status_code == 200
    assert len(response.json()) == 5


async def test_flights_filter_by_route(live_server):
    ids = await seed_routes(live_server.database)

    response = await live_server.client.get("/api/v1/flights", params={"departure": "moscow", "arrival": "BERLIN"})

    assert response.status_code == 200
    assert [flight["id"] for flight in response.json()] == ids[:3]


async def test_flights_filter_by_date(live_server):
    ids = await seed_routes(live_server.database)

    response = await live_server.client.get("/api/v1/flights", params={"date": DAY.date().isoformat()})

    assert response.status_code == 200
    assert [flight["id"] for flight in response.json()] == [ids[4], ids[0], ids[1], ids[3]]


async def test_flights_filter_no_match(live_server):
    await seed_routes(live_server.database)

    response = await live_server.client.get("/api/v1/flights", params={"departure": "Tokyo"})

    assert response.status_code == 200
    assert response.json() == []


async def test_flights_pages_cover_list_once(live_server):
    await seed_routes(live_server.database)
    everything = (await live_server.client.get("/api/v1/flights")).json()

    pages = await follow_pages(live_server.client, "/api/v1/flights?limit=2")

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [flight for page in pages for flight in page] == everything


async def test_flights_pages_keep_filters(live_server):
    ids = await seed_routes(live_server.database)

    pages = await follow_pages(live_server.client, "/api/v1/flights?departure=Moscow&arrival=Berlin&limit=1")

    assert [[flight["id"] for flight in page] for page in pages] == [[ids[0]], [ids[1]], [ids[2]]]


async def test_flights_link_header_form(live_server):
    await seed_routes(live_server.database)

    response = await live_server.client.get("/api/v1/flights", params={"departure": "Moscow", "limit": "2"})

    link = response.headers["link"]
    assert link.startswith("</api/v1/flights?departure=Moscow&limit=2&cursor=")
    assert link.endswith('>; rel="next"')


async def test_flights_last_page_has_no_link(live_server):
    await seed_routes(live_server.database)

    response = await live_server.client.get("/api/v1/flights", params={"limit": "5"})

    assert len(response.json()) == 5
    assert "link" not in response.headers


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=2.0", "limit"),
        ("limit=1&limit=2", "limit"),
        ("date=2026-02-30", "date"),
        ("date=30.12.2026", "date"),
        ("date=1700000000", "date"),
        ("departure=", "departure"),
        ("departure=%00", "departure"),
        ("arrival=" + "x" * 101, "arrival"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=dDEuMw", "cursor"),  # a ticket list's cursor
        ("cursor=" + "A" * 101, "cursor"),
    ],
)
async def test_flights_invalid_parameter_400(live_server, query, parameter):
    response = await live_server.client.get(f"/api/v1/flights?{query}")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_request"
    assert body["error"].startswith(f"invalid query parameter {parameter}: ")


async def test_tickets_pages_cover_list_once(live_server):
    (flight_id,) = await seed_flights(live_server.database, [("SU", "Moscow", "Berlin", DAY)], 7)
    passenger = {"email": "ivan@mail.com", "firstname": "Ivan", "lastname": "Ivanov", "passNumber": "4322-000001"}
    sold = await live_server.client.post("/api/v1/tickets/buy", json={"ticketId": 3, "passenger": passenger})
    assert sold.status_code == 201

    pages = await follow_pages(live_server.client, f"/api/v1/tickets/flight-{flight_id}?limit=3")

    assert [[ticket["seat"] for ticket in page] for page in pages] == [[1, 2, 4], [5, 6, 7]]


async def test_tickets_without_parameters_unchanged(live_server):
    (flight_id,) = await seed_flights(live_server.database, [("SU", "Moscow", "Berlin", DAY)], 3)

    response = await live_server.client.get(f"/api/v1/tickets/flight-{flight_id}")

    assert response.status_code == 200
    assert "link" not in response.headers
    assert response.json() == [{"id": seat, "seat": seat, "status": "available"} for seat in (1, 2, 3)]


@pytest.mark.parametrize(("query", "parameter"), [("limit=0", "limit"), ("cursor=abc", "cursor")])
async def test_tickets_invalid_parameter_400(live_server, query, parameter):
    (flight_id,) = await seed_flights(live_server.database, [("SU", "Moscow", "Berlin", DAY)], 3)

    response = await live_server.client.get(f"/api/v1/tickets/flight-{flight_id}?{query}")

    assert response.status_code == 400
    assert response.json()["error"].startswith(f"invalid query parameter {parameter}: ")
