"""Stored responses under Idempotency-Keys: look one up, purge expired ones.

Rows are written by the flight store in the batch's transaction (see
``flight_store._insert_responses``); this module only reads and deletes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .database import Database

_LOOKUP = """
SELECT request_hash, status, body FROM idempotency_keys
WHERE key = $1 AND expires_at > now()
"""

_PURGE = """
DELETE FROM idempotency_keys
WHERE key IN (SELECT key FROM idempotency_keys WHERE expires_at <= now() LIMIT $1)
"""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    request_hash: bytes
    status: int
    body: bytes


async def find_response(database: Database, key: str) -> StoredRecord | None:
    """Return the live response stored under ``key``, or None."""
    rows = await database.fetch(_LOOKUP, key)
    if not rows:
        return None
    row = rows[0]
    return StoredRecord(bytes(row["request_hash"]), row["status"], bytes(row["body"]))


async def purge_expired(database: Database, *, chunk: int = 10_000) -> int:
    """Delete expired responses in chunks of ``chunk`` rows; return how many were deleted."""
    deleted = 0
    while True:
        status = await database.execute(_PURGE, chunk)
        count = int(status.split()[-1])
        deleted += count
        if count < chunk:
            return deleted
