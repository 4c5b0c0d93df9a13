"""Liveness and readiness probes."""

from __future__ import annotations

import socket

import pytest

from api.app import create_app
from api.runtime import Runtime
from engine.registry import Registry
from persistence.database import Database
from persistence.flight_store import PostgresFlightStore
from tests.conftest import test_settings

pytestmark = pytest.mark.trio


async def test_healthz_ok(live_server):
    response = await live_server.client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_ok(live_server):
    response = await live_server.client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_pending_migration_503(live_server):
    database = live_server.database
    row = await database.fetch("SELECT version, name FROM schema_migrations WHERE version = 2")
    await database.execute("DELETE FROM schema_migrations WHERE version = 2")
    try:
        response = await live_server.client.get("/readyz")
    finally:
        await database.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", row[0][0], row[0][1])

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert body["code"] == "not_ready"
    assert body["error"] == "migrations not applied: [2]"


def unused_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


async def test_readyz_database_down_503(database_url):
    # A pool with no connections yet, aimed at a loopback port with no listener.
    dsn = f"postgresql://postgres@127.0.0.1:{unused_port()}/postgres"
    database = await Database.open(dsn, min_size=0, max_size=1, acquire_timeout=1)
    try:
        runtime = Runtime(test_settings(database_url), database, Registry(PostgresFlightStore(database)))
        client = create_app(runtime).test_client()

        response = await client.get("/readyz")
        body = await response.get_json()
    finally:
        await database.close()

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert body["code"] == "not_ready"
    assert body["error"].startswith("database unavailable")
