"""Shared data and checks of the end-to-end tests over HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from persistence.database import Database
from persistence.seed import seed_flights

# Times in responses are UTC, rendered ``YYYY-MM-DD HH:MM:SS``.
TIME_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
DEPARTURE = datetime(2030, 3, 25, 2, 3, 28, tzinfo=UTC)
DEPARTURE_TEXT = "2030-03-25 02:03:28"

IVAN = {"email": "ivan@mail.com", "firstname": "Ivan", "lastname": "Ivanov", "passNumber": "4322-22-333-45"}
ANNA = {"email": "anna@mail.com", "firstname": "Anna", "lastname": "Petrova", "passNumber": "1111-11-111-11"}

TABLES = ["flights", "tickets", "passengers", "flight_events", "outbox"]


def seat_request(ticket_id: Any, passenger: Any = None) -> dict[str, Any]:
    return {"ticketId": ticket_id, "passenger": IVAN if passenger is None else passenger}


async def seed_flight(
    database: Database, seats: int = 10, route: tuple[str, str, str] = ("SU", "Moscow", "Berlin")
) -> tuple[int, list[int]]:
    """Insert one flight departing at DEPARTURE and return its id and ticket ids in seat order."""
    [flight_id] = await seed_flights(database, [(*route, DEPARTURE)], seats)
    rows = await database.fetch("SELECT id FROM tickets WHERE flight_id = $1 ORDER BY seat", flight_id)
    return flight_id, [row["id"] for row in rows]


async def set_flight_status(database: Database, flight_id: int, status: str) -> None:
    """Change a flight's status with SQL.

    The flight's actor keeps the status in memory, so call this before the
    first request for the flight.
    """
    await database.execute("UPDATE flights SET status = $2 WHERE id = $1", flight_id, status)


async def snapshot(database: Database) -> dict[str, list[tuple]]:
    """Every row of every table, to compare before and after a request."""
    return {
        table: [tuple(row) for row in await database.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]
        for table in TABLES
    }


async def ticket_row(database: Database, ticket_id: int) -> dict[str, Any]:
    row = await database.fetch(
        """
        SELECT t.status, t.booked_until, t.date_of_sale, p.email, p.pass_number, p.firstname, p.lastname
        FROM tickets t LEFT JOIN passengers p ON p.id = t.passenger_id
        WHERE t.id = $1
        """,
        ticket_id,
    )
    return dict(row[0])


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def assert_error(response: Any, status: int, code: str) -> None:
    """Check an error response: status, JSON content type, and exactly ``error`` and ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == code
    assert isinstance(body["error"], str)
    assert body["error"]
