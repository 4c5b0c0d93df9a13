"""Commands a flight actor accepts, their replies, and how each is decided."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .seats import Flight, FlightInfo, Passenger, TicketView


@dataclass(frozen=True, slots=True)
class Book:
    ticket_id: int
    passenger: Passenger


@dataclass(frozen=True, slots=True)
class Buy:
    ticket_id: int
    passenger: Passenger


@dataclass(frozen=True, slots=True)
class CancelReservation:
    ticket_id: int
    passenger: Passenger


@dataclass(frozen=True, slots=True)
class ListTickets:
    """Read the tickets on sale; the reply comes after the batch it lands in commits."""


@dataclass(frozen=True, slots=True)
class CloseSales:
    triggered_at: datetime


@dataclass(frozen=True, slots=True)
class CancelFlight:
    triggered_at: datetime


Command = Book | Buy | CancelReservation | ListTickets | CloseSales | CancelFlight


@dataclass(frozen=True, slots=True)
class SeatReply:
    """The outcome of book, buy or cancel-reservation."""

    flight: FlightInfo
    ticket: TicketView
    passenger: Passenger


@dataclass(frozen=True, slots=True)
class TicketsReply:
    flight: FlightInfo
    tickets: list[TicketView]


@dataclass(frozen=True, slots=True)
class EventReply:
    """``applied`` is False when the event had already been applied (a replay)."""

    applied: bool


Reply = SeatReply | TicketsReply | EventReply


def decide(flight: Flight, command: Command, now: datetime, hold: timedelta) -> Reply:
    """Apply one command to the flight in memory; raise SeatRuleViolation to reject it."""
    match command:
        case Buy(ticket_id, passenger):
            return SeatReply(flight.info, flight.buy(ticket_id, passenger, now), passenger)
        case Book(ticket_id, passenger):
            return SeatReply(flight.info, flight.book(ticket_id, passenger, now, hold), passenger)
        case CancelReservation(ticket_id, passenger):
            return SeatReply(flight.info, flight.cancel_reservation(ticket_id, passenger, now), passenger)
        case ListTickets():
            return TicketsReply(flight.info, flight.tickets_on_sale(now))
        case CloseSales(triggered_at):
            return EventReply(flight.close_sales(triggered_at))
        case CancelFlight(triggered_at):
            return EventReply(flight.cancel(triggered_at))
    raise TypeError(f"unknown command {command!r}")
