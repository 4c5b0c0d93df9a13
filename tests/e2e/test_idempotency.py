"""The Idempotency-Key header: replay, reuse, in-progress duplicates, what is not stored."""

from __future__ import annotations

import httpx
import pytest
import trio

from persistence.idempotency_store import purge_expired
from tests.conftest import CALLBACK_SECRET, start_live_server, test_settings
from tests.support import hold_ticket_lock, passenger, pending_commands, seed_one_flight

pytestmark = pytest.mark.trio


def seat(ticket_id: int, number: int) -> dict:
    return {"ticketId": ticket_id, "passenger": passenger(number)}


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def test_idempotent_buy_replays_first_response(live_server):
    await seed_one_flight(live_server.database)
    client = live_server.client

    first = await client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("buy-1"))
    second = await client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("buy-1"))

    assert first.status_code == 201
    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    versions = await live_server.database.fetch("SELECT version FROM tickets WHERE id = 1")
    assert versions[0]["version"] == 1


async def test_idempotent_key_with_other_body_rejected(live_server):
    await seed_one_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/book", json=seat(1, 1), headers=keyed("reused"))

    other_ticket = await client.post("/api/v1/tickets/book", json=seat(2, 1), headers=keyed("reused"))
    other_path = await client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("reused"))

    assert other_ticket.status_code == 422
    assert other_ticket.json()["code"] == "idempotency_key_reused"
    assert other_path.status_code == 422
    statuses = await live_server.database.fetch("SELECT id, status FROM tickets WHERE id IN (1, 2) ORDER BY id")
    assert [row["status"] for row in statuses] == ["booked", "available"]


async def test_idempotent_rule_rejection_replayed(live_server):
    await seed_one_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/buy", json=seat(1, 1))

    first = await client.post("/api/v1/tickets/buy", json=seat(1, 2), headers=keyed("late-buyer"))
    second = await client.post("/api/v1/tickets/buy", json=seat(1, 2), headers=keyed("late-buyer"))

    assert first.status_code == 400
    assert first.json()["code"] == "ticket_unavailable"
    assert second.status_code == 400
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_idempotent_validation_error_not_stored(live_server):
    await seed_one_flight(live_server.database)
    client = live_server.client

    invalid = await client.post("/api/v1/tickets/buy", json={"ticketId": 1}, headers=keyed("fix-and-retry"))
    fixed = await client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("fix-and-retry"))

    assert invalid.status_code == 400
    assert fixed.status_code == 201


async def test_idempotent_duplicate_in_progress_gets_409(live_server):
    flight_id = await seed_one_flight(live_server.database)
    client = live_server.client
    responses: dict[str, httpx.Response] = {}

    async def first() -> None:
        responses["first"] = await client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("slow"))

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(hold_ticket_lock, live_server.database, [1], 1.5)
            nursery.start_soon(first)
            while pending_commands(live_server.runtime.registry.actor(flight_id)) < 1:
                await trio.sleep(0.02)
            duplicate = await client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("slow"))
        after = await client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("slow"))

    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "idempotency_key_in_progress"
    assert duplicate.headers["Retry-After"] == "1"
    assert responses["first"].status_code == 201
    assert after.status_code == 201
    assert after.content == responses["first"].content


async def test_idempotent_server_error_not_stored(database, database_url, nursery):
    await seed_one_flight(database)
    settings = test_settings(database_url, db_command_timeout=0.5)
    _, base_url = await start_live_server(nursery, settings)

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        with trio.fail_after(15):
            async with trio.open_nursery() as lock_nursery:
                await lock_nursery.start(hold_ticket_lock, database, [1], 2.0)
                failed = await client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("retry-me"))
            retried = await client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("retry-me"))

    assert failed.status_code == 503
    assert "Retry-After" in failed.headers
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers
    nursery.cancel_scope.cancel()


async def test_idempotent_expired_key_runs_again(live_server):
    await seed_one_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/book", json=seat(1, 1), headers=keyed("old"))
    await live_server.database.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")

    response = await client.post("/api/v1/tickets/book", json=seat(2, 1), headers=keyed("old"))

    assert response.status_code == 201
    assert response.json()["ticket"]["id"] == 2
    rows = await live_server.database.fetch("SELECT key, expires_at > now() AS live FROM idempotency_keys")
    assert [(row["key"], row["live"]) for row in rows] == [("old", True)]


