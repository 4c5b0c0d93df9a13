"""List recent outbox rows for operators, with masked recipient addresses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from persistence.database import Database

_RECENT = """
SELECT o.id, o.created_at, o.kind, o.flight_id, o.passenger_id, p.email,
       o.status, o.attempts, o.next_attempt_at, o.sent_at, o.last_error
FROM outbox AS o JOIN passengers AS p ON p.id = o.passenger_id
ORDER BY o.id DESC
LIMIT $1
"""

# Maximum length of the last_error shown in the table, in characters. The full text stays in the database.
MAX_TABLE_ERROR_LENGTH = 60


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One outbox row as shown to operators: no passport number, recipient masked."""

    id: int
    created_at: datetime
    kind: str
    flight_id: int
    passenger_id: int
    recipient: str
    status: str
    attempts: int
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None


def mask_email(email: str) -> str:
    """Keep the first character of the local part and the domain: ``ivan@mail.com`` -> ``i***@mail.com``."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


async def recent_notifications(database: Database, limit: int = 50) -> list[NotificationRecord]:
    """Return the ``limit`` newest outbox rows, newest first."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    rows = await database.fetch(_RECENT, limit)
    return [
        NotificationRecord(
            id=row["id"],
            created_at=row["created_at"],
            kind=row["kind"],
            flight_id=row["flight_id"],
            passenger_id=row["passenger_id"],
            recipient=mask_email(row["email"]),
            status=row["status"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            sent_at=row["sent_at"],
            last_error=row["last_error"],
        )
        for row in rows
    ]


def format_notifications(records: list[NotificationRecord]) -> str:
    """Format records as a plain-text table with aligned columns. Times are UTC."""
    if not records:
        return "no notifications\n"
    header = ("ID", "CREATED (UTC)", "KIND", "FLIGHT", "RECIPIENT", "STATUS", "ATTEMPTS", "LAST ERROR")
    rows = [header] + [
        (
            str(record.id),
            _format_time(record.created_at),
            record.kind,
            str(record.flight_id),
            record.recipient,
            record.status,
            str(record.attempts),
            _shorten(record.last_error),
        )
        for record in records
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _shorten(error: str | None) -> str:
    if not error:
        return "-"
    text = " ".join(error.split())
    if len(text) > MAX_TABLE_ERROR_LENGTH:
        return text[: MAX_TABLE_ERROR_LENGTH - 3] + "..."
    return text
