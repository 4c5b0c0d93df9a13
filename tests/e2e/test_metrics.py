"""GET /metrics: the Prometheus text format with the request, engine, pool and outbox series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from persistence.seed import seed_flights
from tests.conftest import CALLBACK_SECRET, start_live_server, test_settings

pytestmark = pytest.mark.trio


def passenger(number: int) -> dict[str, str]:
    return {"email": f"p{number}@mail.com", "firstname": "Ivan", "lastname": "Ivanov", "passNumber": f"4322-{number:06d}"}


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple], float]:
    """Return every sample of a scrape as {(name, sorted labels): value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def seed_one_flight(database, seats: int = 5) -> int:
    (flight_id,) = await seed_flights(database, [("SU", "Moscow", "Berlin", datetime.now(UTC) + timedelta(days=3))], seats)
    return flight_id


async def test_metrics_count_requests_by_route_and_status(live_server):
    flight_id = await seed_one_flight(live_server.database)
    client = live_server.client
    assert (await client.get(f"/api/v1/tickets/flight-{flight_id}")).status_code == 200
    assert (await client.get("/api/v1/tickets/flight-999")).status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404

    samples = await scrape(client)

    route = "/api/v1/tickets/flight-<flight_ref>"
    assert samples[("tickets_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] == 1
    assert samples[("tickets_http_requests_total", (("method", "GET"), ("route", route), ("status", "404")))] == 1
    assert samples[("tickets_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert samples[("tickets_http_request_duration_seconds_count", (("method", "GET"), ("route", route)))] == 2
    assert ("tickets_http_request_duration_seconds_bucket", (("le", "0.005"), ("method", "GET"), ("route", route))) in samples


async def test_metrics_report_engine_batches_and_pool(live_server):
    await seed_one_flight(live_server.database)
    client = live_server.client
    for ticket_id in (1, 2, 3):
        response = await client.post("/api/v1/tickets/buy", json={"ticketId": ticket_id, "passenger": passenger(ticket_id)})
        assert response.status_code == 201

    samples = await scrape(client)

    assert samples[("tickets_actors_active", ())] == 1
    assert samples[("tickets_mailbox_depth", ())] == 0
    assert samples[("tickets_mailbox_depth_max", ())] == 0
    assert samples[("tickets_batch_commands_count", ())] == 3
    assert samples[("tickets_batch_commands_sum", ())] == 3
    assert samples[("tickets_batch_commit_duration_seconds_count", ())] == 3
    assert samples[("tickets_batch_failures_total", ())] == 0
    # Each buy waited for its 201, so each batch had a transaction of its own.
    assert samples[("tickets_commit_groups_total", ())] == 3
    assert samples[("tickets_commit_group_batches_total", ())] == 3
    assert samples[("tickets_commit_group_splits_total", ())] == 0
    assert samples[("tickets_db_pool_max_connections", ())] == live_server.runtime.settings.pool_max_size
    assert samples[("tickets_db_pool_connections", ())] >= 1
    assert 0 <= samples[("tickets_db_pool_connections_in_use", ())] <= samples[("tickets_db_pool_connections", ())]


async def test_metrics_read_outbox_backlog(live_server_factory):
    # Nothing listens on port 9 of loopback, so every send fails and the
    # emails stay pending instead of racing the scrape.
    live_server = await live_server_factory(mail_url="smtp://127.0.0.1:9")
    flight_id = await seed_one_flight(live_server.database)
    client = live_server.client
    assert (await scrape(client))[("tickets_outbox_pending_emails", ())] == 0
    for ticket_id in (1, 2):
        response = await client.post("/api/v1/tickets/buy", json={"ticketId": ticket_id, "passenger": passenger(ticket_id)})
        assert response.status_code == 201
    event = {"data": {"flight_id": flight_id, "triggered_at": 1585012345, "event": "flight_canceled", "secret_key": CALLBACK_SECRET}}
    assert (await client.post("/api/v1/callback/events", json=event)).status_code == 200

    samples = await scrape(client)

    assert samples[("tickets_outbox_pending_emails", ())] == 2


async def test_metrics_include_email_counters_and_process(live_server):
    samples = await scrape(live_server.client)

    for name in ("tickets_emails_sent_total", "tickets_emails_failed_total"):
        for kind in ("flight_canceled", "reservation_released"):
            assert (name, (("kind", kind),)) in samples
    assert ("process_resident_memory_bytes", ()) in samples


async def test_metrics_count_503_by_cause(database, database_url, nursery):
    runtime, base_url = await start_live_server(nursery, test_settings(database_url, callback_secret=None))
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        event = {"data": {"flight_id": 1, "triggered_at": 1585012345, "event": "flight_canceled", "secret_key": "x"}}
        for _ in range(2):
            assert (await client.post("/api/v1/callback/events", json=event)).status_code == 503

        samples = await scrape(client)

    assert samples[("tickets_http_unavailable_total", (("cause", "callback_secret_not_configured"),))] == 2
    nursery.cancel_scope.cancel()


async def test_metrics_count_failed_batches(live_server):
    await seed_one_flight(live_server.database)
    client = live_server.client
    assert (await client.get("/api/v1/tickets/flight-1")).status_code == 200
    # A change behind the actor's back makes its next guarded write fail.
    await live_server.database.execute("UPDATE tickets SET version = version + 1 WHERE id = 1")

    response = await client.post("/api/v1/tickets/buy", json={"ticketId": 1, "passenger": passenger(1)})

    assert response.status_code == 503
    samples = await scrape(client)
    assert samples[("tickets_batch_failures_total", ())] == 1
    assert samples[("tickets_http_unavailable_total", (("cause", "database_unavailable"),))] == 1
