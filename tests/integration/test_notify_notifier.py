"""The notifier against the real database and a real SMTP server on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parseaddr, parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import trio

from engine.seats import Changes, Notification, NotificationKind, Passenger
from notify import Notifier, sender_from_url
from notify.outbox import OutboxStore
from persistence.database import Database
from persistence.flight_store import PostgresFlightStore
from persistence.seed import seed_flights

from .smtp_server import RecordingHandler, SmtpServer, running_smtp_server

MAIL_FROM = "Билеты Tickets <no-reply@tickets.example>"
# 09:45 at UTC+3 is 06:45 UTC: the emails must show the UTC time.
DEPARTURE = datetime(2030, 5, 17, 9, 45, tzinfo=timezone(timedelta(hours=3)))
DEPARTURE_UTC = "2030-05-17 06:45 UTC"

IVAN = Passenger("ivan.petrov@example.com", "4510123456", "Иван", "Петров")
MARIA = Passenger("maria.smirnova@example.com", "4511654321", "Мария", "Смирнова")
JOHN = Passenger("john.smith@example.com", "GB5550001", "John", "Smith")
PASSENGER_SEATS = [(IVAN, (3, 4)), (MARIA, (7,)), (JOHN, (9,))]

# Fast settings for tests: retries and polls in tens of milliseconds.
FAST = {"base_delay": 0.01, "max_delay": 0.05, "poll_interval": 0.05}


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def notify_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="notify")
    return caplog


async def create_flight(database: Database) -> int:
    [flight_id] = await seed_flights(database, [("SU", "Москва", "Стамбул", DEPARTURE)], 50)
    return flight_id


async def commit_notifications(
    database: Database,
    flight_id: int,
    kind: NotificationKind,
    passenger_seats: list[tuple[Passenger, tuple[int, ...]]],
) -> None:
    """Write outbox rows through the engine's store, as the flight actor does (with pg_notify)."""
    rows = await database.fetch("SELECT id, seat FROM tickets WHERE flight_id = $1", flight_id)
    ticket_by_seat = {row["seat"]: row["id"] for row in rows}
    notifications = [
        Notification(kind, passenger, tuple(ticket_by_seat[seat] for seat in seats), seats)
        for passenger, seats in passenger_seats
    ]
    await PostgresFlightStore(database).commit(flight_id, Changes(notifications=notifications))


async def outbox_rows(database: Database) -> list[dict]:
    rows = await database.fetch(
        """
        SELECT o.id, o.flight_id, o.passenger_id, p.email, o.status, o.attempts, o.sent_at, o.last_error
        FROM outbox AS o JOIN passengers AS p ON p.id = o.passenger_id
        ORDER BY o.id
        """
    )
    return [dict(row) for row in rows]


async def rows_by_email(database: Database) -> dict[str, dict]:
    return {row["email"]: row for row in await outbox_rows(database)}


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not await condition():
            await trio.sleep(0.05)


