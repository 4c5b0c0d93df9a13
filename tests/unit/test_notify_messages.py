"""Email rendering: headers, bodies and languages, without sending anything."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

import pytest

from engine.seats import NotificationKind
from notify import Notice, render_message
from notify.messages import format_departure_time, message_id_domain

MAIL_FROM = "Билеты Tickets <no-reply@tickets.example>"
NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def make_notice(**changes) -> Notice:
    values = dict(
        outbox_id=42,
        kind=NotificationKind.FLIGHT_CANCELED,
        flight_id=5,
        company="SU",
        departure="Москва",
        arrival="Стамбул",
        departure_time=datetime(2030, 5, 17, 6, 45, tzinfo=UTC),
        passenger_id=9,
        email="ivan.petrov@example.com",
        firstname="Иван",
        lastname="Петров",
        seats=(3, 4),
        ticket_ids=(103, 104),
        attempts=1,
    )
    values.update(changes)
    return Notice(**values)


def render(notice: Notice | None = None, **options):
    """Render, serialize and parse back, as a mail client would see the message."""
    message = render_message(notice or make_notice(), mail_from=MAIL_FROM, now=NOW, **options)
    raw = message.as_bytes()
    return BytesParser(policy=policy.default).parsebytes(raw), raw


def plain_text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_text(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


SUBJECTS = [
    ("ru", NotificationKind.FLIGHT_CANCELED, "Рейс SU Москва → Стамбул 2030-05-17 06:45 UTC отменён"),
    ("ru", NotificationKind.RESERVATION_RELEASED, "Бронирование на рейс SU Москва → Стамбул 2030-05-17 06:45 UTC снято"),
    ("en", NotificationKind.FLIGHT_CANCELED, "Flight SU Москва → Стамбул on 2030-05-17 06:45 UTC is canceled"),
    (
        "en",
        NotificationKind.RESERVATION_RELEASED,
        "Your reservation for flight SU Москва → Стамбул on 2030-05-17 06:45 UTC was released",
    ),
]


@pytest.mark.parametrize(("locale", "kind", "subject"), SUBJECTS)
def test_subject_per_locale_and_kind(locale, kind, subject):
    message, _raw = render(make_notice(kind=kind), locale=locale)

    assert message["Subject"] == subject
    assert message["Content-Language"] == locale


LEADS = [
    ("ru", NotificationKind.FLIGHT_CANCELED, "Авиакомпания отменила рейс, поэтому ваши билеты на него отменены."),
    ("ru", NotificationKind.RESERVATION_RELEASED, "Продажа билетов на рейс закрыта, поэтому ваше бронирование снято."),
    ("en", NotificationKind.FLIGHT_CANCELED, "The airline canceled this flight, so your tickets for it are canceled."),
    (
        "en",
        NotificationKind.RESERVATION_RELEASED,
        "Ticket sales for this flight have closed, so your reservation was released.",
    ),
]


@pytest.mark.parametrize(("locale", "kind", "lead"), LEADS)
def test_body_states_what_happened(locale, kind, lead):
    message, _raw = render(make_notice(kind=kind), locale=locale)

    assert lead in plain_text(message)
    assert lead in html_text(message)


def test_russian_is_default():
    message, _raw = render()

    text = plain_text(message)
    assert text.startswith("Здравствуйте, Иван Петров!\n")
    assert "Рейс: SU Москва → Стамбул\n" in text
    assert "Вылет: 2030-05-17 06:45 UTC\n" in text
    assert "Места: 3, 4\n" in text
    assert "отвечать на него не нужно" in text


def test_english_body():
    message, _raw = render(locale="en")

    text = plain_text(message)
    assert text.startswith("Hello Иван Петров,\n")
    assert "Flight: SU Москва → Стамбул\n" in text
    assert "Departure: 2030-05-17 06:45 UTC\n" in text
    assert "Seats: 3, 4\n" in text


@pytest.mark.parametrize(("locale", "line"), [("ru", "Место: 12\n"), ("en", "Seat: 12\n")])
def test_single_seat_label(locale, line):
    message, _raw = render(make_notice(seats=(12,)), locale=locale)

    assert line in plain_text(message)


def test_headers():
    message, _raw = render()

    assert str(message["From"]) == MAIL_FROM
    assert message["To"].addresses[0].display_name == "Иван Петров"
    assert message["To"].addresses[0].addr_spec == "ivan.petrov@example.com"
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert re.fullmatch(r"<[^<>@\s]+\.outbox42@tickets\.example>", message["Message-ID"])
    assert message["Auto-Submitted"] == "auto-generated"


def test_message_ids_unique():
    first, _raw = render()
    second, _raw = render()

    assert first["Message-ID"] != second["Message-ID"]


def test_mime_structure_and_charset():
    message, raw = render()

    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    for part in message.iter_parts():
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("base64", "quoted-printable")


def test_wire_format_is_ascii():
    _message, raw = render()

    assert raw.isascii()
    assert b"=?utf-8?" in raw


def test_departure_time_shown_in_utc():
    moscow = timezone(timedelta(hours=3))
    message, _raw = render(make_notice(departure_time=datetime(2030, 5, 17, 9, 45, tzinfo=moscow)))

    assert "Вылет: 2030-05-17 06:45 UTC" in plain_text(message)


def test_html_escapes_values():
    notice = make_notice(firstname="<b>Ivan</b>", lastname="O'Neil & Co", departure="A<B")

    message, _raw = render(notice, locale="en")

    html = html_text(message)
    assert "&lt;b&gt;Ivan&lt;/b&gt; O&#x27;Neil &amp; Co" in html
    assert "A&lt;B" in html
    assert "<b>Ivan</b>" not in html


def test_unknown_locale_raises():
    with pytest.raises(ValueError, match="unsupported email locale 'de': expected one of ru, en"):
        render_message(make_notice(), mail_from=MAIL_FROM, locale="de")


def test_invalid_recipient_raises():
    with pytest.raises(ValueError, match="invalid recipient address 'not an address@@'"):
        render_message(make_notice(email="not an address@@"), mail_from=MAIL_FROM)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2030, 1, 2, 3, 4, 59, tzinfo=UTC), "2030-01-02 03:04 UTC"),
        (datetime(2030, 1, 2, 1, 30, tzinfo=timezone(timedelta(hours=5))), "2030-01-01 20:30 UTC"),
        (datetime(2030, 1, 2, 3, 4), "2030-01-02 03:04 UTC"),
    ],
)
def test_format_departure_time(moment, expected):
    assert format_departure_time(moment) == expected


@pytest.mark.parametrize(
    ("mail_from", "domain"),
    [
        ("Tickets <no-reply@tickets.example>", "tickets.example"),
        ("no-reply@mail.example.org", "mail.example.org"),
        ("no-reply", "tickets.invalid"),
    ],
)
def test_message_id_domain(mail_from, domain):
    assert message_id_domain(mail_from) == domain
