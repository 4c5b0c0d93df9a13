"""The SQL that writes the batches of one or more flights in one transaction.

Each statement is set-based and covers every batch, from arrays, however
many flights and tickets there are: one upserts the passengers, one checks
the leases and updates the tickets and the flight rows. Outbox rows, applied
events and stored responses add a statement each, and only when a batch has
some.

A guard that fails (a ticket row that changed, a lease no longer held, an
idempotency key already taken) raises before COMMIT, so the caller's
transaction rolls back and nothing of any batch is written. For one flight
the error names the broken rule. For several it is ``GroupConflict``, and
the caller then writes each batch alone to find the one that broke it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from engine.ports import Fence
from engine.seats import Changes, Passenger, PassengerIdentity

from .errors import DatabaseError, IdempotencyKeyTaken, LeaseMismatch, StaleWrite

OUTBOX_CHANNEL = "tickets_outbox"


@dataclass(frozen=True, slots=True)
class Batch:
    """One flight's changes and the lease they are committed under (None: no fencing)."""

    flight_id: int
    changes: Changes
    fence: Fence | None


class GroupConflict(DatabaseError):
    """A guard failed for one of several flights written together; nothing was written."""


# The latest names given for a passenger win. Rows are inserted, and so
# locked, in (email, pass_number) order, which keeps two transactions sharing
# passengers from deadlocking on them.
_UPSERT_PASSENGERS = """
INSERT INTO passengers AS p (email, pass_number, firstname, lastname)
SELECT DISTINCT ON (email, pass_number) email, pass_number, firstname, lastname
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
     AS input (email, pass_number, firstname, lastname, position)
ORDER BY email, pass_number, position DESC
ON CONFLICT (email, pass_number)
DO UPDATE SET firstname = EXCLUDED.firstname, lastname = EXCLUDED.lastname
"""

# Tickets find their holder's id by email and document number among the
# passengers upserted just before.
#
# With fencing, the lease CTEs lock each flight's lease row, in flight id
# order (as lease renewal does, so the two never deadlock), if it still has
# the batch's owner and epoch, and extend it. The lock lasts until COMMIT, so
# a takeover (an UPDATE of that row) runs either before this transaction,
# which then matches no lease row and writes no ticket, or after its COMMIT.
# This statement comes after the passengers' upsert, which may wait on row
# locks, so that a process paused during such a wait holds no lease row and
# cannot delay a takeover.
_WRITE_TEMPLATE = """
WITH locked AS (
    SELECT l.flight_id
    FROM flight_leases AS l
    JOIN unnest($10::bigint[], $11::bigint[], $12::text[]) AS f (flight_id, epoch, owner)
      ON l.flight_id = f.flight_id AND l.epoch = f.epoch AND l.owner = f.owner
    ORDER BY l.flight_id
    FOR UPDATE OF l
), lease AS (
    UPDATE flight_leases AS l
    SET expires_at = now() + make_interval(secs => $13)
    FROM locked
    WHERE l.flight_id = locked.flight_id
    RETURNING l.flight_id
), updated AS (
    UPDATE tickets AS t
    SET status = c.status, passenger_id = passenger.id,
        booked_until = c.booked_until, date_of_sale = c.date_of_sale,
        version = t.version + 1
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[])
         AS c (flight_id, id, expected_status, expected_version, status,
               email, pass_number, booked_until, date_of_sale)
         {lease_join}
         LEFT JOIN passengers AS passenger ON passenger.email = c.email AND passenger.pass_number = c.pass_number
    WHERE t.id = c.id AND t.flight_id = c.flight_id
      AND t.status = c.expected_status AND t.version = c.expected_version
    RETURNING t.id
), flight AS (
    UPDATE flights AS f
    SET seats_available = f.seats_available + x.delta, status = COALESCE(x.status, f.status)
    FROM unnest($14::bigint[], $15::integer[], $16::text[]) AS x (id, delta, status)
    WHERE f.id = x.id
    RETURNING f.id
)
SELECT (SELECT count(*) FROM lease) AS leases, (SELECT count(*) FROM updated) AS tickets
"""

