"""Read-only queries behind the metrics that come from the database."""

from __future__ import annotations

from .database import Database

# An index-only scan of the partial index outbox_due, so its cost grows with
# the backlog, not with the number of emails ever sent.
_PENDING_EMAILS = "SELECT count(*) FROM outbox WHERE status = 'pending'"


async def pending_emails(database: Database) -> int:
    """Return the number of outbox rows not yet sent or given up."""
    return await database.fetchval(_PENDING_EMAILS)


def pool_usage(database: Database) -> tuple[int, int, int]:
    """Return (connections in use, open connections, maximum) of the database pool.

    Reads the asyncpg pool's counters from the trio thread without crossing
    to the asyncio thread. Each counter sums flags over the pool's fixed list
    of connection holders without a lock, so a scrape may be one change behind.
    """
    pool = database.pool
    size = pool.get_size()
    return size - pool.get_idle_size(), size, pool.get_max_size()
