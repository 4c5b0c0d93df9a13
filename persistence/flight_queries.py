"""Read-only queries behind the flight list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .database import Database

_FLIGHTS_ON_SALE = """
SELECT id, company, departure, arrival, departure_time, seats_available
FROM flights WHERE status = 'on_sale'
ORDER BY departure_time, id
"""


@dataclass(frozen=True, slots=True)
class FlightSummary:
    id: int
    company: str
    departure: str
    arrival: str
    departure_time: datetime
    seats_available: int


async def flights_on_sale(database: Database) -> list[FlightSummary]:
    """Return the flights whose sales are open, earliest departure first."""
    rows = await database.fetch(_FLIGHTS_ON_SALE)
    return [FlightSummary(*row) for row in rows]
