"""Claim due outbox rows and record each delivery's result, one transaction per call.

A claim locks due rows with ``FOR UPDATE SKIP LOCKED``, so notifiers in
several processes never claim the same row at once. It increments
``attempts`` and moves ``next_attempt_at`` forward by the claim timeout,
instead of keeping a transaction open while sending. If the process dies
before recording a result, the row becomes due again when the claim
lapses, so a crash causes at most one resend of a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from engine.seats import NotificationKind
from persistence.database import Database

from .notice import Notice

# Maximum length of the stored last_error, in characters, because SMTP replies can be long.
MAX_ERROR_LENGTH = 1000

# Rows still pending with attempts >= max_attempts had their last claim
# lapse without a recorded result (a crash or a send that overran the
# claim). They are failed here, so no row gets more than max_attempts tries.
_FAIL_EXHAUSTED = """
UPDATE outbox AS o
SET status = 'failed',
    last_error = left(concat_ws(': ', 'claim lapsed without a result on the last attempt', o.last_error), $3)
FROM (
    SELECT id FROM outbox
    WHERE status = 'pending' AND next_attempt_at <= now() AND attempts >= $1
    ORDER BY next_attempt_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
) AS due
WHERE o.id = due.id
RETURNING o.id, o.flight_id, o.passenger_id, o.attempts
"""

_CLAIM = """
WITH due AS (
    SELECT id FROM outbox
    WHERE status = 'pending' AND next_attempt_at <= now() AND attempts < $2
    ORDER BY next_attempt_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox AS o
SET attempts = o.attempts + 1,
    next_attempt_at = now() + $3::double precision * interval '1 second'
FROM due, flights AS f, passengers AS p
WHERE o.id = due.id AND f.id = o.flight_id AND p.id = o.passenger_id
RETURNING o.id, o.kind, o.flight_id, o.passenger_id, o.payload, o.attempts,
          f.company, f.departure, f.arrival, f.departure_time,
          p.email, p.firstname, p.lastname
"""

_MARK_SENT = """
UPDATE outbox SET status = 'sent', sent_at = now()
WHERE id = $1 AND status = 'pending'
"""

# The attempts guard makes a late result a no-op once another notifier has
# claimed the row again after this claim lapsed.
_SCHEDULE_RETRY = """
UPDATE outbox
SET next_attempt_at = now() + $3::double precision * interval '1 second', last_error = left($4, $5)
WHERE id = $1 AND status = 'pending' AND attempts = $2
"""

_MARK_FAILED = """
UPDATE outbox SET status = 'failed', last_error = left($3, $4)
WHERE id = $1 AND status = 'pending' AND attempts = $2
"""


@dataclass(frozen=True, slots=True)
class ExhaustedRow:
    """A row failed by a claim because its attempts were used up."""

    outbox_id: int
    flight_id: int
    passenger_id: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Claim:
    """The result of one claim transaction."""

    notices: list[Notice]
    exhausted: list[ExhaustedRow]


class OutboxStore:
    """The notifier's reads and writes of the outbox table."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def claim(self, limit: int, *, claim_timeout: float, max_attempts: int) -> Claim:
        """Claim up to ``limit`` due rows for ``claim_timeout`` seconds."""
        return await self._database.transaction(_claim, limit, claim_timeout, max_attempts)

    async def mark_sent(self, outbox_id: int) -> bool:
        """Mark a row sent and return True, or return False if it was no longer pending."""
        status = await self._database.execute(_MARK_SENT, outbox_id)
        return _updated(status)

    async def schedule_retry(self, outbox_id: int, attempts: int, delay: float, error: str) -> bool:
        """Record ``error`` and make the row due again in ``delay`` seconds.

        Return False if the row is no longer pending with this many attempts.
        """
        status = await self._database.execute(_SCHEDULE_RETRY, outbox_id, attempts, delay, error, MAX_ERROR_LENGTH)
        return _updated(status)

    async def mark_failed(self, outbox_id: int, attempts: int, error: str) -> bool:
        """Record ``error`` and mark the row failed for good.

        Return False if the row is no longer pending with this many attempts.
        """
        status = await self._database.execute(_MARK_FAILED, outbox_id, attempts, error, MAX_ERROR_LENGTH)
        return _updated(status)


async def _claim(connection: asyncpg.Connection, limit: int, claim_timeout: float, max_attempts: int) -> Claim:
    exhausted_rows = await connection.fetch(_FAIL_EXHAUSTED, max_attempts, limit, MAX_ERROR_LENGTH)
    rows = await connection.fetch(_CLAIM, limit, max_attempts, claim_timeout)
    exhausted = [
        ExhaustedRow(row["id"], row["flight_id"], row["passenger_id"], row["attempts"]) for row in exhausted_rows
    ]
    return Claim([_notice(row) for row in rows], exhausted)


def _notice(row: asyncpg.Record) -> Notice:
    # Parsing must not raise: an exception here would roll back the whole
    # claim, and the same row would stop every later claim. The engine
    # always writes an object with integer lists; anything else renders
    # with whatever seats it has.
    payload = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
    if not isinstance(payload, dict):
        payload = {}
    return Notice(
        outbox_id=row["id"],
        kind=NotificationKind(row["kind"]),
        flight_id=row["flight_id"],
        company=row["company"],
        departure=row["departure"],
        arrival=row["arrival"],
        departure_time=row["departure_time"],
        passenger_id=row["passenger_id"],
        email=row["email"],
        firstname=row["firstname"],
        lastname=row["lastname"],
        seats=_as_tuple(payload.get("seats")),
        ticket_ids=_as_tuple(payload.get("ticket_ids")),
        attempts=row["attempts"],
    )


def _as_tuple(value: object) -> tuple:
    return tuple(value) if isinstance(value, list) else ()


def _updated(status: str) -> bool:
    # asyncpg returns the command tag, e.g. "UPDATE 1".
    return status.split()[-1] != "0"
