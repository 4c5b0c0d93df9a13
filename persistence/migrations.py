"""Apply the numbered plain-SQL migrations in ``migrations/``, once each."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .database import Database

log = logging.getLogger(__name__)

# Any fixed 64-bit number works; every process of the service uses this one,
# so two servers starting at once apply each migration exactly once.
MIGRATION_LOCK_ID = 7_362_010_001

_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Read the migration files shipped in the package, ordered by version."""
    migrations = []
    for entry in (Path(__file__).parent / "migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        migrations.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migration files share a version number: {versions}")
    return migrations


async def _apply(connection: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
    await connection.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    applied = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
    done = []
    for migration in migrations:
        if migration.version in applied:
            continue
        await connection.execute(migration.sql)
        await connection.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", migration.version, migration.name
        )
        done.append(migration)
    return done


async def migrate(database: Database) -> list[Migration]:
    """Apply pending migrations in one transaction under an advisory lock."""
    migrations = load_migrations()
    done = await database.transaction(_apply, migrations)
    for migration in done:
        log.info("applied migration %03d_%s", migration.version, migration.name)
    if not done:
        log.info("database schema is up to date (version %03d)", migrations[-1].version)
    return done


async def pending_migrations(database: Database) -> list[int]:
    """Return the versions not yet applied; every version if the table is missing."""
    versions = [migration.version for migration in load_migrations()]
    exists = await database.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return versions
    applied = {row["version"] for row in await database.fetch("SELECT version FROM schema_migrations")}
    return [version for version in versions if version not in applied]
