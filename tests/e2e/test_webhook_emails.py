"""Webhook events reach passengers' mailboxes: HTTP in, real SMTP (aiosmtpd) out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import trio

from persistence.seed import seed_flights
from tests.conftest import CALLBACK_SECRET, start_live_server, test_settings
from tests.integration.smtp_server import SmtpServer, running_smtp_server


def passenger(name: str) -> dict[str, str]:
    return {"email": f"{name}@mail.com", "firstname": name.capitalize(), "lastname": "Петров", "passNumber": f"{name}-77"}


def event(flight_id: int, name: str) -> dict:
    return {"data": {"flight_id": flight_id, "triggered_at": 1700000000, "event": name, "secret_key": CALLBACK_SECRET}}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


async def wait_for_messages(smtp: SmtpServer, count: int) -> None:
    with trio.fail_after(15):
        while len(smtp.handler.messages) < count:
            await trio.sleep(0.05)


async def open_flight(database_url: str, nursery: trio.Nursery, smtp: SmtpServer, database) -> tuple[httpx.AsyncClient, int]:
    departure = datetime(2030, 5, 17, 9, 30, tzinfo=UTC)
    (flight_id,) = await seed_flights(database, [("SU", "Moscow", "Berlin", departure)], 10)
    _, base_url = await start_live_server(nursery, test_settings(database_url, mail_url=smtp.url))
    return httpx.AsyncClient(base_url=base_url, timeout=30), flight_id


def emails_sent_metric(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith('tickets_emails_sent_total{kind="flight_canceled"}'):
            return float(line.split()[-1])
    raise AssertionError("tickets_emails_sent_total{kind=flight_canceled} is missing from /metrics")


async def test_cancel_emails_each_passenger_once(database, database_url, nursery, smtp):
    client, flight_id = await open_flight(database_url, nursery, smtp, database)
    async with client:
        sent_before = emails_sent_metric((await client.get("/metrics")).text)
        await client.post("/api/v1/tickets/book", json={"ticketId": 1, "passenger": passenger("anna")})
        await client.post("/api/v1/tickets/book", json={"ticketId": 2, "passenger": passenger("anna")})
        await client.post("/api/v1/tickets/book", json={"ticketId": 3, "passenger": passenger("boris")})
        await client.post("/api/v1/tickets/buy", json={"ticketId": 4, "passenger": passenger("vera")})

        response = await client.post("/api/v1/callback/events", json=event(flight_id, "flight_canceled"))
        assert response.status_code == 200
        await wait_for_messages(smtp, 3)
        # The counter moves once the SMTP session closes, just after delivery.
        with trio.move_on_after(5):
            while emails_sent_metric((await client.get("/metrics")).text) < sent_before + 3:
                await trio.sleep(0.05)
        await trio.sleep(0.5)
        sent_after = emails_sent_metric((await client.get("/metrics")).text)

    assert sent_after - sent_before == 3
    messages = {received.recipients[0]: received.message for received in smtp.handler.messages}
    assert sorted(messages) == ["anna@mail.com", "boris@mail.com", "vera@mail.com"]
    anna = messages["anna@mail.com"]
    assert "отменён" in anna["Subject"]
    assert anna["Message-ID"]
    assert anna["Date"]
    assert "Anna" in anna["To"]
    body = anna.get_body(("plain",)).get_content()
    assert "Anna Петров" in body
    assert "Moscow" in body
    assert "2030-05-17 09:30" in body
    assert "1, 2" in body
    assert anna.get_body(("plain",)).get_content_charset() == "utf-8"
    nursery.cancel_scope.cancel()


async def test_cancel_replays_send_no_extra_email(database, database_url, nursery, smtp):
    client, flight_id = await open_flight(database_url, nursery, smtp, database)
    async with client:
        await client.post("/api/v1/tickets/buy", json={"ticketId": 1, "passenger": passenger("anna")})

        async def cancel() -> None:
            response = await client.post("/api/v1/callback/events", json=event(flight_id, "flight_canceled"))
            assert response.status_code == 200

        async with trio.open_nursery() as senders:
            senders.start_soon(cancel)
            senders.start_soon(cancel)
        await wait_for_messages(smtp, 1)
        await cancel()
        # Give the notifier several polls in which a second email could leave.
        await trio.sleep(2.5)

    assert len(smtp.handler.messages) == 1
    assert await database.fetchval("SELECT count(*) FROM outbox") == 1
    nursery.cancel_scope.cancel()


async def test_sales_completed_emails_holders_only(database, database_url, nursery, smtp):
    client, flight_id = await open_flight(database_url, nursery, smtp, database)
    async with client:
        await client.post("/api/v1/tickets/book", json={"ticketId": 1, "passenger": passenger("anna")})
        await client.post("/api/v1/tickets/buy", json={"ticketId": 2, "passenger": passenger("boris")})

        response = await client.post("/api/v1/callback/events", json=event(flight_id, "flight_ticket_sales_completed"))
        assert response.status_code == 200
        await wait_for_messages(smtp, 1)
        await trio.sleep(1.5)

    assert [received.recipients for received in smtp.handler.messages] == [["anna@mail.com"]]
    nursery.cancel_scope.cancel()