async def test_idempotent_purge_deletes_only_expired(live_server):
    await seed_one_flight(live_server.database)
    client = live_server.client
    for number in range(3):
        await client.post("/api/v1/tickets/book", json=seat(number + 1, number), headers=keyed(f"k{number}"))
    await live_server.database.execute("UPDATE idempotency_keys SET expires_at = now() WHERE key <> 'k2'")

    deleted = await purge_expired(live_server.database, chunk=1)

    assert deleted == 2
    assert [row["key"] for row in await live_server.database.fetch("SELECT key FROM idempotency_keys")] == ["k2"]


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "ключ"])
async def test_idempotent_malformed_key_rejected(live_server, key):
    await seed_one_flight(live_server.database)

    response = await live_server.client.post(
        "/api/v1/tickets/buy", json=seat(1, 1), headers={"Idempotency-Key": key.encode("utf-8")}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert "Idempotency-Key" in response.json()["error"]
    assert await live_server.database.fetchval("SELECT count(*) FROM tickets WHERE status <> 'available'") == 0


async def test_idempotent_webhook_replayed(live_server):
    flight_id = await seed_one_flight(live_server.database)
    body = {"data": {"flight_id": flight_id, "triggered_at": 1585012345, "event": "flight_canceled", "secret_key": CALLBACK_SECRET}}

    first = await live_server.client.post("/api/v1/callback/events", json=body, headers=keyed("event-1"))
    second = await live_server.client.post("/api/v1/callback/events", json=body, headers=keyed("event-1"))

    assert first.status_code == 200
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == {"status": "ok"}


# Two servers on one database. The server that gets a flight's first request
# owns the flight, and the other forwards the flight's commands to it.


async def start_owner_and_forwarder(live_server_factory, flight_id: int):
    """Start two servers and make the first the flight's owner; return (owner, forwarder)."""
    # Idle actors outlive the test, so the owner keeps the flight's lease throughout.
    owner = await live_server_factory(actor_idle_timeout=120)
    forwarder = await live_server_factory(actor_idle_timeout=120)
    opening = await owner.client.get(f"/api/v1/tickets/flight-{flight_id}")
    assert opening.status_code == 200
    assert flight_id in owner.runtime.ownership.held
    return owner, forwarder


def assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    assert replay.headers.get("Idempotent-Replayed") == "true"


async def test_forwarded_buy_replayed_on_both_servers(live_server_factory, database):
    flight_id = await seed_one_flight(database)
    owner, forwarder = await start_owner_and_forwarder(live_server_factory, flight_id)

    first = await forwarder.client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("buy-forwarded"))
    again = await forwarder.client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("buy-forwarded"))
    on_owner = await owner.client.post("/api/v1/tickets/buy", json=seat(1, 1), headers=keyed("buy-forwarded"))

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert_replay_of(again, first)
    assert_replay_of(on_owner, first)
    assert flight_id in owner.runtime.ownership.held
    assert flight_id not in forwarder.runtime.ownership.held
    assert await database.fetchval("SELECT count(*) FROM tickets WHERE status = 'sold'") == 1
    assert await database.fetchval("SELECT version FROM tickets WHERE id = 1") == 1
    stored = await database.fetch("SELECT status, body FROM idempotency_keys WHERE key = 'buy-forwarded'")
    assert [(row["status"], bytes(row["body"])) for row in stored] == [(201, first.content)]

    for server in (forwarder, owner):
        reused = await server.client.post("/api/v1/tickets/buy", json=seat(2, 1), headers=keyed("buy-forwarded"))
        assert reused.status_code == 422
        assert reused.json()["code"] == "idempotency_key_reused"
    assert await database.fetchval("SELECT status FROM tickets WHERE id = 2") == "available"


async def test_forwarded_cancel_and_rejection_replayed(live_server_factory, database):
    flight_id = await seed_one_flight(database)
    owner, forwarder = await start_owner_and_forwarder(live_server_factory, flight_id)
    booked = await owner.client.post("/api/v1/tickets/book", json=seat(1, 1))
    assert booked.status_code == 201

    canceled = await forwarder.client.post("/api/v1/tickets/cancel-reservation", json=seat(1, 1), headers=keyed("cancel"))
    rejected = await forwarder.client.post("/api/v1/tickets/cancel-reservation", json=seat(2, 1), headers=keyed("reject"))

    assert canceled.status_code == 200
    assert rejected.status_code == 400
    assert rejected.json()["code"] == "ticket_not_booked"
    for server in (forwarder, owner):
        assert_replay_of(await server.client.post("/api/v1/tickets/cancel-reservation", json=seat(1, 1), headers=keyed("cancel")), canceled)
        assert_replay_of(await server.client.post("/api/v1/tickets/cancel-reservation", json=seat(2, 1), headers=keyed("reject")), rejected)
    assert await database.fetchval("SELECT version FROM tickets WHERE id = 1") == 2


async def test_forwarded_webhook_replayed(live_server_factory, database):
    flight_id = await seed_one_flight(database)
    owner, forwarder = await start_owner_and_forwarder(live_server_factory, flight_id)
    body = {"data": {"flight_id": flight_id, "triggered_at": 1585012345, "event": "flight_ticket_sales_completed", "secret_key": CALLBACK_SECRET}}

    first = await forwarder.client.post("/api/v1/callback/events", json=body, headers=keyed("event-forwarded"))
    again = await forwarder.client.post("/api/v1/callback/events", json=body, headers=keyed("event-forwarded"))
    on_owner = await owner.client.post("/api/v1/callback/events", json=body, headers=keyed("event-forwarded"))

    assert first.status_code == 200
    assert_replay_of(again, first)
    assert_replay_of(on_owner, first)
    assert await database.fetchval("SELECT count(*) FROM flight_events WHERE flight_id = $1", flight_id) == 1
    assert await database.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = 'event-forwarded'") == 1
