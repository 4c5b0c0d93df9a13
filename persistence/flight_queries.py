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


# The same order as _FLIGHTS_ON_SALE; the row comparison continues after a
# page's last flight along the index flights_on_sale (departure_time, id).
# Cities are compared with lower() because they are few and short; with
# many thousands of flights on sale an expression index would serve them.
_SEARCH_FLIGHTS = """
SELECT id, company, departure, arrival, departure_time, seats_available
FROM flights
WHERE status = 'on_sale'
  AND ($1::text IS NULL OR lower(departure) = lower($1))
  AND ($2::text IS NULL OR lower(arrival) = lower($2))
  AND ($3::timestamptz IS NULL OR (departure_time >= $3 AND departure_time < $3 + interval '1 day'))
  AND ($4::timestamptz IS NULL OR (departure_time, id) > ($4, $5::bigint))
ORDER BY departure_time, id
LIMIT $6
"""


async def search_flights(
    database: Database,
    *,
    departure: str | None = None,
    arrival: str | None = None,
    day_start: datetime | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int | None = None,
) -> list[FlightSummary]:
    """Return flights on sale that match every given filter, in the flight list's order.

    ``day_start`` selects flights departing in the 24 hours from it. ``after``
    is the (departure_time, id) of the last flight of the previous page.
    ``limit`` None returns every match.
    """
    after_time, after_id = after if after is not None else (None, None)
    rows = await database.fetch(_SEARCH_FLIGHTS, departure, arrival, day_start, after_time, after_id, limit)
    return [FlightSummary(*row) for row in rows]
