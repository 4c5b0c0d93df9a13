"""The Quart-Trio application: routes from HTTP to flight actors and back."""

from __future__ import annotations

import logging
from typing import Any

import trio
from quart import Response
from quart_trio import QuartTrio

from engine.commands import Book, Buy, CancelReservation, ListTickets, SeatReply, TicketsReply
from engine.errors import SeatRuleViolation
from engine.idempotency import IdempotentRequest
from persistence.flight_queries import flights_on_sale

from .errors import ApiError, register_error_handlers
from .health import register_health
from .idempotency import IdempotencyKeys, Render, render_rejection
from .json_body import read_json_body, validate_json
from .limits import ConcurrencyLimit, ShieldedLastSend
from .models import MAX_ID, SeatRequest
from .rendering import bytes_response, format_time, json_bytes, json_response, seat_body
from .runtime import Runtime
from .webhook import register_webhook

log = logging.getLogger(__name__)


def create_app(runtime: Runtime) -> QuartTrio:
    """Build the app around a running runtime (database, registry, settings)."""
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.config["BODY_TIMEOUT"] = 30
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["tickets"] = runtime
    register_error_handlers(app)

    registry = runtime.registry
    deadline_seconds = runtime.settings.request_deadline

    idempotency = IdempotencyKeys(runtime.database)

    @app.get("/api/v1/flights")
    async def list_flights() -> Response:
        with trio.move_on_after(deadline_seconds) as scope:
            flights = await flights_on_sale(runtime.database)
        if scope.cancelled_caught:
            raise ApiError(503, "deadline_exceeded", "the flight list did not load in time; retry later", {"Retry-After": "1"})
        return json_response(
            [
                {
                    "id": flight.id,
                    "company": flight.company,
                    "departure": flight.departure,
                    "arrival": flight.arrival,
                    "departure_time": format_time(flight.departure_time),
                    "seats_available": flight.seats_available,
                }
                for flight in flights
            ]
        )

    @app.get("/api/v1/tickets/flight-<flight_ref>")
    async def list_tickets(flight_ref: str) -> Response:
        flight_id = parse_id(flight_ref, "flight id")
        reply = await registry.ask(flight_id, ListTickets(), trio.current_time() + deadline_seconds)
        assert isinstance(reply, TicketsReply)
        return json_response(
            [{"id": ticket.id, "seat": ticket.seat, "status": ticket.status.value} for ticket in reply.tickets]
        )

    async def seat_command(command_type: Any, render: Render) -> Response:
        body = await read_json_body()
        deadline = trio.current_time() + deadline_seconds

        async def execute(idempotent: IdempotentRequest | None) -> Response:
            seat_request = validate_json(SeatRequest, body)
            command = command_type(seat_request.ticketId, seat_request.passenger.to_domain())
            reply = await registry.ask_for_ticket(seat_request.ticketId, command, deadline, idempotency=idempotent)
            return bytes_response(*render(reply))

        return await idempotency.run(body, render, execute, deadline)

    @app.post("/api/v1/tickets/buy")
    async def buy() -> Response:
        return await seat_command(Buy, render_seat_created)

    @app.post("/api/v1/tickets/book")
    async def book() -> Response:
        return await seat_command(Book, render_seat_created)

    @app.post("/api/v1/tickets/cancel-reservation")
    async def cancel_reservation() -> Response:
        return await seat_command(CancelReservation, render_reservation_canceled)

    register_webhook(app, runtime, idempotency)
    register_health(app, runtime)
    limited = ConcurrencyLimit(ShieldedLastSend(app.asgi_app), runtime.settings.max_concurrent_requests)
    app.asgi_app = limited  # type: ignore[method-assign]
    return app


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


def parse_id(text: str, what: str) -> int:
    """Parse a positive 64-bit id from a path segment."""
    if not text.isascii() or not text.isdigit():
        raise ApiError(400, "invalid_request", f"{what} must be a positive integer, got {text[:40]!r}")
    value = int(text) if len(text) <= 20 else MAX_ID + 1
    if not 0 < value <= MAX_ID:
        raise ApiError(400, "invalid_request", f"{what} must be between 1 and {MAX_ID}, got {text[:40]}")
    return value
