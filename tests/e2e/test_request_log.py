"""One INFO line per request with its id, echoed in X-Request-ID; nothing personal or secret in any line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from api.logs import JsonFormatter
from persistence.seed import seed_flights
from tests.conftest import CALLBACK_SECRET

pytestmark = pytest.mark.trio

PASS_NUMBER = "7700-123456"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log record at DEBUG or above, as JSON lines, while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)


def request_entries(stream: io.StringIO) -> list[dict]:
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [entry for entry in entries if entry["logger"] == "api.request_log"]


async def test_request_id_echoed(live_server, log_lines):
    response = await live_server.client.get("/healthz", headers={"X-Request-ID": "trace-0001"})

    assert response.headers["X-Request-ID"] == "trace-0001"
    (entry,) = request_entries(log_lines)
    assert entry["request_id"] == "trace-0001"
    assert entry["message"].startswith("GET /healthz 200 ")


async def test_request_id_generated(live_server, log_lines):
    first = await live_server.client.get("/healthz")
    second = await live_server.client.get("/healthz")

    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    assert [entry["request_id"] for entry in request_entries(log_lines)] == [
        first.headers["X-Request-ID"],
        second.headers["X-Request-ID"],
    ]


@pytest.mark.parametrize("given", ["has space", "x" * 129, "quote\"d", "caf\u00e9"])
async def test_request_id_invalid_replaced(live_server, given):
    response = await live_server.client.get("/healthz", headers={"X-Request-ID": given.encode("utf-8")})

    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


async def test_request_line_fields(live_server, log_lines):
    response = await live_server.client.get("/api/v1/tickets/flight-77", headers={"X-Request-ID": "r-1"})

    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "r-1"
    (entry,) = request_entries(log_lines)
    assert entry["level"] == "INFO"
    assert entry["method"] == "GET"
    assert entry["path"] == "/api/v1/tickets/flight-77"
    assert entry["status"] == 404
    assert entry["duration_ms"] >= 0


async def test_error_response_has_request_id(live_server):
    response = await live_server.client.post("/api/v1/tickets/buy", content=b"{", headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.headers["X-Request-ID"]


async def test_logs_hide_passport_and_secret(live_server, log_lines):
    departure = datetime.now(UTC) + timedelta(days=3)
    (flight_id,) = await seed_flights(live_server.database, [("SU", "Moscow", "Berlin", departure)], 3)
    client = live_server.client
    passenger = {"email": "ivan@mail.com", "firstname": "Ivan", "lastname": "Ivanov", "passNumber": PASS_NUMBER}

    assert (await client.post("/api/v1/tickets/book", json={"ticketId": 1, "passenger": passenger})).status_code == 201
    assert (await client.post("/api/v1/tickets/buy", json={"ticketId": 1, "passenger": passenger})).status_code == 201
    wrong = {"data": {"flight_id": flight_id, "triggered_at": 1585012345, "event": "flight_canceled", "secret_key": "guess-123"}}
    assert (await client.post("/api/v1/callback/events", json=wrong)).status_code == 403
    right = {"data": {"flight_id": flight_id, "triggered_at": 1585012345, "event": "flight_canceled", "secret_key": CALLBACK_SECRET}}
    assert (await client.post("/api/v1/callback/events", json=right)).status_code == 200

    output = log_lines.getvalue()
    assert len(request_entries(log_lines)) == 4
    assert PASS_NUMBER not in output
    assert "guess-123" not in output
    assert CALLBACK_SECRET not in output
