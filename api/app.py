"""The Quart-Trio application: routes from HTTP to flight actors and back."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from engine.commands import Book, Buy, CancelReservation, ListTickets, TicketsReply
from engine.idempotency import IdempotentRequest
from persistence.flight_queries import flights_on_sale, search_flights

from .errors import ApiError, register_error_handlers
from .health import register_health
from .idempotency import IdempotencyKeys
from .json_body import read_json_body, validate_json
from .limits import ConcurrencyLimit, ShieldedLastSend
from .metrics import register_metrics
from .models import MAX_ID, SeatRequest
from .openapi import register_openapi
from .outcomes import RENDERS
from .rendering import bytes_response, format_time, json_response
from .request_log import instrument_requests
from .runtime import Runtime
from .search import FlightQuery, TicketQuery, flight_cursor, flight_position, next_link, parse_query, ticket_cursor, ticket_position
from .webhook import register_webhook

log = logging.getLogger(__name__)


def create_app(runtime: Runtime) -> QuartTrio:
    """Build the app around a running runtime (database, registry, settings)."""
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.config["BODY_TIMEOUT"] = 30
    app.config["JSON_SORT_KEYS"] = False
    # Quart answers OPTIONS itself with an empty HTML page unless told not
    # to; without it OPTIONS is a 405 JSON error like any other method.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.extensions["tickets"] = runtime
    register_error_handlers(app, on_unavailable=runtime.metrics.count_unavailable)
    instrument_requests(app, runtime.metrics)

    registry = runtime.registry
    deadline_seconds = runtime.settings.request_deadline

    idempotency = IdempotencyKeys(runtime.database)

    @app.get("/api/v1/flights")
    async def list_flights() -> Response:
        """List flights on sale, earliest departure first.

        Without query parameters the whole list is returned. The filters
        narrow it, and ``limit`` pages it: a ``Link`` header with
        ``rel="next"`` then points at the next page while one follows.
        """
        query = parse_query(FlightQuery, request.args) if request.args else None
        with trio.move_on_after(deadline_seconds) as scope:
            if query is None:
                flights = await flights_on_sale(runtime.database)
            else:
                flights = await search_flights(
                    runtime.database,
                    departure=query.departure,
                    arrival=query.arrival,
                    day_start=datetime.combine(query.date, time(), UTC) if query.date is not None else None,
                    after=flight_position(query.cursor) if query.cursor is not None else None,
                    # Fetching one flight more than the page shows whether another page follows.
                    limit=query.limit + 1 if query.limit is not None else None,
                )
        if scope.cancelled_caught:
            raise ApiError(503, "deadline_exceeded", "the flight list did not load in time; retry later", {"Retry-After": "1"})

        link = None
        if query is not None and query.limit is not None and len(flights) > query.limit:
            flights = flights[: query.limit]
            link = next_link(request.path, request.args, flight_cursor(flights[-1].departure_time, flights[-1].id))
        response = json_response(
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
        if link is not None:
            response.headers["Link"] = link
        return response

    @app.get("/api/v1/tickets/flight-<flight_ref>")
    async def list_tickets(flight_ref: str) -> Response:
        """List the tickets of a flight that can be booked or bought now, by seat.

        The list is empty while the flight's sales are closed or it is
        canceled. ``limit`` and ``cursor`` page it as for the flight list.
        """
        flight_id = parse_id(flight_ref, "flight id")
        query = parse_query(TicketQuery, request.args) if request.args else None
        reply = await registry.ask(flight_id, ListTickets(), trio.current_time() + deadline_seconds)
        assert isinstance(reply, TicketsReply)
        tickets = reply.tickets

        link = None
        if query is not None:
            if query.cursor is not None:
                after_seat = ticket_position(query.cursor)
                tickets = [ticket for ticket in tickets if ticket.seat > after_seat]
            if query.limit is not None and len(tickets) > query.limit:
                tickets = tickets[: query.limit]
                link = next_link(request.path, request.args, ticket_cursor(tickets[-1].seat))
        response = json_response(
            [{"id": ticket.id, "seat": ticket.seat, "status": ticket.status.value} for ticket in tickets]
        )
        if link is not None:
            response.headers["Link"] = link
        return response

    async def seat_command(command_type: Any) -> Response:
        render = RENDERS[command_type]
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
        """Buy a ticket that is available or booked by the same passenger."""
        return await seat_command(Buy)

    @app.post("/api/v1/tickets/book")
    async def book() -> Response:
        """Book (hold) an available ticket until booked_until."""
        return await seat_command(Book)

    @app.post("/api/v1/tickets/cancel-reservation")
    async def cancel_reservation() -> Response:
        """Release a reservation held by the same passenger."""
        return await seat_command(CancelReservation)

    register_webhook(app, runtime, idempotency)
    register_health(app, runtime)
    register_metrics(app, runtime.metrics)
    register_openapi(app)
    limited = ConcurrencyLimit(ShieldedLastSend(app.asgi_app), runtime.settings.max_concurrent_requests)
    app.asgi_app = limited  # type: ignore[method-assign]
    return app


def parse_id(text: str, what: str) -> int:
    """Parse a positive 64-bit id from a path segment."""
    if not text.isascii() or not text.isdigit():
        raise ApiError(400, "invalid_request", f"{what} must be a positive integer, got {text[:40]!r}")
    value = int(text) if len(text) <= 20 else MAX_ID + 1
    if not 0 < value <= MAX_ID:
        raise ApiError(400, "invalid_request", f"{what} must be between 1 and {MAX_ID}, got {text[:40]}")
    return value