def all_rows_in(database: Database, *statuses: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        rows = await outbox_rows(database)
        return bool(rows) and all(row["status"] in statuses for row in rows)

    return check


@asynccontextmanager
async def running(notifier: Notifier) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        yield
        nursery.cancel_scope.cancel()


def recipients(smtp_server: SmtpServer) -> Counter[str]:
    return Counter(address for received in smtp_server.handler.messages for address in received.recipients)


async def test_notifier_delivers_three_russian_emails(database, smtp_server, notify_logs):
    flight_id = await create_flight(database)
    notifier = Notifier(database, sender_from_url(smtp_server.url, MAIL_FROM), **FAST)

    async with running(notifier):
        await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, PASSENGER_SEATS)
        await wait_until(all_rows_in(database, "sent"))

    received = smtp_server.handler.messages
    assert len(received) == 3
    assert recipients(smtp_server) == Counter([IVAN.email, MARIA.email, JOHN.email])

    by_recipient = {item.recipients[0]: item for item in received}
    for passenger, seats in PASSENGER_SEATS:
        item = by_recipient[passenger.email]
        message = item.message
        name = f"{passenger.firstname} {passenger.lastname}"

        assert item.mail_from == "no-reply@tickets.example"
        assert message["Subject"] == f"Рейс SU Москва → Стамбул {DEPARTURE_UTC} отменён"
        assert str(message["From"]) == MAIL_FROM
        assert parseaddr(str(message["To"])) == (name, passenger.email)
        assert re.fullmatch(r"<[^<>@\s]+@tickets\.example>", message["Message-ID"])
        sent_at = parsedate_to_datetime(message["Date"])
        assert abs(sent_at - datetime.now(UTC)) < timedelta(minutes=5)

        plain = message.get_body(preferencelist=("plain",))
        assert plain.get_content_charset() == "utf-8"
        text = plain.get_content()
        assert f"Здравствуйте, {name}!" in text
        assert "Авиакомпания отменила рейс" in text
        assert "SU Москва → Стамбул" in text
        assert DEPARTURE_UTC in text
        assert ", ".join(str(seat) for seat in seats) in text
        html = message.get_body(preferencelist=("html",)).get_content()
        assert name in html

        # Transfer encodings keep the wire format ASCII, and no passport number appears.
        assert item.raw.isascii()
        assert passenger.pass_number not in message.as_string()

    assert by_recipient[IVAN.email].message.get_body(preferencelist=("plain",)).get_content().count("Места: 3, 4") == 1

    for row in await outbox_rows(database):
        assert row["status"] == "sent"
        assert row["sent_at"] is not None
        assert row["attempts"] == 1
    for passenger, _seats in PASSENGER_SEATS:
        assert passenger.pass_number not in notify_logs.text


async def test_notifier_renders_english(database, smtp_server):
    flight_id = await create_flight(database)
    notifier = Notifier(database, sender_from_url(smtp_server.url, MAIL_FROM), locale="en", **FAST)

    async with running(notifier):
        await commit_notifications(database, flight_id, NotificationKind.RESERVATION_RELEASED, [(JOHN, (9,))])
        await wait_until(all_rows_in(database, "sent"))

    [received] = smtp_server.handler.messages
    message = received.message
    assert message["Subject"] == f"Your reservation for flight SU Москва → Стамбул on {DEPARTURE_UTC} was released"
    assert message["Content-Language"] == "en"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Hello John Smith," in text
    assert "Ticket sales for this flight have closed, so your reservation was released." in text
    assert "Seat: 9" in text


async def test_notifier_wakes_on_notify(database, smtp_server):
    flight_id = await create_flight(database)
    # A poll interval far above the wait below: only NOTIFY can wake the notifier in time.
    notifier = Notifier(database, sender_from_url(smtp_server.url, MAIL_FROM), poll_interval=60.0)

    async with running(notifier):
        # Let the first claim (of an empty outbox) finish, so the rows below
        # arrive while the notifier waits.
        await trio.sleep(0.3)
        await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, [(MARIA, (7,))])
        await wait_until(all_rows_in(database, "sent"), timeout=5.0)

    assert recipients(smtp_server) == Counter([MARIA.email])


