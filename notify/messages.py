"""Render a passenger email for one outbox row, in Russian or English.

Each message has a plain-text body and an HTML alternative, both UTF-8.
The message policy is 7-bit (``cte_type="7bit"``): non-ASCII bodies get a
quoted-printable or base64 transfer encoding and non-ASCII headers get
RFC 2047 encoded words, so any SMTP server accepts the message without the
8BITMIME or SMTPUTF8 extensions. The exception is a recipient address with
non-ASCII characters, which smtplib can send only with SMTPUTF8.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from engine.seats import NotificationKind

from .notice import Notice

LOCALES = ("ru", "en")
DEFAULT_LOCALE = "ru"

MESSAGE_POLICY = policy.default.clone(cte_type="7bit")

# Used in Message-ID when the From address has no domain.
FALLBACK_DOMAIN = "tickets.invalid"


@dataclass(frozen=True, slots=True)
class _Texts:
    """The fixed wording of the emails in one language."""

    subjects: dict[NotificationKind, str]
    leads: dict[NotificationKind, str]
    greeting: str
    flight_label: str
    departure_label: str
    seat_label: str
    seats_label: str
    footer: str


_TEXTS = {
    "ru": _Texts(
        subjects={
            NotificationKind.FLIGHT_CANCELED: "Рейс {flight} {departure_time} отменён",
            NotificationKind.RESERVATION_RELEASED: "Бронирование на рейс {flight} {departure_time} снято",
        },
        leads={
            NotificationKind.FLIGHT_CANCELED: "Авиакомпания отменила рейс, поэтому ваши билеты на него отменены.",
            NotificationKind.RESERVATION_RELEASED: (
                "Продажа билетов на рейс закрыта, поэтому ваше бронирование снято."
            ),
        },
        greeting="Здравствуйте, {name}!",
        flight_label="Рейс",
        departure_label="Вылет",
        seat_label="Место",
        seats_label="Места",
        footer="Это письмо отправлено автоматически, отвечать на него не нужно.",
    ),
    "en": _Texts(
        subjects={
            NotificationKind.FLIGHT_CANCELED: "Flight {flight} on {departure_time} is canceled",
            NotificationKind.RESERVATION_RELEASED: "Your reservation for flight {flight} on {departure_time} was released",
        },
        leads={
            NotificationKind.FLIGHT_CANCELED: "The airline canceled this flight, so your tickets for it are canceled.",
            NotificationKind.RESERVATION_RELEASED: (
                "Ticket sales for this flight have closed, so your reservation was released."
            ),
        },
        greeting="Hello {name},",
        flight_label="Flight",
        departure_label="Departure",
        seat_label="Seat",
        seats_label="Seats",
        footer="This email was sent automatically. Please do not reply to it.",
    ),
}


def validate_locale(locale: str) -> str:
    """Return ``locale`` if emails can be rendered in it, otherwise raise ValueError."""
    if locale not in _TEXTS:
        raise ValueError(f"unsupported email locale {locale!r}: expected one of {', '.join(LOCALES)}")
    return locale


def format_departure_time(moment: datetime) -> str:
    """Format a time as UTC ``YYYY-MM-DD HH:MM UTC``. A naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def message_id_domain(mail_from: str) -> str:
    """Return the domain of the From address, used to keep Message-IDs under one domain."""
    _name, address = parseaddr(mail_from)
    _local, at, domain = address.rpartition("@")
    return domain if at and domain else FALLBACK_DOMAIN


def render_message(
    notice: Notice, *, mail_from: str, locale: str = DEFAULT_LOCALE, now: datetime | None = None
) -> EmailMessage:
    """Build the email for ``notice``: headers, a plain-text body and an HTML alternative.

    Raises ValueError for an unsupported locale or a recipient address that
    cannot be put in a To header.
    """
    texts = _TEXTS[validate_locale(locale)]
    name = f"{notice.firstname} {notice.lastname}"
    flight = f"{notice.company} {notice.departure} → {notice.arrival}"
    departure_time = format_departure_time(notice.departure_time)
    seats = ", ".join(str(seat) for seat in notice.seats)
    seat_label = texts.seat_label if len(notice.seats) == 1 else texts.seats_label
    lead = texts.leads[notice.kind]
    greeting = texts.greeting.format(name=name)
    details = [
        (texts.flight_label, flight),
        (texts.departure_label, departure_time),
        (seat_label, seats),
    ]

    message = EmailMessage(policy=MESSAGE_POLICY)
    message["Subject"] = texts.subjects[notice.kind].format(flight=flight, departure_time=departure_time)
    message["From"] = mail_from
    try:
        message["To"] = Address(display_name=name, addr_spec=notice.email)
    except (ValueError, HeaderParseError) as error:
        raise ValueError(f"invalid recipient address {notice.email!r}: {error}") from None
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = make_msgid(idstring=f"outbox{notice.outbox_id}", domain=message_id_domain(mail_from))
    # RFC 3834: well-behaved responders (vacation notices) send no auto-reply to such a message.
    message["Auto-Submitted"] = "auto-generated"

    message.set_content(_plain_text(greeting, lead, details, texts.footer), charset="utf-8")
    message.add_alternative(_html(locale, greeting, lead, details, texts.footer), subtype="html", charset="utf-8")
    # Added last because set_content removes every Content-* header.
    message["Content-Language"] = locale
    return message


def _plain_text(greeting: str, lead: str, details: list[tuple[str, str]], footer: str) -> str:
    lines = [greeting, "", lead, ""]
    lines += [f"{label}: {value}" for label, value in details]
    lines += ["", footer]
    return "\n".join(lines) + "\n"


def _html(locale: str, greeting: str, lead: str, details: list[tuple[str, str]], footer: str) -> str:
    rows = "\n".join(
        f"<tr><th align=\"left\">{html.escape(label)}</th><td>{html.escape(value)}</td></tr>" for label, value in details
    )
    return (
        f"<!DOCTYPE html>\n<html lang=\"{locale}\">\n<head><meta charset=\"utf-8\"></head>\n<body>\n"
        f"<p>{html.escape(greeting)}</p>\n"
        f"<p>{html.escape(lead)}</p>\n"
        f"<table>\n{rows}\n</table>\n"
        f"<p><small>{html.escape(footer)}</small></p>\n"
        "</body>\n</html>\n"
    )
