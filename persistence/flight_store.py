"""The engine's FlightStore on PostgreSQL: load a flight, commit a batch.

A batch is written by a handful of set-based statements in one transaction,
whatever its size: passengers upserted from arrays, tickets updated from
arrays with a guard on each row's expected status and version, the flight's
counter and status, applied events, and outbox rows for the emails.
"""

from __future__ import annotations

import json
import logging

import asyncpg

from engine.ports import Fence
from engine.seats import (
    Changes,
    Flight,
    FlightInfo,
    FlightStatus,
    Passenger,
    PassengerIdentity,
    Ticket,
    TicketStatus,
)

from .database import Database
from .errors import IdempotencyKeyTaken, LeaseMismatch, StaleWrite

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "tickets_outbox"

_LOAD_FLIGHT = """
SELECT id, company, departure, arrival, departure_time, status
FROM flights WHERE id = $1
"""

_LOAD_TICKETS = """
SELECT t.id, t.seat, t.status, t.booked_until, t.date_of_sale, t.version,
       p.email, p.pass_number, p.firstname, p.lastname
FROM tickets t LEFT JOIN passengers p ON p.id = t.passenger_id
WHERE t.flight_id = $1
"""

# The latest names given for a passenger win. Rows are inserted, and so
# locked, in one order (email, pass_number), which keeps two batches sharing
# passengers from deadlocking on them. DO UPDATE (not DO NOTHING) makes
# RETURNING include rows that already existed.
_UPSERT_PASSENGERS = """
INSERT INTO passengers AS p (email, pass_number, firstname, lastname)
SELECT DISTINCT ON (email, pass_number) email, pass_number, firstname, lastname
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
     AS input (email, pass_number, firstname, lastname, position)
ORDER BY email, pass_number, position DESC
ON CONFLICT (email, pass_number)
DO UPDATE SET firstname = EXCLUDED.firstname, lastname = EXCLUDED.lastname
RETURNING id, email, pass_number
"""

_UPDATE_TICKETS = """
UPDATE tickets AS t
SET status = c.status, passenger_id = c.passenger_id,
    booked_until = c.booked_until, date_of_sale = c.date_of_sale,
    version = t.version + 1
FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
            $7::timestamptz[], $8::timestamptz[])
     AS c (id, expected_status, expected_version, status, passenger_id, booked_until, date_of_sale)
WHERE t.id = c.id AND t.flight_id = $1
  AND t.status = c.expected_status AND t.version = c.expected_version
"""

# The same update, fenced. The CTE extends the flight's lease only if it
# still has this owner and epoch, and it locks the lease row until COMMIT.
# A takeover (an UPDATE of that row) therefore runs either before this batch,
# which then matches no lease row and writes nothing, or after its COMMIT.
_UPDATE_TICKETS_FENCED = """
WITH lease AS (
    UPDATE flight_leases
    SET expires_at = now() + make_interval(secs => $11)
    WHERE flight_id = $1 AND epoch = $9 AND owner = $10
    RETURNING flight_id
), updated AS (
    UPDATE tickets AS t
    SET status = c.status, passenger_id = c.passenger_id,
        booked_until = c.booked_until, date_of_sale = c.date_of_sale,
        version = t.version + 1
    FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                $7::timestamptz[], $8::timestamptz[])
         AS c (id, expected_status, expected_version, status, passenger_id, booked_until, date_of_sale),
         lease
    WHERE t.id = c.id AND t.flight_id = lease.flight_id
      AND t.status = c.expected_status AND t.version = c.expected_version
    RETURNING t.id
)
SELECT (SELECT count(*) FROM lease) AS leases, (SELECT count(*) FROM updated) AS tickets
"""

# The fence of a batch that changes no ticket (an event on a flight with no
# booked or sold seats).
_CHECK_LEASE = """
UPDATE flight_leases
SET expires_at = now() + make_interval(secs => $4)
WHERE flight_id = $1 AND epoch = $2 AND owner = $3
"""

