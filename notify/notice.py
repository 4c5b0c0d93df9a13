"""One claimed outbox row with the flight and passenger details its email needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.seats import NotificationKind


@dataclass(frozen=True, slots=True)
class Notice:
    """An email owed to one passenger, as read from the outbox, flights and passengers tables.

    It carries no passport number, so neither an email nor a log line built
    from it can contain one.
    """

    outbox_id: int
    kind: NotificationKind
    flight_id: int
    company: str
    departure: str
    arrival: str
    departure_time: datetime
    passenger_id: int
    email: str
    firstname: str
    lastname: str
    seats: tuple[int, ...]
    ticket_ids: tuple[int, ...]
    # The value of outbox.attempts after this claim: 1 on the first try.
    attempts: int