async def test_rejected_recipient_retried_then_failed(database, smtp_server, notify_logs):
    flight_id = await create_flight(database)
    smtp_server.handler.reject(MARIA.email, "550 mailbox unavailable")
    notifier = Notifier(database, sender_from_url(smtp_server.url, MAIL_FROM), max_attempts=3, **FAST)

    async with running(notifier):
        await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, PASSENGER_SEATS)
        await wait_until(all_rows_in(database, "sent", "failed"))

    rows = await rows_by_email(database)
    assert rows[IVAN.email]["status"] == "sent"
    assert rows[JOHN.email]["status"] == "sent"
    rejected = rows[MARIA.email]
    assert rejected["status"] == "failed"
    assert rejected["attempts"] == 3
    assert rejected["sent_at"] is None
    assert "550 mailbox unavailable" in rejected["last_error"]

    assert recipients(smtp_server) == Counter([IVAN.email, JOHN.email])
    assert smtp_server.handler.rcpt_attempts(MARIA.email) == 3

    retries = [record for record in notify_logs.records if "retrying in" in record.getMessage()]
    assert len(retries) == 2
    errors = [record.getMessage() for record in notify_logs.records if record.levelno == logging.ERROR]
    assert errors == [
        f"outbox {rejected['id']} (flight {flight_id}, passenger {rejected['passenger_id']}): "
        f"marked failed on attempt 3 of 3: SMTP server rejected recipient {MARIA.email}: 550 mailbox unavailable"
    ]


async def test_unrenderable_row_failed_at_once(database, smtp_server, notify_logs):
    flight_id = await create_flight(database)
    broken = Passenger("not an address@@", "4512000000", "Олег", "Сидоров")
    notifier = Notifier(database, sender_from_url(smtp_server.url, MAIL_FROM), **FAST)

    async with running(notifier):
        await commit_notifications(
            database, flight_id, NotificationKind.FLIGHT_CANCELED, [(broken, (5,)), (JOHN, (9,))]
        )
        await wait_until(all_rows_in(database, "sent", "failed"))

    rows = await rows_by_email(database)
    assert rows[JOHN.email]["status"] == "sent"
    failed = rows[broken.email]
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1
    assert failed["last_error"].startswith("cannot render the email: invalid recipient address")
    assert recipients(smtp_server) == Counter([JOHN.email])
    assert broken.pass_number not in notify_logs.text


async def test_cancel_during_send_then_restart(database, smtp_server):
    flight_id = await create_flight(database)
    sender = sender_from_url(smtp_server.url, MAIL_FROM)
    await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, PASSENGER_SEATS)
    smtp_server.handler.hold()

    first = Notifier(database, sender, concurrency=1, **FAST)
    stopped = trio.Event()
    scope = trio.CancelScope()

    async def run_first() -> None:
        with scope:
            await first.run()
        stopped.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_first)

        async def sending() -> bool:
            return smtp_server.handler.data_started == 1

        await wait_until(sending)
        scope.cancel()
        # The message in flight keeps the cancelled notifier running until it is accepted.
        await trio.sleep(0.2)
        assert not stopped.is_set()
        smtp_server.handler.release()
        with trio.fail_after(10):
            await stopped.wait()

    assert len(smtp_server.handler.messages) == 1
    [delivered] = smtp_server.handler.messages[0].recipients
    rows = await rows_by_email(database)
    assert rows[delivered]["status"] == "sent"
    unsent = [row for email, row in rows.items() if email != delivered]
    assert [row["status"] for row in unsent] == ["pending", "pending"]
    assert [row["attempts"] for row in unsent] == [0, 0]

    second = Notifier(database, sender, **FAST)
    async with running(second):
        await wait_until(all_rows_in(database, "sent"))

    assert recipients(smtp_server) == Counter([IVAN.email, MARIA.email, JOHN.email])


async def test_lapsed_claim_sent_once(database, smtp_server):
    flight_id = await create_flight(database)
    await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, PASSENGER_SEATS)
    # A notifier that claimed the rows and died before sending them.
    claim = await OutboxStore(database).claim(10, claim_timeout=1.5, max_attempts=8)
    assert len(claim.notices) == 3

    notifier = Notifier(database, sender_from_url(smtp_server.url, MAIL_FROM), **FAST)
    async with running(notifier):
        await trio.sleep(0.2)
        assert smtp_server.handler.messages == []
        await wait_until(all_rows_in(database, "sent"))

    assert recipients(smtp_server) == Counter([IVAN.email, MARIA.email, JOHN.email])
    assert [row["attempts"] for row in await outbox_rows(database)] == [2, 2, 2]


