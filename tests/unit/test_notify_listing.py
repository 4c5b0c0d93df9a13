"""Operator listing of the outbox: masked recipients and the text table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from notify.listing import NotificationRecord, format_notifications, mask_email


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("ivan@mail.com", "i***@mail.com"),
        ("a@example.org", "a***@example.org"),
        ("first.last+tag@sub.example.com", "f***@sub.example.com"),
        ("not-an-address", "***"),
    ],
)
def test_mask_email(email, masked):
    assert mask_email(email) == masked


def make_record(**changes) -> NotificationRecord:
    values = dict(
        id=7,
        created_at=datetime(2030, 5, 1, 15, 30, 5, tzinfo=timezone(timedelta(hours=3))),
        kind="flight_canceled",
        flight_id=12,
        passenger_id=3,
        recipient="i***@mail.com",
        status="pending",
        attempts=2,
        next_attempt_at=datetime(2030, 5, 1, 12, 31, tzinfo=UTC),
        sent_at=None,
        last_error="SMTP server rejected recipient ivan@mail.com: 550 mailbox unavailable\nsecond line",
    )
    values.update(changes)
    return NotificationRecord(**values)


def test_table_layout():
    records = [
        make_record(),
        make_record(id=6, kind="reservation_released", status="sent", attempts=1, last_error=None),
    ]

    lines = format_notifications(records).splitlines()

    assert len(lines) == 3
    assert lines[0].split() == ["ID", "CREATED", "(UTC)", "KIND", "FLIGHT", "RECIPIENT", "STATUS", "ATTEMPTS", "LAST", "ERROR"]
    assert lines[1].startswith("7   2030-05-01 12:30:05  flight_canceled       12      i***@mail.com  pending  2")
    assert lines[2].split()[-1] == "-"
    assert lines[0].index("STATUS") == lines[1].index("pending") == lines[2].index("sent")


def test_table_shortens_long_errors():
    line = format_notifications([make_record(last_error="x" * 500)]).splitlines()[1]

    assert line.endswith("x" * 57 + "...")


def test_table_puts_error_on_one_line():
    text = format_notifications([make_record(last_error="451 try again\n  later")])

    assert len(text.splitlines()) == 2
    assert text.splitlines()[1].endswith("451 try again later")


def test_empty_table():
    assert format_notifications([]) == "no notifications\n"
