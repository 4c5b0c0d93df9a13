"""Load flights and their seats: the demo sample, or any number for load tests.

Tickets are written with COPY, so a million seats load in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from .database import Database

log = logging.getLogger(__name__)

# Real carriers (IATA codes) on routes they fly or have flown.
DEMO_FLIGHTS = [
    ("SU", "Moscow", "Saint Petersburg"),
    ("SU", "Moscow", "Istanbul"),
    ("S7", "Novosibirsk", "Moscow"),
    ("LH", "Frankfurt", "New York"),
    ("LH", "Munich", "Berlin"),
    ("AF", "Paris", "Tokyo"),
    ("BA", "London", "Madrid"),
    ("TK", "Istanbul", "Dubai"),
    ("EK", "Dubai", "Sydney"),
    ("KL", "Amsterdam", "Lisbon"),
    ("DL", "Atlanta", "Los Angeles"),
    ("QR", "Doha", "Singapore"),
]
DEMO_SEATS = 150

# Any fixed 64-bit number works; it differs from the migrations' lock, and
# every process loading the demo sample takes it.
DEMO_SEED_LOCK_ID = 7_362_010_002


async def _insert_flights(
    connection: asyncpg.Connection, flights: list[tuple[str, str, str, datetime]], seats: int
) -> list[int]:
    rows = await connection.fetch(
        """
        INSERT INTO flights (company, departure, arrival, departure_time, seats_available)
        SELECT company, departure, arrival, departure_time, $5
        FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
             AS f (company, departure, arrival, departure_time)
        RETURNING id
        """,
        [flight[0] for flight in flights],
        [flight[1] for flight in flights],
        [flight[2] for flight in flights],
        [flight[3] for flight in flights],
        seats,
    )
    flight_ids = [row["id"] for row in rows]
    await connection.copy_records_to_table(
        "tickets",
        records=((flight_id, seat) for flight_id in flight_ids for seat in range(1, seats + 1)),
        columns=["flight_id", "seat"],
    )
    return flight_ids


async def seed_flights(
    database: Database, flights: list[tuple[str, str, str, datetime]], seats: int
) -> list[int]:
    """Insert flights, each with ``seats`` available tickets numbered from 1; return their ids."""
    return await database.transaction(_insert_flights, flights, seats)


async def _insert_demo_flights(
    connection: asyncpg.Connection, flights: list[tuple[str, str, str, datetime]]
) -> list[int]:
    await connection.execute("SELECT pg_advisory_xact_lock($1)", DEMO_SEED_LOCK_ID)
    if await connection.fetchval("SELECT EXISTS (SELECT 1 FROM flights)"):
        return []
    return await _insert_flights(connection, flights, DEMO_SEATS)


async def seed_demo(database: Database, now: datetime | None = None) -> list[int]:
    """Load the demo sample if the database has no flights; return the new flight ids.

    Safe when several processes start with --demo at once: one loads it.
    """
    now = now or datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) + timedelta(days=7)
    flights = [
        (company, departure, arrival, start + timedelta(days=index // 3, hours=6 + 4 * (index % 3)))
        for index, (company, departure, arrival) in enumerate(DEMO_FLIGHTS)
    ]
    flight_ids = await database.transaction(_insert_demo_flights, flights)
    if not flight_ids:
        log.info("database already has flights; demo data not loaded")
        return []
    log.info("loaded demo data: %d flights with %d seats each", len(flight_ids), DEMO_SEATS)
    return flight_ids


# Maximum tickets per transaction of a generated load: large enough that
# COPY dominates, small enough that a failure loses little. Smaller loads
# use a twentieth of their tickets, so progress shows at least 20 steps.
SEED_CHUNK_TICKETS = 50_000


async def seed_generated(
    database: Database,
    flight_count: int,
    seats: int,
    *,
    chunk: int | None = None,
    now: datetime | None = None,
    on_progress: Callable[[int], None] = lambda tickets: None,
) -> list[int]:
    """Insert ``flight_count`` generated flights of ``seats`` seats each, ``chunk`` flights per transaction.

    ``chunk`` defaults to as many flights as fit in SEED_CHUNK_TICKETS tickets
    or a twentieth of all tickets, whichever is less.
    ``on_progress(tickets)`` is called after each committed transaction with
    the number of tickets it added.
    """
    now = now or datetime.now(UTC)
    chunk = chunk or max(1, min(SEED_CHUNK_TICKETS, flight_count * seats // 20) // seats)
    flight_ids: list[int] = []
    for first in range(0, flight_count, chunk):
        flights = [
            (
                DEMO_FLIGHTS[number % len(DEMO_FLIGHTS)][0],
                DEMO_FLIGHTS[number % len(DEMO_FLIGHTS)][1],
                DEMO_FLIGHTS[number % len(DEMO_FLIGHTS)][2],
                now + timedelta(days=1, minutes=number),
            )
            for number in range(first, min(first + chunk, flight_count))
        ]
        flight_ids += await seed_flights(database, flights, seats)
        on_progress(len(flights) * seats)
    return flight_ids
