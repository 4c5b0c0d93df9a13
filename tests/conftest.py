"""Shared fixtures: one PostgreSQL database for the run, emptied before each test.

With TICKETS_DATABASE_URL set, the tests create a fresh database on that
server (dropped afterwards); otherwise they start an embedded PostgreSQL
server in a temporary folder. Either way the schema comes from the real
migrations.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import trio
from hypercorn.trio import serve

from api.app import create_app
from api.config import Settings
from api.runtime import Runtime, open_runtime
from api.server import hypercorn_config
from persistence.database import Database
from persistence.migrations import migrate

CALLBACK_SECRET = "test-callback-secret-0123456789"

TABLES = ["idempotency_keys", "outbox", "flight_events", "tickets", "passengers", "flights"]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a database with the current schema, private to this test run."""
    server_url = os.environ.get("TICKETS_DATABASE_URL")
    embedded = None
    data_dir = None
    if server_url is None:
        from persistence.embedded import EmbeddedPostgres

        # The embedded server runs as an unprivileged user when the tests run
        # as root, so its folder must be reachable by that user.
        data_dir = tempfile.mkdtemp(prefix="tickets-pg-")
        os.chmod(data_dir, 0o755)
        embedded = EmbeddedPostgres(os.path.join(data_dir, "pgdata"))
        server_url = embedded.start()

    name = f"tickets_test_{uuid.uuid4().hex[:12]}"
    trio.run(_create_database, server_url, name)
    url = _with_database(server_url, name)
    trio.run(_migrate, url)
    try:
        yield url
    finally:
        trio.run(_drop_database, server_url, name)
        if embedded is not None:
            embedded.stop()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


async def _admin(server_url: str, statement: str) -> None:
    database = await Database.open(server_url, min_size=1, max_size=1)
    try:
        await database.execute(statement)
    finally:
        await database.close()


async def _create_database(server_url: str, name: str) -> None:
    await _admin(server_url, f'CREATE DATABASE "{name}"')


async def _drop_database(server_url: str, name: str) -> None:
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _migrate(url: str) -> None:
    database = await Database.open(url, min_size=1, max_size=1)
    try:
        await migrate(database)
    finally:
        await database.close()


async def _truncate(connection: asyncpg.Connection) -> None:
    await connection.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open pool on the test database, with every table emptied."""
    database = await Database.open(database_url, min_size=1, max_size=5)
    try:
        await database.connection(_truncate)
        yield database
    finally:
        await database.close()


def test_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "mail_url": "console://",
        "port": 0,
        "callback_secret": CALLBACK_SECRET,
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # a helper, not a test, despite its name


class LiveServer:
    """The real app served by Hypercorn on a loopback port, and a client for it."""

    def __init__(self, runtime: Runtime, base_url: str, client: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.base_url = base_url
        self.client = client

    @property
    def database(self) -> Database:
        return self.runtime.database


async def start_live_server(nursery: trio.Nursery, settings: Settings) -> tuple[Runtime, str]:
    """Start runtime and Hypercorn in ``nursery``; return the runtime and the base URL."""

    async def run(task_status: trio.TaskStatus[tuple[Runtime, str]]) -> None:
        async with open_runtime(settings) as runtime, trio.open_nursery() as server_nursery:
            config = hypercorn_config(settings)
            config.bind = ["127.0.0.1:0"]
            binds = await server_nursery.start(serve, create_app(runtime), config)
            task_status.started((runtime, binds[0]))

    return await nursery.start(run)


@pytest.fixture
async def live_server(database: Database, database_url: str, nursery: trio.Nursery) -> AsyncIterator[LiveServer]:
    """The app on a random loopback port, over an emptied database."""
    runtime, base_url = await start_live_server(nursery, test_settings(database_url))
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield LiveServer(runtime, base_url, client)
    nursery.cancel_scope.cancel()


@pytest.fixture
async def live_server_factory(
    database: Database, database_url: str, nursery: trio.Nursery
) -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    """A function that starts the live server with some settings overridden, over an emptied database.

    Call it as ``await live_server_factory(max_body_bytes=256)``.
    """
    clients: list[httpx.AsyncClient] = []

    async def start(**overrides: object) -> LiveServer:
        runtime, base_url = await start_live_server(nursery, test_settings(database_url, **overrides))
        client = httpx.AsyncClient(base_url=base_url, timeout=30)
        clients.append(client)
        return LiveServer(runtime, base_url, client)

    yield start
    for client in clients:
        await client.aclose()
    nursery.cancel_scope.cancel()
