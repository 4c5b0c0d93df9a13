"""Seat rules of one flight: book, buy, cancel a reservation, expire holds.

Pure domain logic, no I/O. ``Flight`` changes its tickets in memory and
remembers what it changed since the last ``take_changes()``, so the actor can
write exactly those rows in one guarded transaction. A ticket moves through

    available --book--> booked --buy (same passenger)--> sold
    available --buy--> sold
    booked --cancel_reservation (same passenger)--> available
    booked --hold expires--> available
    sales closed: booked -> available; no new book or buy
    flight canceled: booked | sold -> canceled

A passenger is identified by email and document number together.
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .errors import (
    FlightCanceled,
    NotReservationOwner,
    SalesClosed,
    TicketNotBooked,
    TicketNotFound,
    TicketUnavailable,
)
from .idempotency import StoredResponse


class TicketStatus(enum.StrEnum):
    AVAILABLE = "available"
    BOOKED = "booked"
    SOLD = "sold"
    CANCELED = "canceled"


class FlightStatus(enum.StrEnum):
    ON_SALE = "on_sale"
    SALES_CLOSED = "sales_closed"
    CANCELED = "canceled"


class NotificationKind(enum.StrEnum):
    FLIGHT_CANCELED = "flight_canceled"
    RESERVATION_RELEASED = "reservation_released"


@dataclass(frozen=True, slots=True)
class PassengerIdentity:
    """A passenger's identity: email and document number, compared together."""

    email: str
    pass_number: str


@dataclass(frozen=True, slots=True)
class Passenger:
    email: str
    pass_number: str
    firstname: str
    lastname: str

    @property
    def identity(self) -> PassengerIdentity:
        return PassengerIdentity(self.email, self.pass_number)


@dataclass(frozen=True, slots=True)
class FlightInfo:
    """The flight's fixed description, as the airline published it."""

    id: int
    company: str
    departure: str
    arrival: str
    departure_time: datetime


@dataclass(slots=True)
class Ticket:
    id: int
    seat: int
    status: TicketStatus = TicketStatus.AVAILABLE
    holder: Passenger | None = None
    booked_until: datetime | None = None
    date_of_sale: datetime | None = None
    version: int = 0

    def held_by(self, passenger: Passenger) -> bool:
        return self.holder is not None and self.holder.identity == passenger.identity


@dataclass(frozen=True, slots=True)
class TicketView:
    """A ticket as it was when a command was decided."""

    id: int
    seat: int
    status: TicketStatus
    booked_until: datetime | None
    date_of_sale: datetime | None


@dataclass(frozen=True, slots=True)
class TicketChange:
    """One ticket row to write: its new state and the state the row must still have."""

    ticket: Ticket
    expected_status: TicketStatus
    expected_version: int


@dataclass(frozen=True, slots=True)
class Notification:
    """An email owed to one passenger about one event of this flight."""

    kind: NotificationKind
    passenger: Passenger
    ticket_ids: tuple[int, ...]
    seats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    event: str
    triggered_at: datetime


@dataclass(slots=True)
class Changes:
    """Everything a batch changed, to be written in one transaction."""

    tickets: list[TicketChange] = field(default_factory=list)
    flight_status: FlightStatus | None = None
    seats_available_delta: int = 0
    notifications: list[Notification] = field(default_factory=list)
    events: list[AppliedEvent] = field(default_factory=list)
    # Responses to store under the commands' Idempotency-Keys.
    responses: list[StoredResponse] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tickets or self.flight_status or self.notifications or self.events or self.responses)


