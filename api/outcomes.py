"""Render a flight actor's decision as the status and body of the API's response.

The process that receives a request renders the reply it gets back. With an
Idempotency-Key, the flight's owner also renders the decision and stores it
for replays. When the owner is another process, both renderings must be
byte-identical, so both processes take the function from ``RENDERS``.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.commands import Book, Buy, CancelFlight, CancelReservation, CloseSales, EventReply, SeatReply
from engine.errors import SeatRuleViolation

from .rendering import error_body, json_bytes, seat_body

Render = Callable[[object], tuple[int, bytes]]


def render_rejection(violation: SeatRuleViolation) -> tuple[int, bytes]:
    """Render a seat-rule rejection exactly as the error handler does."""
    return 400, error_body(str(violation), violation.code)


def render_seat_created(outcome: object) -> tuple[int, bytes]:
    """Render the outcome of buy or book: 201 with the seat, or the rule's 400."""
    if isinstance(outcome, SeatRuleViolation):
        return render_rejection(outcome)
    assert isinstance(outcome, SeatReply)
    return 201, json_bytes(seat_body(outcome))


def render_reservation_canceled(outcome: object) -> tuple[int, bytes]:
    """Render the outcome of cancel-reservation: 200 with the ticket, or the rule's 400."""
    if isinstance(outcome, SeatRuleViolation):
        return render_rejection(outcome)
    assert isinstance(outcome, SeatReply)
    ticket = outcome.ticket
    return 200, json_bytes({"ticket": {"id": ticket.id, "seat": ticket.seat, "status": ticket.status.value}})


def render_event_applied(outcome: object) -> tuple[int, bytes]:
    """Render the outcome of an airline event: 200 whether applied now or before."""
    assert isinstance(outcome, EventReply)
    return 200, json_bytes({"status": "ok"})


# The render of each command that a POST route sends. Only these commands carry an Idempotency-Key.
RENDERS: dict[type, Render] = {
    Buy: render_seat_created,
    Book: render_seat_created,
    CancelReservation: render_reservation_canceled,
    CloseSales: render_event_applied,
    CancelFlight: render_event_applied,
}
