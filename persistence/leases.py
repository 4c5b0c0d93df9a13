"""Flight ownership leases on PostgreSQL: acquire, renew, release.

Implements ``engine.ownership.LeaseStore``. Expiry is computed with the
database clock (``now()``), so processes on machines whose clocks differ
still agree on when a lease lapses. The batch-time fencing check is in
``batch_writes``, in the same statement as the ticket update.
"""

from __future__ import annotations

import logging

import asyncpg

from engine.ownership import Holder

from .database import Database

log = logging.getLogger(__name__)

# Taken when the row is new, expired, or already this owner's (a restarted
# actor of the same process); the epoch grows with every acquisition.
_ACQUIRE = """
WITH previous AS (SELECT owner FROM flight_leases WHERE flight_id = $1)
INSERT INTO flight_leases AS l (flight_id, owner, address, epoch, expires_at)
VALUES ($1, $2, $3, 1, now() + make_interval(secs => $4))
ON CONFLICT (flight_id) DO UPDATE
SET owner = EXCLUDED.owner, address = EXCLUDED.address,
    epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= now() OR l.owner = EXCLUDED.owner
RETURNING l.epoch, (SELECT owner FROM previous) AS previous_owner
"""

_HOLDER = """
SELECT owner, address, greatest(extract(epoch FROM expires_at - now()), 0)::float8 AS expires_in
FROM flight_leases WHERE flight_id = $1
"""

# Statements that change several leases lock their rows in flight id order
# first, as the batch writes do, so that two of them never wait on each
# other in a cycle. $1 is the owner, $2 and $3 the flight ids and epochs.
_LOCK_HELD = """
WITH locked AS (
    SELECT l.flight_id
    FROM flight_leases AS l
    JOIN unnest($2::bigint[], $3::bigint[]) AS h (flight_id, epoch) ON l.flight_id = h.flight_id AND l.epoch = h.epoch
    WHERE l.owner = $1
    ORDER BY l.flight_id
    FOR UPDATE OF l
)
"""

_RENEW = _LOCK_HELD + """
UPDATE flight_leases AS l
SET expires_at = now() + make_interval(secs => $4)
FROM locked
WHERE l.flight_id = locked.flight_id
RETURNING l.flight_id
"""

_RELEASE = _LOCK_HELD + """
UPDATE flight_leases AS l
SET expires_at = now()
FROM locked
WHERE l.flight_id = locked.flight_id
"""


class PostgresLeaseStore:
    """The flight_leases table, one bridge crossing per call."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def acquire(self, flight_id: int, owner: str, address: str, ttl: float) -> int | Holder | None:
        return await self._database.connection(_acquire, flight_id, owner, address, ttl)

    async def renew(self, owner: str, epochs: dict[int, int], ttl: float) -> set[int]:
        flight_ids = list(epochs)
        rows = await self._database.fetch(_RENEW, owner, flight_ids, [epochs[flight_id] for flight_id in flight_ids], ttl)
        return {row["flight_id"] for row in rows}

    async def release(self, owner: str, epochs: dict[int, int]) -> int:
        flight_ids = list(epochs)
        status = await self._database.execute(_RELEASE, owner, flight_ids, [epochs[flight_id] for flight_id in flight_ids])
        return int(status.split()[-1])


async def _acquire(
    connection: asyncpg.Connection, flight_id: int, owner: str, address: str, ttl: float
) -> int | Holder | None:
    try:
        acquired = await connection.fetchrow(_ACQUIRE, flight_id, owner, address, ttl)
    except asyncpg.exceptions.ForeignKeyViolationError:
        return None
    if acquired is not None:
        previous = acquired["previous_owner"]
        if previous is not None and previous != owner:
            # The previous owner released the lease or let it lapse.
            log.info("flight %d: lease moved from node %s to node %s (epoch %d)", flight_id, previous, owner, acquired["epoch"])
        return acquired["epoch"]

    row = await connection.fetchrow(_HOLDER, flight_id)
    if row is None:
        # The row was there a moment ago; leases are never deleted, so only
        # a TRUNCATE (tests) gets here. Report a lapsed lease to retry.
        return Holder("", "", 0.0)
    return Holder(row["owner"], row["address"], row["expires_in"])