async def test_lapsed_last_attempt_marked_failed(database, smtp_server, notify_logs):
    flight_id = await create_flight(database)
    await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, [(JOHN, (9,))])
    claim = await OutboxStore(database).claim(10, claim_timeout=0.1, max_attempts=1)
    assert len(claim.notices) == 1

    notifier = Notifier(database, sender_from_url(smtp_server.url, MAIL_FROM), max_attempts=1, **FAST)
    async with running(notifier):
        await wait_until(all_rows_in(database, "failed"))

    [row] = await outbox_rows(database)
    assert row["attempts"] == 1
    assert row["last_error"].startswith("claim lapsed without a result")
    assert smtp_server.handler.messages == []
    errors = [record.getMessage() for record in notify_logs.records if record.levelno == logging.ERROR]
    assert errors == [
        f"outbox {row['id']} (flight {flight_id}, passenger {row['passenger_id']}) marked failed: "
        "its claim lapsed on the last of 1 attempts"
    ]


class HangingSender:
    """A sender whose send never returns, like an SMTP server that stops responding."""

    mail_from = MAIL_FROM

    def __init__(self) -> None:
        self.calls = 0

    def __str__(self) -> str:
        return "hanging://"

    async def send(self, message) -> None:
        self.calls += 1
        await trio.sleep_forever()


async def test_hung_send_bounded_by_claim(database, notify_logs):
    flight_id = await create_flight(database)
    await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, [(JOHN, (9,))])
    sender = HangingSender()
    notifier = Notifier(database, sender, max_attempts=2, claim_timeout=0.3, **FAST)

    async with running(notifier):
        await wait_until(all_rows_in(database, "failed"))

    [row] = await outbox_rows(database)
    assert row["attempts"] == 2
    assert row["last_error"].startswith("claim lapsed without a result")
    assert sender.calls == 2
    errors = [record.getMessage() for record in notify_logs.records if record.levelno == logging.ERROR]
    unfinished = (
        f"outbox {row['id']} (flight {flight_id}, passenger {row['passenger_id']}): "
        "delivery did not finish within the 0.3 s claim, so the row is due again when the claim lapses"
    )
    assert errors.count(unfinished) == 2


async def test_cancel_waits_at_most_claim_timeout(database):
    flight_id = await create_flight(database)
    await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, [(JOHN, (9,))])
    sender = HangingSender()
    notifier = Notifier(database, sender, claim_timeout=1.0, **FAST)

    async def sending() -> bool:
        return sender.calls == 1

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            await wait_until(sending)
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()

    assert trio.current_time() - cancelled_at < 1.5
    [row] = await outbox_rows(database)
    assert row["status"] == "pending"
    assert row["attempts"] == 1


async def test_two_notifiers_send_each_email_once(database, database_url, smtp_server):
    flight_id = await create_flight(database)
    passengers = [
        (Passenger(f"passenger{number}@example.com", f"P{number:06}", "Пётр", f"Пассажир{number}"), (number,))
        for number in range(1, 41)
    ]
    sender = sender_from_url(smtp_server.url, MAIL_FROM)
    other_database = await Database.open(database_url, min_size=1, max_size=5)
    try:
        async with running(Notifier(database, sender, concurrency=8, **FAST)):
            async with running(Notifier(other_database, sender, concurrency=8, **FAST)):
                await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, passengers)
                await wait_until(all_rows_in(database, "sent"))
    finally:
        await other_database.close()

    counts = recipients(smtp_server)
    assert len(counts) == 40
    assert set(counts.values()) == {1}
    assert {row["attempts"] for row in await outbox_rows(database)} == {1}