_WRITE_FENCED = _WRITE_TEMPLATE.format(lease_join="JOIN lease ON lease.flight_id = c.flight_id")
_WRITE_UNFENCED = _WRITE_TEMPLATE.format(lease_join="")

_INSERT_EVENTS = """
INSERT INTO flight_events (flight_id, event, triggered_at)
SELECT flight_id, event, triggered_at
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS e (flight_id, event, triggered_at)
ON CONFLICT (flight_id, event) DO NOTHING
"""

# The passengers were upserted by the first statement of this transaction.
_INSERT_OUTBOX = """
INSERT INTO outbox (flight_id, passenger_id, kind, payload)
SELECT n.flight_id, p.id, n.kind, n.payload::jsonb
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
     AS n (flight_id, email, pass_number, kind, payload)
JOIN passengers AS p ON p.email = n.email AND p.pass_number = n.pass_number
ON CONFLICT (flight_id, kind, passenger_id) DO NOTHING
"""

_NOTIFY_OUTBOX = "SELECT pg_notify($1, flight_id::text) FROM unnest($2::bigint[]) AS n (flight_id)"

# A key whose stored response has expired may be taken again, and a live one
# may not. Then the transaction fails as a whole, and the client's retry gets
# the stored response.
_INSERT_RESPONSES = """
INSERT INTO idempotency_keys AS k (key, request_hash, status, body, expires_at)
SELECT key, request_hash, status, body, now() + make_interval(secs => $5)
FROM unnest($1::text[], $2::bytea[], $3::smallint[], $4::bytea[]) AS r (key, request_hash, status, body)
ON CONFLICT (key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status, body = EXCLUDED.body,
    created_at = now(), expires_at = EXCLUDED.expires_at
WHERE k.expires_at <= now()
"""


async def write_batches(
    connection: asyncpg.Connection, batches: list[Batch], *, idempotency_ttl: float, lease_ttl: float
) -> None:
    """Write ``batches`` (each of another flight) inside the caller's transaction.

    Raise StaleWrite, LeaseMismatch or IdempotencyKeyTaken for a single
    batch whose guard failed, and GroupConflict for several. The caller must
    then roll back.
    """
    fenced = [batch for batch in batches if batch.fence is not None]
    if fenced and len(fenced) != len(batches):
        raise ValueError("batches written together must all be fenced or all unfenced")
    keys = [response.key for batch in batches for response in batch.changes.responses]
    if len(batches) > 1 and len(set(keys)) != len(keys):
        # Two batches storing one key would update one row twice, which
        # PostgreSQL rejects. Written alone, the second finds the key taken.
        raise _conflict(batches, "two batches store a response under the same idempotency key")

    await _write_rows(connection, batches, fenced=bool(fenced), lease_ttl=lease_ttl)
    await _insert_events(connection, batches)
    await _insert_outbox(connection, batches)
    if keys:
        await _insert_responses(connection, batches, idempotency_ttl)


