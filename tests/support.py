"""Helpers shared by the end-to-end and fault tests: passengers, seeding, database snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from persistence.database import Database
from persistence.seed import seed_flights


def passenger(number: int) -> dict[str, str]:
    return {
        "email": f"passenger{number}@mail.com",
        "firstname": "Ivan",
        "lastname": f"Ivanov{number}",
        "passNumber": f"4322-{number:06d}",
    }


async def seed_one_flight(database: Database, seats: int = 10) -> int:
    departure = datetime.now(UTC) + timedelta(days=5)
    (flight_id,) = await seed_flights(database, [("SU", "Moscow", "Berlin", departure)], seats)
    return flight_id


async def snapshot(database: Database) -> dict[str, list[tuple]]:
    """Every row that a request could change, with ticket versions, for before/after comparisons."""
    queries = {
        "flights": "SELECT id, status, seats_available FROM flights ORDER BY id",
        "tickets": "SELECT id, status, passenger_id, booked_until, date_of_sale, version FROM tickets ORDER BY id",
        "passengers": "SELECT id, email, pass_number, firstname, lastname FROM passengers ORDER BY id",
        "outbox": "SELECT id, kind, passenger_id, status FROM outbox ORDER BY id",
        "flight_events": "SELECT flight_id, event FROM flight_events ORDER BY flight_id, event",
        "idempotency_keys": "SELECT key, status FROM idempotency_keys ORDER BY key",
    }
    result = {}
    for table, query in queries.items():
        result[table] = [tuple(row) for row in await database.fetch(query)]
    return result