class Flight:
    """A flight's seat map and sales status, with the rules that change them."""

    def __init__(self, info: FlightInfo, status: FlightStatus, tickets: list[Ticket]) -> None:
        self.info = info
        self.status = status
        self.tickets: dict[int, Ticket] = {ticket.id: ticket for ticket in tickets}
        self.seats_available = sum(1 for ticket in tickets if ticket.status is TicketStatus.AVAILABLE)
        self._holds: list[tuple[datetime, int]] = [
            (ticket.booked_until, ticket.id)
            for ticket in tickets
            if ticket.status is TicketStatus.BOOKED and ticket.booked_until is not None
        ]
        heapq.heapify(self._holds)
        self._originals: dict[int, tuple[TicketStatus, int]] = {}
        self._changes = Changes()
        self._available_at_start = self.seats_available

    @property
    def id(self) -> int:
        return self.info.id

    # Commands ------------------------------------------------------------

    def book(self, ticket_id: int, passenger: Passenger, now: datetime, hold: timedelta) -> TicketView:
        """Hold an available ticket for ``passenger`` until ``now + hold``."""
        ticket = self._ticket_for_sale(ticket_id, now)
        if ticket.status is not TicketStatus.AVAILABLE:
            raise TicketUnavailable(f"ticket {ticket_id} is {ticket.status}, not available")

        until = now + hold
        self._set(ticket, TicketStatus.BOOKED, passenger, booked_until=until)
        heapq.heappush(self._holds, (until, ticket.id))
        return self.view(ticket)

    def buy(self, ticket_id: int, passenger: Passenger, now: datetime) -> TicketView:
        """Sell an available ticket, or one that ``passenger`` holds, to ``passenger``."""
        ticket = self._ticket_for_sale(ticket_id, now)
        if ticket.status is TicketStatus.BOOKED and not ticket.held_by(passenger):
            raise TicketUnavailable(f"ticket {ticket_id} is booked by another passenger")
        if ticket.status not in (TicketStatus.AVAILABLE, TicketStatus.BOOKED):
            raise TicketUnavailable(f"ticket {ticket_id} is {ticket.status}, not available")

        self._set(ticket, TicketStatus.SOLD, passenger, date_of_sale=now)
        return self.view(ticket)

    def cancel_reservation(self, ticket_id: int, passenger: Passenger, now: datetime) -> TicketView:
        """Release the hold that ``passenger`` has on a ticket."""
        ticket = self._ticket(ticket_id)
        if self.status is FlightStatus.CANCELED:
            raise FlightCanceled(f"flight {self.id} is canceled")
        self._expire_if_due(ticket, now)
        if ticket.status is not TicketStatus.BOOKED:
            raise TicketNotBooked(f"ticket {ticket_id} is {ticket.status}, not booked")
        if not ticket.held_by(passenger):
            raise NotReservationOwner(f"ticket {ticket_id} is booked by another passenger")

        self._set(ticket, TicketStatus.AVAILABLE, None)
        return self.view(ticket)

    def release_expired(self, now: datetime) -> list[TicketView]:
        """Release every hold whose time has come; return the released tickets."""
        released = []
        while self._holds and self._holds[0][0] <= now:
            _, ticket_id = heapq.heappop(self._holds)
            ticket = self.tickets[ticket_id]
            if self._expire_if_due(ticket, now):
                released.append(self.view(ticket))
        return released

    def next_expiry(self) -> datetime | None:
        """Return when the earliest hold may lapse (possibly a hold already gone)."""
        return self._holds[0][0] if self._holds else None

    def close_sales(self, triggered_at: datetime) -> bool:
        """Close sales: release every hold and email its holder. Return False if already closed."""
        if self.status is not FlightStatus.ON_SALE:
            return False

        released: dict[PassengerIdentity, list[Ticket]] = {}
        for ticket in self.tickets.values():
            if ticket.status is TicketStatus.BOOKED:
                assert ticket.holder is not None
                released.setdefault(ticket.holder.identity, []).append(ticket)
        for tickets in released.values():
            self._notify(NotificationKind.RESERVATION_RELEASED, tickets)
            for ticket in tickets:
                self._set(ticket, TicketStatus.AVAILABLE, None)
        self._holds.clear()

        self._set_status(FlightStatus.SALES_CLOSED, "flight_ticket_sales_completed", triggered_at)
        return True

    def cancel(self, triggered_at: datetime) -> bool:
        """Cancel the flight: every booked or sold ticket becomes canceled. Return False if already canceled."""
        if self.status is FlightStatus.CANCELED:
            return False

        affected: dict[PassengerIdentity, list[Ticket]] = {}
        for ticket in self.tickets.values():
            if ticket.status in (TicketStatus.BOOKED, TicketStatus.SOLD):
                assert ticket.holder is not None
                affected.setdefault(ticket.holder.identity, []).append(ticket)
        for tickets in affected.values():
            self._notify(NotificationKind.FLIGHT_CANCELED, tickets)
            for ticket in tickets:
                self._set(ticket, TicketStatus.CANCELED, ticket.holder, keep_dates=True)
        self._holds.clear()

        self._set_status(FlightStatus.CANCELED, "flight_canceled", triggered_at)
        return True

    # Queries -------------------------------------------------------------

    def tickets_on_sale(self, now: datetime) -> list[TicketView]:
        """Tickets that can be booked or bought now, by seat; none unless on sale."""
        if self.status is not FlightStatus.ON_SALE:
            return []
        on_sale = []
        for ticket in self.tickets.values():
            if ticket.status is TicketStatus.AVAILABLE or (
                ticket.status is TicketStatus.BOOKED and ticket.booked_until is not None and ticket.booked_until <= now
            ):
                on_sale.append(TicketView(ticket.id, ticket.seat, TicketStatus.AVAILABLE, None, None))
        on_sale.sort(key=lambda view: view.seat)
        return on_sale

    @staticmethod
    def view(ticket: Ticket) -> TicketView:
        return TicketView(ticket.id, ticket.seat, ticket.status, ticket.booked_until, ticket.date_of_sale)

    # Change tracking -----------------------------------------------------

    def take_changes(self) -> Changes:
        """Return what changed since the last call, for writing; start a new change set."""
        changes = self._changes
        changes.tickets = [
            TicketChange(self.tickets[ticket_id], status, version)
            for ticket_id, (status, version) in self._originals.items()
        ]
        changes.seats_available_delta = self.seats_available - self._available_at_start
        self._changes = Changes()
        self._originals = {}
        self._available_at_start = self.seats_available
        return changes

    @staticmethod
    def mark_written(changes: Changes) -> None:
        """Advance the versions of the written tickets, as the UPDATE did in the database."""
        for change in changes.tickets:
            change.ticket.version = change.expected_version + 1

    # Internals -----------------------------------------------------------

    def _ticket(self, ticket_id: int) -> Ticket:
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise TicketNotFound(f"ticket {ticket_id} does not exist on flight {self.id}")
        return ticket

    def _ticket_for_sale(self, ticket_id: int, now: datetime) -> Ticket:
        ticket = self._ticket(ticket_id)
        if self.status is FlightStatus.CANCELED:
            raise FlightCanceled(f"flight {self.id} is canceled")
        if self.status is FlightStatus.SALES_CLOSED:
            raise SalesClosed(f"sales of flight {self.id} are closed")
        self._expire_if_due(ticket, now)
        return ticket

    def _expire_if_due(self, ticket: Ticket, now: datetime) -> bool:
        if ticket.status is TicketStatus.BOOKED and ticket.booked_until is not None and ticket.booked_until <= now:
            self._set(ticket, TicketStatus.AVAILABLE, None)
            return True
        return False

    def _set(
        self,
        ticket: Ticket,
        status: TicketStatus,
        holder: Passenger | None,
        *,
        booked_until: datetime | None = None,
        date_of_sale: datetime | None = None,
        keep_dates: bool = False,
    ) -> None:
        self._originals.setdefault(ticket.id, (ticket.status, ticket.version))
        if ticket.status is TicketStatus.AVAILABLE:
            self.seats_available -= 1
        if status is TicketStatus.AVAILABLE:
            self.seats_available += 1
        ticket.status = status
        ticket.holder = holder
        if not keep_dates:
            ticket.booked_until = booked_until
            ticket.date_of_sale = date_of_sale

    def _notify(self, kind: NotificationKind, tickets: list[Ticket]) -> None:
        passenger = tickets[0].holder
        assert passenger is not None
        ordered = sorted(tickets, key=lambda ticket: ticket.seat)
        self._changes.notifications.append(
            Notification(
                kind,
                passenger,
                tuple(ticket.id for ticket in ordered),
                tuple(ticket.seat for ticket in ordered),
            )
        )

    def _set_status(self, status: FlightStatus, event: str, triggered_at: datetime) -> None:
        self.status = status
        self._changes.flight_status = status
        self._changes.events.append(AppliedEvent(event, triggered_at))