async def _write_rows(connection: asyncpg.Connection, batches: list[Batch], *, fenced: bool, lease_ttl: float) -> None:
    passengers: dict[PassengerIdentity, Passenger] = {}
    tickets: tuple[list, ...] = ([], [], [], [], [], [], [], [], [])
    flights: tuple[list, list, list] = ([], [], [])
    leases: tuple[list, list, list] = ([], [], [])
    for batch in batches:
        changes = batch.changes
        for change in changes.tickets:
            ticket = change.ticket
            holder = ticket.holder
            if holder is not None:
                passengers[holder.identity] = holder
            row = (
                batch.flight_id,
                ticket.id,
                change.expected_status.value,
                change.expected_version,
                ticket.status.value,
                holder.email if holder is not None else None,
                holder.pass_number if holder is not None else None,
                ticket.booked_until,
                ticket.date_of_sale,
            )
            for column, value in zip(tickets, row):
                column.append(value)
        for notification in changes.notifications:
            passengers.setdefault(notification.passenger.identity, notification.passenger)
        if changes.seats_available_delta or changes.flight_status is not None:
            flights[0].append(batch.flight_id)
            flights[1].append(changes.seats_available_delta)
            flights[2].append(changes.flight_status.value if changes.flight_status is not None else None)
        if batch.fence is not None:
            leases[0].append(batch.flight_id)
            leases[1].append(batch.fence.epoch)
            leases[2].append(batch.fence.owner)

    if passengers:
        people = list(passengers.values())
        await connection.execute(
            _UPSERT_PASSENGERS,
            [person.email for person in people],
            [person.pass_number for person in people],
            [person.firstname for person in people],
            [person.lastname for person in people],
        )
    counts = await connection.fetchrow(
        _WRITE_FENCED if fenced else _WRITE_UNFENCED,
        *tickets,
        *leases,
        float(lease_ttl),
        *flights,
    )

    if counts["leases"] != len(leases[0]):
        if len(batches) > 1:
            raise _conflict(batches, f"{len(leases[0]) - counts['leases']} leases are no longer held")
        batch = batches[0]
        assert batch.fence is not None
        raise LeaseMismatch(
            f"flight {batch.flight_id}: lease epoch {batch.fence.epoch} of {batch.fence.owner} is no longer held"
        )
    expected = len(tickets[0])
    if counts["tickets"] != expected:
        if len(batches) > 1:
            raise _conflict(batches, f"guarded update matched {counts['tickets']} of {expected} tickets")
        raise StaleWrite(f"flight {batches[0].flight_id}: guarded update matched {counts['tickets']} of {expected} tickets")


async def _insert_events(connection: asyncpg.Connection, batches: list[Batch]) -> None:
    rows = [(batch.flight_id, event.event, event.triggered_at) for batch in batches for event in batch.changes.events]
    if rows:
        await connection.execute(_INSERT_EVENTS, *map(list, zip(*rows)))


async def _insert_outbox(connection: asyncpg.Connection, batches: list[Batch]) -> None:
    rows = [
        (
            batch.flight_id,
            notification.passenger.email,
            notification.passenger.pass_number,
            notification.kind.value,
            json.dumps({"ticket_ids": list(notification.ticket_ids), "seats": list(notification.seats)}),
        )
        for batch in batches
        for notification in batch.changes.notifications
    ]
    if not rows:
        return
    await connection.execute(_INSERT_OUTBOX, *map(list, zip(*rows)))
    flight_ids = sorted({row[0] for row in rows})
    await connection.execute(_NOTIFY_OUTBOX, OUTBOX_CHANNEL, flight_ids)


async def _insert_responses(connection: asyncpg.Connection, batches: list[Batch], idempotency_ttl: float) -> None:
    responses = [response for batch in batches for response in batch.changes.responses]
    status = await connection.execute(
        _INSERT_RESPONSES,
        [response.key for response in responses],
        [response.request_hash for response in responses],
        [response.status for response in responses],
        [response.body for response in responses],
        float(idempotency_ttl),
    )
    inserted = int(status.split()[-1])
    if inserted == len(responses):
        return
    message = (
        f"{len(responses) - inserted} of {len(responses)} idempotency keys "
        "already hold a live response from another request"
    )
    if len(batches) > 1:
        raise _conflict(batches, message)
    raise IdempotencyKeyTaken(f"flight {batches[0].flight_id}: {message}")


def _conflict(batches: list[Batch], reason: str) -> GroupConflict:
    flights = ", ".join(str(batch.flight_id) for batch in batches)
    return GroupConflict(f"batches of flights {flights} written together: {reason}")