async def test_claim_skips_locked_row(database, smtp_server):
    flight_id = await create_flight(database)
    await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, PASSENGER_SEATS)
    locked_id = (await rows_by_email(database))[MARIA.email]["id"]
    locked = threading.Event()
    release = threading.Event()

    # Runs on the asyncio thread: keeps Maria's row locked, as a claim in
    # another process would, until the test releases it (at most 10 s).
    async def hold_lock(connection) -> None:
        async with connection.transaction():
            await connection.execute("SELECT id FROM outbox WHERE id = $1 FOR UPDATE", locked_id)
            locked.set()
            for _ in range(1000):
                if release.is_set():
                    break
                await asyncio.sleep(0.01)

    async def is_locked() -> bool:
        return locked.is_set()

    async def others_sent() -> bool:
        rows = await rows_by_email(database)
        return rows[IVAN.email]["status"] == rows[JOHN.email]["status"] == "sent"

    notifier = Notifier(database, sender_from_url(smtp_server.url, MAIL_FROM), **FAST)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(database.connection, hold_lock)
        await wait_until(is_locked)
        async with running(notifier):
            await wait_until(others_sent)
            locked_row = (await rows_by_email(database))[MARIA.email]
            assert locked_row["status"] == "pending"
            assert locked_row["attempts"] == 0
            assert recipients(smtp_server) == Counter([IVAN.email, JOHN.email])

            release.set()
            await wait_until(all_rows_in(database, "sent"))

    assert recipients(smtp_server) == Counter([IVAN.email, MARIA.email, JOHN.email])


class DatabaseProxy:
    """A TCP proxy on loopback in front of the test database, which a test can cut and restore.

    Cutting closes every proxied connection and makes new ones close at once,
    as when the database server goes away.
    """

    def __init__(self, target_url: str) -> None:
        self._target_url = target_url
        self.port = 0
        self.enabled = True
        self._scopes: set[trio.CancelScope] = set()

    @property
    def url(self) -> str:
        """The database URL through the proxy."""
        parts = urlsplit(self._target_url)
        query = urlencode([(name, value) for name, value in parse_qsl(parts.query) if name != "host"])
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))

    async def _open_target(self) -> trio.abc.Stream:
        parts = urlsplit(self._target_url)
        if parts.hostname:
            return await trio.open_tcp_stream(parts.hostname, parts.port or 5432)
        # The embedded server: a Unix socket in the folder named by ?host=.
        folder = dict(parse_qsl(parts.query))["host"]
        return await trio.open_unix_socket(f"{folder}/.s.PGSQL.{parts.port or 5432}")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._handle, listeners, task_status=task_status)

    def cut(self) -> None:
        self.enabled = False
        for scope in list(self._scopes):
            scope.cancel()

    def restore(self) -> None:
        self.enabled = True

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.enabled:
                return
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    async with await self._open_target() as server, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                        nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
                finally:
                    self._scopes.discard(scope)

    @staticmethod
    async def _pump(source: trio.abc.Stream, target: trio.abc.Stream, scope: trio.CancelScope) -> None:
        try:
            async for chunk in source:
                await target.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()


async def test_notifier_survives_database_outage(database, database_url, smtp_server, notify_logs):
    flight_id = await create_flight(database)
    proxy = DatabaseProxy(database_url)

    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        proxied = await Database.open(proxy.url, min_size=1, max_size=3, acquire_timeout=2.0)
        try:
            async with running(Notifier(proxied, sender_from_url(smtp_server.url, MAIL_FROM), **FAST)):
                proxy.cut()
                await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, PASSENGER_SEATS)

                async def claims_failed_twice() -> bool:
                    return notify_logs.text.count("cannot claim outbox rows") >= 2

                await wait_until(claims_failed_twice)
                assert smtp_server.handler.messages == []

                proxy.restore()
                await wait_until(all_rows_in(database, "sent"), timeout=20.0)
        finally:
            await proxied.close()
        nursery.cancel_scope.cancel()

    assert recipients(smtp_server) == Counter([IVAN.email, MARIA.email, JOHN.email])
    assert "outbox claims work again" in notify_logs.text
