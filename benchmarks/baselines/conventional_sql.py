"""Seat rules as a conventional implementation writes them: one transaction per request.

Each write locks its ticket row with ``SELECT ... FOR UPDATE``, checks the
same rules as the service's flight actor, upserts the passenger, updates the
ticket and the flight's ``seats_available`` counter, and commits. There is no
in-memory state, so every rejection costs a database round trip too.

The functions take an asyncpg connection that is already inside a
transaction, so both conventional baselines (trio through the service's
bridge, and plain asyncio) run the same SQL. They raise the engine's error
classes, which the service's error handlers turn into the same JSON errors
as the service returns.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from engine.commands import SeatReply
from engine.errors import (
    FlightCanceled,
    FlightNotFound,
    NotReservationOwner,
    SalesClosed,
    TicketNotBooked,
    TicketNotFound,
    TicketUnavailable,
)
from engine.seats import FlightInfo, Passenger, TicketStatus, TicketView

# Locks the ticket row only. Every write then locks its passenger row (the
# upsert) and last the flight row (the counter UPDATE), always in this
# order and one ticket per transaction, so two requests cannot deadlock.
_LOCK_TICKET = """
SELECT t.id, t.seat, t.status, t.booked_until, t.flight_id,
       p.email AS holder_email, p.pass_number AS holder_pass_number,
       f.status AS flight_status, f.company, f.departure, f.arrival, f.departure_time
