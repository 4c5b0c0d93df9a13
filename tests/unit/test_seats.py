"""Seat rules of ``engine.seats.Flight``: every transition and every rejection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import (
    FlightCanceled,
    NotReservationOwner,
    SalesClosed,
    TicketNotBooked,
    TicketNotFound,
    TicketUnavailable,
)
from engine.seats import (
    AppliedEvent,
    Flight,
    FlightInfo,
    FlightStatus,
    NotificationKind,
    Passenger,
    Ticket,
    TicketStatus,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOLD = timedelta(minutes=15)
IVAN = Passenger("ivan@mail.com", "4322-22-333-45", "Ivan", "Ivanov")
ANNA = Passenger("anna@mail.com", "1111-11-111-11", "Anna", "Petrova")
# Ivan's email with another document: a different passenger.
IVAN_OTHER_PASS = Passenger("ivan@mail.com", "9999-99-999-99", "Ivan", "Ivanov")
# Ivan's email and document under other names: the same passenger.
IVAN_RENAMED = Passenger("ivan@mail.com", "4322-22-333-45", "Vanya", "Ivanoff")

FIRST_TICKET = 101


def make_flight(seats: int = 5, status: FlightStatus = FlightStatus.ON_SALE, version: int = 0) -> Flight:
    """A flight with tickets 101, 102, ... on seats 1, 2, ..., all available."""
    info = FlightInfo(7, "SU", "Moscow", "Berlin", NOW + timedelta(days=3))
    tickets = [Ticket(id=FIRST_TICKET + seat - 1, seat=seat, version=version) for seat in range(1, seats + 1)]
    return Flight(info, status, tickets)


def ticket_in_state(flight: Flight, ticket_id: int, state: str) -> None:
    """Put a ticket into a lifecycle state through the rules, then forget the changes."""
    if state == "booked":
        flight.book(ticket_id, IVAN, NOW, HOLD)
    elif state == "sold":
        flight.buy(ticket_id, IVAN, NOW)
    elif state == "canceled":
        # Only a canceled flight has canceled tickets, and it rejects commands
        # before any ticket rule runs; set the state directly to reach the rule.
        ticket = flight.tickets[ticket_id]
        ticket.status, ticket.holder, ticket.date_of_sale = TicketStatus.CANCELED, IVAN, NOW
        flight.seats_available -= 1
    flight.take_changes()


# Book ------------------------------------------------------------------


def test_book_available():
    flight = make_flight()

    view = flight.book(FIRST_TICKET, IVAN, NOW, HOLD)

    assert view.status is TicketStatus.BOOKED
    assert view.booked_until == NOW + HOLD
    assert view.date_of_sale is None
    assert flight.tickets[FIRST_TICKET].holder == IVAN
    assert flight.seats_available == 4
    assert flight.next_expiry() == NOW + HOLD


@pytest.mark.parametrize("state", ["booked", "sold", "canceled"])
def test_book_unavailable(state):
    flight = make_flight()
    ticket_in_state(flight, FIRST_TICKET, state)

    with pytest.raises(TicketUnavailable):
        flight.book(FIRST_TICKET, ANNA, NOW, HOLD)

    assert not flight.take_changes()
    assert flight.tickets[FIRST_TICKET].holder == IVAN


def test_book_unknown_ticket():
    flight = make_flight()

    with pytest.raises(TicketNotFound):
        flight.book(999, IVAN, NOW, HOLD)


# Buy -------------------------------------------------------------------


def test_buy_available():
    flight = make_flight()

    view = flight.buy(FIRST_TICKET, IVAN, NOW)

    assert view.status is TicketStatus.SOLD
    assert view.date_of_sale == NOW
    assert view.booked_until is None
    assert flight.tickets[FIRST_TICKET].holder == IVAN
    assert flight.seats_available == 4


def test_buy_own_reservation():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)

    view = flight.buy(FIRST_TICKET, IVAN, NOW + timedelta(minutes=1))

    assert view.status is TicketStatus.SOLD
    assert view.date_of_sale == NOW + timedelta(minutes=1)
    assert view.booked_until is None
    assert flight.seats_available == 4


def test_buy_others_reservation():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.take_changes()

    with pytest.raises(TicketUnavailable):
        flight.buy(FIRST_TICKET, ANNA, NOW)

    assert flight.tickets[FIRST_TICKET].status is TicketStatus.BOOKED
    assert flight.tickets[FIRST_TICKET].holder == IVAN
    assert not flight.take_changes()


@pytest.mark.parametrize("buyer", [IVAN, ANNA], ids=["same", "other"])
def test_buy_sold(buyer):
    flight = make_flight()
    flight.buy(FIRST_TICKET, IVAN, NOW)
    flight.take_changes()

    with pytest.raises(TicketUnavailable):
        flight.buy(FIRST_TICKET, buyer, NOW)

    assert not flight.take_changes()


def test_buy_canceled_ticket():
    flight = make_flight()
    ticket_in_state(flight, FIRST_TICKET, "canceled")

    with pytest.raises(TicketUnavailable):
        flight.buy(FIRST_TICKET, ANNA, NOW)


def test_buy_unknown_ticket():
    flight = make_flight()

    with pytest.raises(TicketNotFound):
        flight.buy(999, IVAN, NOW)


# Cancel a reservation --------------------------------------------------


def test_cancel_own_reservation():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)

    view = flight.cancel_reservation(FIRST_TICKET, IVAN, NOW)

    assert view.status is TicketStatus.AVAILABLE
    assert view.booked_until is None
    assert flight.tickets[FIRST_TICKET].holder is None
    assert flight.seats_available == 5


def test_cancel_others_reservation():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.take_changes()

    with pytest.raises(NotReservationOwner):
        flight.cancel_reservation(FIRST_TICKET, ANNA, NOW)

    assert flight.tickets[FIRST_TICKET].status is TicketStatus.BOOKED
    assert not flight.take_changes()


@pytest.mark.parametrize("state", ["available", "sold"])
def test_cancel_not_booked(state):
    flight = make_flight()
    ticket_in_state(flight, FIRST_TICKET, state)

    with pytest.raises(TicketNotBooked):
        flight.cancel_reservation(FIRST_TICKET, IVAN, NOW)

    assert not flight.take_changes()


def test_cancel_unknown_ticket():
    flight = make_flight()

    with pytest.raises(TicketNotFound):
        flight.cancel_reservation(999, IVAN, NOW)


# Passenger identity ----------------------------------------------------


def test_identity_other_pass_number_cannot_buy():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)

    with pytest.raises(TicketUnavailable):
        flight.buy(FIRST_TICKET, IVAN_OTHER_PASS, NOW)


def test_identity_other_pass_number_cannot_cancel():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)

    with pytest.raises(NotReservationOwner):
        flight.cancel_reservation(FIRST_TICKET, IVAN_OTHER_PASS, NOW)


def test_identity_ignores_names_on_buy():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)

    view = flight.buy(FIRST_TICKET, IVAN_RENAMED, NOW)

    assert view.status is TicketStatus.SOLD


def test_identity_ignores_names_on_cancel():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)

    view = flight.cancel_reservation(FIRST_TICKET, IVAN_RENAMED, NOW)

    assert view.status is TicketStatus.AVAILABLE


# Holds that expire -----------------------------------------------------


def test_hold_blocks_others_until_expiry():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)

    with pytest.raises(TicketUnavailable):
        flight.book(FIRST_TICKET, ANNA, NOW + HOLD - timedelta(microseconds=1), HOLD)


def test_expired_hold_bookable_by_others():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.take_changes()

    view = flight.book(FIRST_TICKET, ANNA, NOW + HOLD, HOLD)

    assert view.status is TicketStatus.BOOKED
    assert view.booked_until == NOW + 2 * HOLD
    assert flight.tickets[FIRST_TICKET].holder == ANNA
    assert flight.seats_available == 4


def test_expired_hold_buyable_by_others():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.take_changes()

    view = flight.buy(FIRST_TICKET, ANNA, NOW + HOLD)

    assert view.status is TicketStatus.SOLD
    assert flight.tickets[FIRST_TICKET].holder == ANNA
    assert flight.seats_available == 4


def test_expired_hold_cannot_be_canceled():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)

    with pytest.raises(TicketNotBooked):
        flight.cancel_reservation(FIRST_TICKET, IVAN, NOW + HOLD)


def test_release_expired_before_expiry():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.take_changes()

    released = flight.release_expired(NOW + HOLD - timedelta(seconds=1))

    assert released == []
    assert flight.tickets[FIRST_TICKET].status is TicketStatus.BOOKED
    assert not flight.take_changes()


def test_release_expired_releases_hold():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.book(FIRST_TICKET + 1, ANNA, NOW + timedelta(minutes=5), HOLD)
    flight.take_changes()

    released = flight.release_expired(NOW + HOLD)

    assert [view.id for view in released] == [FIRST_TICKET]
    assert released[0].status is TicketStatus.AVAILABLE
    assert flight.tickets[FIRST_TICKET].holder is None
    assert flight.tickets[FIRST_TICKET].booked_until is None
    assert flight.seats_available == 4
    assert flight.next_expiry() == NOW + timedelta(minutes=5) + HOLD


def test_release_expired_skips_bought_hold():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.buy(FIRST_TICKET, IVAN, NOW)
    flight.take_changes()

    released = flight.release_expired(NOW + HOLD)

    assert released == []
    assert flight.tickets[FIRST_TICKET].status is TicketStatus.SOLD
    assert flight.next_expiry() is None


def test_release_expired_keeps_rebooked_hold():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.cancel_reservation(FIRST_TICKET, IVAN, NOW)
    flight.book(FIRST_TICKET, ANNA, NOW + timedelta(minutes=10), HOLD)
    flight.take_changes()

    released = flight.release_expired(NOW + HOLD)

    assert released == []
    assert flight.tickets[FIRST_TICKET].holder == ANNA


# Tickets on sale -------------------------------------------------------


def test_on_sale_lists_available_and_lapsed():
    flight = make_flight(seats=4)
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.buy(FIRST_TICKET + 1, IVAN, NOW)
    flight.book(FIRST_TICKET + 2, ANNA, NOW - HOLD, HOLD)

    on_sale = flight.tickets_on_sale(NOW)

    assert [(view.id, view.seat) for view in on_sale] == [(FIRST_TICKET + 2, 3), (FIRST_TICKET + 3, 4)]
    assert {view.status for view in on_sale} == {TicketStatus.AVAILABLE}


@pytest.mark.parametrize("status", [FlightStatus.SALES_CLOSED, FlightStatus.CANCELED])
def test_on_sale_empty_unless_on_sale(status):
    flight = make_flight(status=status)

    assert flight.tickets_on_sale(NOW) == []


# Sales closed ----------------------------------------------------------


def test_close_sales_releases_holds():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.book(FIRST_TICKET + 1, IVAN, NOW, HOLD)
    flight.book(FIRST_TICKET + 2, ANNA, NOW, HOLD)
    flight.buy(FIRST_TICKET + 3, ANNA, NOW)
    flight.take_changes()

    applied = flight.close_sales(NOW)
    changes = flight.take_changes()

    assert applied is True
    assert flight.status is FlightStatus.SALES_CLOSED
    assert flight.tickets[FIRST_TICKET].status is TicketStatus.AVAILABLE
    assert flight.tickets[FIRST_TICKET + 1].status is TicketStatus.AVAILABLE
    assert flight.tickets[FIRST_TICKET + 2].status is TicketStatus.AVAILABLE
    assert flight.tickets[FIRST_TICKET + 3].status is TicketStatus.SOLD
    assert flight.seats_available == 4
    assert flight.next_expiry() is None
    assert changes.flight_status is FlightStatus.SALES_CLOSED
    assert changes.events == [AppliedEvent("flight_ticket_sales_completed", NOW)]
    assert changes.seats_available_delta == 3
    assert {change.ticket.id for change in changes.tickets} == {FIRST_TICKET, FIRST_TICKET + 1, FIRST_TICKET + 2}


def test_close_sales_notifies_each_holder():
    flight = make_flight()
    flight.book(FIRST_TICKET + 1, IVAN, NOW, HOLD)
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.book(FIRST_TICKET + 2, ANNA, NOW, HOLD)
    flight.buy(FIRST_TICKET + 3, ANNA, NOW)
    flight.take_changes()

    flight.close_sales(NOW)
    notifications = {notification.passenger: notification for notification in flight.take_changes().notifications}

    assert set(notifications) == {IVAN, ANNA}
    assert notifications[IVAN].kind is NotificationKind.RESERVATION_RELEASED
    assert notifications[IVAN].ticket_ids == (FIRST_TICKET, FIRST_TICKET + 1)
    assert notifications[IVAN].seats == (1, 2)
    assert notifications[ANNA].ticket_ids == (FIRST_TICKET + 2,)


@pytest.mark.parametrize("command", ["book", "buy"])
def test_close_sales_rejects_sales(command):
    flight = make_flight()
    flight.close_sales(NOW)
    flight.take_changes()

    with pytest.raises(SalesClosed):
        if command == "book":
            flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
        else:
            flight.buy(FIRST_TICKET, IVAN, NOW)

    assert not flight.take_changes()


def test_close_sales_cancel_reservation():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.close_sales(NOW)

    with pytest.raises(TicketNotBooked):
        flight.cancel_reservation(FIRST_TICKET, IVAN, NOW)


def test_close_sales_replay():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.close_sales(NOW)
    flight.take_changes()

    applied = flight.close_sales(NOW + timedelta(minutes=1))

    assert applied is False
    assert not flight.take_changes()


def test_close_sales_after_cancel():
    flight = make_flight()
    flight.cancel(NOW)
    flight.take_changes()

    applied = flight.close_sales(NOW)

    assert applied is False
    assert flight.status is FlightStatus.CANCELED
    assert not flight.take_changes()


# Flight canceled -------------------------------------------------------


def test_cancel_flight_cancels_held_tickets():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.buy(FIRST_TICKET + 1, ANNA, NOW)
    flight.take_changes()

    applied = flight.cancel(NOW + timedelta(minutes=1))
    changes = flight.take_changes()

    assert applied is True
    assert flight.status is FlightStatus.CANCELED
    assert flight.tickets[FIRST_TICKET].status is TicketStatus.CANCELED
    assert flight.tickets[FIRST_TICKET].holder == IVAN
    assert flight.tickets[FIRST_TICKET].booked_until == NOW + HOLD
    assert flight.tickets[FIRST_TICKET + 1].status is TicketStatus.CANCELED
    assert flight.tickets[FIRST_TICKET + 1].holder == ANNA
    assert flight.tickets[FIRST_TICKET + 1].date_of_sale == NOW
    assert flight.tickets[FIRST_TICKET + 2].status is TicketStatus.AVAILABLE
    assert flight.next_expiry() is None
    assert changes.flight_status is FlightStatus.CANCELED
    assert changes.events == [AppliedEvent("flight_canceled", NOW + timedelta(minutes=1))]
    assert changes.seats_available_delta == 0
    assert {change.ticket.id for change in changes.tickets} == {FIRST_TICKET, FIRST_TICKET + 1}


def test_cancel_flight_one_notification_each():
    flight = make_flight()
    flight.buy(FIRST_TICKET + 2, IVAN, NOW)
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.buy(FIRST_TICKET + 1, IVAN_RENAMED, NOW)
    flight.buy(FIRST_TICKET + 3, ANNA, NOW)
    flight.take_changes()

    flight.cancel(NOW)
    notifications = flight.take_changes().notifications

    assert len(notifications) == 2
    by_email = {notification.passenger.email: notification for notification in notifications}
    assert by_email[IVAN.email].kind is NotificationKind.FLIGHT_CANCELED
    assert by_email[IVAN.email].ticket_ids == (FIRST_TICKET, FIRST_TICKET + 1, FIRST_TICKET + 2)
    assert by_email[IVAN.email].seats == (1, 2, 3)
    assert by_email[ANNA.email].ticket_ids == (FIRST_TICKET + 3,)


def test_cancel_flight_after_sales_closed():
    flight = make_flight()
    flight.buy(FIRST_TICKET, IVAN, NOW)
    flight.close_sales(NOW)
    flight.take_changes()

    applied = flight.cancel(NOW)

    assert applied is True
    assert flight.tickets[FIRST_TICKET].status is TicketStatus.CANCELED


@pytest.mark.parametrize("command", ["book", "buy", "cancel_reservation"])
def test_cancel_flight_rejects_commands(command):
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.cancel(NOW)
    flight.take_changes()

    with pytest.raises(FlightCanceled):
        if command == "book":
            flight.book(FIRST_TICKET + 1, ANNA, NOW, HOLD)
        elif command == "buy":
            flight.buy(FIRST_TICKET + 1, ANNA, NOW)
        else:
            flight.cancel_reservation(FIRST_TICKET, IVAN, NOW)

    assert not flight.take_changes()


def test_cancel_flight_replay():
    flight = make_flight()
    flight.buy(FIRST_TICKET, IVAN, NOW)
    flight.cancel(NOW)
    flight.take_changes()

    applied = flight.cancel(NOW + timedelta(minutes=1))

    assert applied is False
    assert not flight.take_changes()


# Counter and change tracking -------------------------------------------


def test_seats_available_counter():
    flight = make_flight(seats=5)

    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    assert flight.seats_available == 4
    flight.buy(FIRST_TICKET + 1, ANNA, NOW)
    assert flight.seats_available == 3
    flight.buy(FIRST_TICKET, IVAN, NOW)
    assert flight.seats_available == 3
    flight.book(FIRST_TICKET + 2, ANNA, NOW, HOLD)
    flight.cancel_reservation(FIRST_TICKET + 2, ANNA, NOW)
    assert flight.seats_available == 3
    flight.book(FIRST_TICKET + 3, ANNA, NOW, HOLD)
    flight.release_expired(NOW + HOLD)
    assert flight.seats_available == 3
    available = sum(1 for ticket in flight.tickets.values() if ticket.status is TicketStatus.AVAILABLE)
    assert flight.seats_available == available


def test_counter_from_loaded_tickets():
    info = FlightInfo(7, "SU", "Moscow", "Berlin", NOW)
    tickets = [
        Ticket(1, 1),
        Ticket(2, 2, TicketStatus.BOOKED, IVAN, booked_until=NOW + HOLD),
        Ticket(3, 3, TicketStatus.SOLD, ANNA, date_of_sale=NOW),
        Ticket(4, 4),
    ]

    flight = Flight(info, FlightStatus.ON_SALE, tickets)

    assert flight.seats_available == 2
    assert flight.next_expiry() == NOW + HOLD


def test_take_changes_guards():
    flight = make_flight(version=3)
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.buy(FIRST_TICKET + 1, ANNA, NOW)
    flight.take_changes()
    flight.buy(FIRST_TICKET, IVAN, NOW)
    flight.book(FIRST_TICKET + 2, ANNA, NOW, HOLD)

    changes = flight.take_changes()

    guards = {change.ticket.id: (change.expected_status, change.expected_version) for change in changes.tickets}
    assert guards == {
        FIRST_TICKET: (TicketStatus.BOOKED, 3),
        FIRST_TICKET + 2: (TicketStatus.AVAILABLE, 3),
    }
    assert changes.seats_available_delta == -1
    assert changes.notifications == []
    assert changes.flight_status is None


def test_take_changes_first_state_wins():
    flight = make_flight(version=3)

    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.buy(FIRST_TICKET, IVAN, NOW)
    changes = flight.take_changes()

    assert len(changes.tickets) == 1
    assert changes.tickets[0].expected_status is TicketStatus.AVAILABLE
    assert changes.tickets[0].expected_version == 3
    assert changes.tickets[0].ticket.status is TicketStatus.SOLD
    assert changes.seats_available_delta == -1


def test_take_changes_starts_new_set():
    flight = make_flight()
    flight.buy(FIRST_TICKET, IVAN, NOW)
    flight.take_changes()

    changes = flight.take_changes()

    assert not changes
    assert changes.tickets == []
    assert changes.seats_available_delta == 0


def test_take_changes_release_delta():
    flight = make_flight()
    flight.book(FIRST_TICKET, IVAN, NOW, HOLD)
    flight.take_changes()

    flight.release_expired(NOW + HOLD)
    changes = flight.take_changes()

    assert [change.ticket.id for change in changes.tickets] == [FIRST_TICKET]
    assert changes.tickets[0].expected_status is TicketStatus.BOOKED
    assert changes.seats_available_delta == 1


def test_mark_written_advances_versions():
    flight = make_flight(version=3)
    flight.buy(FIRST_TICKET, IVAN, NOW)
    changes = flight.take_changes()

    flight.mark_written(changes)

    assert flight.tickets[FIRST_TICKET].version == 4
    assert flight.tickets[FIRST_TICKET + 1].version == 3
