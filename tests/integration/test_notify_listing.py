"""Listing recent outbox rows from the real database."""

from __future__ import annotations

from engine.seats import NotificationKind
from notify import format_notifications, recent_notifications

from .test_notify_notifier import IVAN, JOHN, MARIA, PASSENGER_SEATS, commit_notifications, create_flight


async def test_recent_notifications(database):
    flight_id = await create_flight(database)
    await commit_notifications(database, flight_id, NotificationKind.FLIGHT_CANCELED, PASSENGER_SEATS)
    await database.execute(
        "UPDATE outbox SET status = 'failed', attempts = 8, last_error = '550 mailbox unavailable' "
        "WHERE passenger_id = (SELECT id FROM passengers WHERE email = $1)",
        MARIA.email,
    )

    records = await recent_notifications(database, limit=2)

    assert [record.id for record in records] == [3, 2]
    assert all(record.flight_id == flight_id for record in records)
    assert all(record.kind == "flight_canceled" for record in records)
    by_recipient = {record.recipient: record for record in records}
    assert set(by_recipient) == {"m***@example.com", "j***@example.com"}
    failed = by_recipient["m***@example.com"]
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 8, "550 mailbox unavailable")
    assert by_recipient["j***@example.com"].status == "pending"

    table = format_notifications(await recent_notifications(database))
    assert len(table.splitlines()) == 4
    for passenger in (IVAN, MARIA, JOHN):
        assert passenger.email not in table
        assert passenger.pass_number not in table
    assert "550 mailbox unavailable" in table
