"""JSON responses in the API's shapes and time format."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic_core
from quart import Response

from engine.commands import SeatReply
from engine.seats import FlightInfo, TicketStatus

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def json_bytes(payload: Any) -> bytes:
    return pydantic_core.to_json(payload)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json_bytes(payload), status=status, content_type=JSON_CONTENT_TYPE)


def bytes_response(status: int, body: bytes) -> Response:
    """Build a JSON response from an already encoded body."""
    return Response(body, status=status, content_type=JSON_CONTENT_TYPE)


def error_body(message: str, code: str) -> bytes:
    """Encode the body of an error response: ``{"error": message, "code": code}``."""
    return json_bytes({"error": message, "code": code})


def format_time(moment: datetime | None) -> str | None:
    """Render a time as UTC ``YYYY-MM-DD HH:MM:SS``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def flight_body(flight: FlightInfo) -> dict[str, Any]:
    return {
        "company": flight.company,
        "departure": flight.departure,
        "arrival": flight.arrival,
        "departure_time": format_time(flight.departure_time),
    }


def seat_body(reply: SeatReply) -> dict[str, Any]:
    """Return the body of a buy or book response."""
    ticket = reply.ticket
    ticket_body: dict[str, Any] = {
        "id": ticket.id,
        "seat": ticket.seat,
        "date_of_sale": format_time(ticket.date_of_sale),
        "status": ticket.status.value,
    }
    if ticket.status is TicketStatus.BOOKED:
        ticket_body["booked_until"] = format_time(ticket.booked_until)
    return {
        "flight": flight_body(reply.flight),
        "passenger": {
            "firstname": reply.passenger.firstname,
            "lastname": reply.passenger.lastname,
            "pass_number": reply.passenger.pass_number,
        },
        "ticket": ticket_body,
    }