_UPDATE_FLIGHT = """
UPDATE flights
SET seats_available = seats_available + $2, status = COALESCE($3, status)
WHERE id = $1
"""

_INSERT_EVENTS = """
INSERT INTO flight_events (flight_id, event, triggered_at)
SELECT $1, event, triggered_at FROM unnest($2::text[], $3::timestamptz[]) AS e (event, triggered_at)
ON CONFLICT (flight_id, event) DO NOTHING
"""

_INSERT_OUTBOX = """
INSERT INTO outbox (flight_id, passenger_id, kind, payload)
SELECT $1, passenger_id, kind, payload::jsonb
FROM unnest($2::bigint[], $3::text[], $4::text[]) AS n (passenger_id, kind, payload)
ON CONFLICT (flight_id, kind, passenger_id) DO NOTHING
"""

# A key whose stored response has expired may be taken again; a live one
# may not, and the batch then fails as a whole (the caller retries and gets
# the stored response).
_INSERT_RESPONSES = """
INSERT INTO idempotency_keys AS k (key, request_hash, status, body, expires_at)
SELECT key, request_hash, status, body, now() + make_interval(secs => $5)
FROM unnest($1::text[], $2::bytea[], $3::smallint[], $4::bytea[]) AS r (key, request_hash, status, body)
ON CONFLICT (key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status, body = EXCLUDED.body,
    created_at = now(), expires_at = EXCLUDED.expires_at
WHERE k.expires_at <= now()
"""

_FLIGHT_OF_TICKET = "SELECT flight_id FROM tickets WHERE id = $1"

_TICKET_IDS = "SELECT id FROM tickets WHERE flight_id = $1"


class PostgresFlightStore:
    """Implements engine.ports.FlightStore with one bridge crossing per call.

    A fenced commit extends the flight's lease to ``lease_ttl`` seconds from
    the transaction's start.
    """

    def __init__(self, database: Database, *, idempotency_ttl: float = 24 * 3600, lease_ttl: float = 5.0) -> None:
        self._database = database
        self._idempotency_ttl = idempotency_ttl
        self._lease_ttl = lease_ttl

    async def load_flight(self, flight_id: int) -> Flight | None:
        return await self._database.connection(_load_flight, flight_id)

    async def commit(self, flight_id: int, changes: Changes, *, fence: Fence | None = None) -> None:
        await self._database.transaction(_commit, flight_id, changes, self._idempotency_ttl, fence, self._lease_ttl)

    async def flight_of_ticket(self, ticket_id: int) -> int | None:
        return await self._database.fetchval(_FLIGHT_OF_TICKET, ticket_id)

    async def ticket_ids(self, flight_id: int) -> list[int]:
        return [row["id"] for row in await self._database.fetch(_TICKET_IDS, flight_id)]


async def _load_flight(connection: asyncpg.Connection, flight_id: int) -> Flight | None:
    # One snapshot for the flight row and its tickets.
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        row = await connection.fetchrow(_LOAD_FLIGHT, flight_id)
        if row is None:
            return None
        ticket_rows = await connection.fetch(_LOAD_TICKETS, flight_id)

    info = FlightInfo(row["id"], row["company"], row["departure"], row["arrival"], row["departure_time"])
    tickets = []
    for ticket_row in ticket_rows:
        holder = None
        if ticket_row["email"] is not None:
            holder = Passenger(
                ticket_row["email"], ticket_row["pass_number"], ticket_row["firstname"], ticket_row["lastname"]
            )
        tickets.append(
            Ticket(
                id=ticket_row["id"],
                seat=ticket_row["seat"],
                status=TicketStatus(ticket_row["status"]),
                holder=holder,
                booked_until=ticket_row["booked_until"],
                date_of_sale=ticket_row["date_of_sale"],
                version=ticket_row["version"],
            )
        )
    return Flight(info, FlightStatus(row["status"]), tickets)


