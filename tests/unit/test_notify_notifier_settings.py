"""Notifier settings checks and outbox row parsing, without a database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from engine.seats import NotificationKind
from notify import Notifier
from notify.outbox import _notice
from notify.senders import ConsoleSender

SENDER = ConsoleSender(mail_from="Tickets <no-reply@tickets.example>")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"locale": "de"}, "unsupported email locale 'de'"),
        ({"concurrency": 0}, "concurrency must be >= 1, got 0"),
        ({"max_attempts": 0}, "max_attempts must be >= 1, got 0"),
        ({"base_delay": 0}, "base_delay must be > 0 seconds, got 0"),
        ({"base_delay": 2.0, "max_delay": 1.0}, r"max_delay must be >= base_delay \(2.0\), got 1.0"),
        ({"claim_timeout": 0}, "claim_timeout must be > 0 seconds, got 0"),
        ({"poll_interval": -1}, "poll_interval must be > 0 seconds, got -1"),
    ],
)
def test_invalid_settings_raise(options, message):
    with pytest.raises(ValueError, match=message):
        Notifier(None, SENDER, **options)


def test_defaults_accepted():
    Notifier(None, SENDER)


def claimed_row(payload: object) -> dict:
    return {
        "id": 1,
        "kind": "reservation_released",
        "flight_id": 2,
        "passenger_id": 3,
        "payload": payload,
        "attempts": 1,
        "company": "SU",
        "departure": "Москва",
        "arrival": "Стамбул",
        "departure_time": datetime(2030, 5, 17, 6, 45, tzinfo=UTC),
        "email": "ivan@mail.com",
        "firstname": "Иван",
        "lastname": "Петров",
    }


def test_notice_from_engine_payload():
    notice = _notice(claimed_row(json.dumps({"ticket_ids": [11, 12], "seats": [3, 4]})))

    assert notice.kind is NotificationKind.RESERVATION_RELEASED
    assert notice.seats == (3, 4)
    assert notice.ticket_ids == (11, 12)


@pytest.mark.parametrize("payload", ["[1, 2]", '{"seats": 5}', "{}", '"text"'])
def test_notice_tolerates_unexpected_payload(payload):
    notice = _notice(claimed_row(payload))

    assert notice.outbox_id == 1
    assert notice.seats == ()