FROM tickets t
JOIN flights f ON f.id = t.flight_id
LEFT JOIN passengers p ON p.id = t.passenger_id
WHERE t.id = $1
FOR UPDATE OF t
"""

_UPSERT_PASSENGER = """
INSERT INTO passengers (email, pass_number, firstname, lastname)
VALUES ($1, $2, $3, $4)
ON CONFLICT (email, pass_number)
DO UPDATE SET firstname = EXCLUDED.firstname, lastname = EXCLUDED.lastname
RETURNING id
"""

_UPDATE_TICKET = """
UPDATE tickets
SET status = $2, passenger_id = $3, booked_until = $4, date_of_sale = $5, version = version + 1
WHERE id = $1
"""

_UPDATE_SEATS_AVAILABLE = "UPDATE flights SET seats_available = seats_available + $2 WHERE id = $1"

FLIGHTS_ON_SALE = """
SELECT id, company, departure, arrival, departure_time, seats_available
FROM flights WHERE status = 'on_sale'
ORDER BY departure_time, id
"""

_FLIGHT_STATUS = "SELECT status FROM flights WHERE id = $1"

# A booking whose hold has lapsed is on sale again, as in the service.
_TICKETS_ON_SALE = """
SELECT id, seat FROM tickets
WHERE flight_id = $1 AND (status = 'available' OR (status = 'booked' AND booked_until <= $2))
ORDER BY seat
"""


def _flight_info(row: asyncpg.Record) -> FlightInfo:
    return FlightInfo(row["flight_id"], row["company"], row["departure"], row["arrival"], row["departure_time"])


def _held_by(row: asyncpg.Record, passenger: Passenger) -> bool:
    return row["holder_email"] == passenger.email and row["holder_pass_number"] == passenger.pass_number


async def _lock_ticket_for_sale(connection: asyncpg.Connection, ticket_id: int, now: datetime) -> tuple[asyncpg.Record, str]:
    """Lock the ticket and check the flight; return the row and its status with a lapsed hold counted as available."""
    row = await connection.fetchrow(_LOCK_TICKET, ticket_id)
    if row is None:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    if row["flight_status"] == "canceled":
        raise FlightCanceled(f"flight {row['flight_id']} is canceled")
    if row["flight_status"] == "sales_closed":
        raise SalesClosed(f"sales of flight {row['flight_id']} are closed")
    status = row["status"]
    if status == "booked" and row["booked_until"] <= now:
        status = "available"
    return row, status


async def _upsert_passenger(connection: asyncpg.Connection, passenger: Passenger) -> int:
    return await connection.fetchval(
        _UPSERT_PASSENGER, passenger.email, passenger.pass_number, passenger.firstname, passenger.lastname
    )


async def buy(connection: asyncpg.Connection, ticket_id: int, passenger: Passenger, now: datetime) -> SeatReply:
    """Sell an available ticket, or one that ``passenger`` holds, to ``passenger``."""
    row, status = await _lock_ticket_for_sale(connection, ticket_id, now)
    if status == "booked" and not _held_by(row, passenger):
        raise TicketUnavailable(f"ticket {ticket_id} is booked by another passenger")
    if status not in ("available", "booked"):
        raise TicketUnavailable(f"ticket {ticket_id} is {status}, not available")

    passenger_id = await _upsert_passenger(connection, passenger)
    await connection.execute(_UPDATE_TICKET, ticket_id, "sold", passenger_id, None, now)
    # Only a row that is 'available' in the table counts in seats_available;
    # a lapsed hold still reads 'booked' there.
    if row["status"] == "available":
        await connection.execute(_UPDATE_SEATS_AVAILABLE, row["flight_id"], -1)
    ticket = TicketView(ticket_id, row["seat"], TicketStatus.SOLD, None, now)
    return SeatReply(_flight_info(row), ticket, passenger)


async def book(
    connection: asyncpg.Connection, ticket_id: int, passenger: Passenger, now: datetime, hold: timedelta
) -> SeatReply:
    """Hold an available ticket for ``passenger`` until ``now + hold``."""
    row, status = await _lock_ticket_for_sale(connection, ticket_id, now)
    if status != "available":
        raise TicketUnavailable(f"ticket {ticket_id} is {status}, not available")

    passenger_id = await _upsert_passenger(connection, passenger)
    until = now + hold
    await connection.execute(_UPDATE_TICKET, ticket_id, "booked", passenger_id, until, None)
    if row["status"] == "available":
        await connection.execute(_UPDATE_SEATS_AVAILABLE, row["flight_id"], -1)
    ticket = TicketView(ticket_id, row["seat"], TicketStatus.BOOKED, until, None)
    return SeatReply(_flight_info(row), ticket, passenger)


async def cancel_reservation(
    connection: asyncpg.Connection, ticket_id: int, passenger: Passenger, now: datetime
) -> TicketView:
    """Release the hold that ``passenger`` has on a ticket."""
    row = await connection.fetchrow(_LOCK_TICKET, ticket_id)
    if row is None:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    if row["flight_status"] == "canceled":
        raise FlightCanceled(f"flight {row['flight_id']} is canceled")
    status = row["status"]
    if status == "booked" and row["booked_until"] <= now:
        status = "available"
    if status != "booked":
        raise TicketNotBooked(f"ticket {ticket_id} is {status}, not booked")
    if not _held_by(row, passenger):
        raise NotReservationOwner(f"ticket {ticket_id} is booked by another passenger")

    await connection.execute(_UPDATE_TICKET, ticket_id, "available", None, None, None)
    await connection.execute(_UPDATE_SEATS_AVAILABLE, row["flight_id"], 1)
    return TicketView(ticket_id, row["seat"], TicketStatus.AVAILABLE, None, None)


async def tickets_on_sale(connection: asyncpg.Connection, flight_id: int, now: datetime) -> list[asyncpg.Record]:
    """Return (id, seat) of the tickets on sale; raise FlightNotFound for an unknown flight."""
    status = await connection.fetchval(_FLIGHT_STATUS, flight_id)
    if status is None:
        raise FlightNotFound(f"flight {flight_id} does not exist")
    if status != "on_sale":
        return []
    return await connection.fetch(_TICKETS_ON_SALE, flight_id, now)


async def flights_on_sale(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    return await connection.fetch(FLIGHTS_ON_SALE)