async def _commit(
    connection: asyncpg.Connection,
    flight_id: int,
    changes: Changes,
    idempotency_ttl: float,
    fence: Fence | None,
    lease_ttl: float,
) -> None:
    passenger_ids = await _upsert_passengers(connection, changes)
    if fence is not None and not changes.tickets:
        status = await connection.execute(_CHECK_LEASE, flight_id, fence.epoch, fence.owner, lease_ttl)
        if status != "UPDATE 1":
            raise LeaseMismatch(f"flight {flight_id}: lease epoch {fence.epoch} of {fence.owner} is no longer held")

    if changes.tickets:
        columns: tuple[list, ...] = ([], [], [], [], [], [], [])
        for change in changes.tickets:
            ticket = change.ticket
            holder_id = passenger_ids[ticket.holder.identity] if ticket.holder is not None else None
            for column, value in zip(
                columns,
                (
                    ticket.id,
                    change.expected_status.value,
                    change.expected_version,
                    ticket.status.value,
                    holder_id,
                    ticket.booked_until,
                    ticket.date_of_sale,
                ),
            ):
                column.append(value)
        if fence is None:
            status = await connection.execute(_UPDATE_TICKETS, flight_id, *columns)
            updated = int(status.split()[-1])
        else:
            counts = await connection.fetchrow(
                _UPDATE_TICKETS_FENCED, flight_id, *columns, fence.epoch, fence.owner, lease_ttl
            )
            if counts["leases"] != 1:
                raise LeaseMismatch(f"flight {flight_id}: lease epoch {fence.epoch} of {fence.owner} is no longer held")
            updated = counts["tickets"]
        if updated != len(changes.tickets):
            raise StaleWrite(
                f"flight {flight_id}: guarded update matched {updated} of {len(changes.tickets)} tickets"
            )

    if changes.seats_available_delta or changes.flight_status is not None:
        new_status = changes.flight_status.value if changes.flight_status is not None else None
        await connection.execute(_UPDATE_FLIGHT, flight_id, changes.seats_available_delta, new_status)

    if changes.events:
        await connection.execute(
            _INSERT_EVENTS,
            flight_id,
            [event.event for event in changes.events],
            [event.triggered_at for event in changes.events],
        )

    if changes.notifications:
        await connection.execute(
            _INSERT_OUTBOX,
            flight_id,
            [passenger_ids[notification.passenger.identity] for notification in changes.notifications],
            [notification.kind.value for notification in changes.notifications],
            [
                json.dumps({"ticket_ids": list(notification.ticket_ids), "seats": list(notification.seats)})
                for notification in changes.notifications
            ],
        )
        await connection.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, str(flight_id))

    if changes.responses:
        await _insert_responses(connection, flight_id, changes, idempotency_ttl)


async def _insert_responses(
    connection: asyncpg.Connection, flight_id: int, changes: Changes, idempotency_ttl: float
) -> None:
    responses = changes.responses
    status = await connection.execute(
        _INSERT_RESPONSES,
        [response.key for response in responses],
        [response.request_hash for response in responses],
        [response.status for response in responses],
        [response.body for response in responses],
        float(idempotency_ttl),
    )
    inserted = int(status.split()[-1])
    if inserted != len(responses):
        raise IdempotencyKeyTaken(
            f"flight {flight_id}: {len(responses) - inserted} of {len(responses)} idempotency keys "
            "already hold a live response from another request"
        )


async def _upsert_passengers(connection: asyncpg.Connection, changes: Changes) -> dict[PassengerIdentity, int]:
    passengers: dict[PassengerIdentity, Passenger] = {}
    for change in changes.tickets:
        if change.ticket.holder is not None:
            passengers[change.ticket.holder.identity] = change.ticket.holder
    for notification in changes.notifications:
        passengers.setdefault(notification.passenger.identity, notification.passenger)
    if not passengers:
        return {}

    rows = await connection.fetch(
        _UPSERT_PASSENGERS,
        [passenger.email for passenger in passengers.values()],
        [passenger.pass_number for passenger in passengers.values()],
        [passenger.firstname for passenger in passengers.values()],
        [passenger.lastname for passenger in passengers.values()],
    )
    return {PassengerIdentity(row["email"], row["pass_number"]): row["id"] for row in rows}
