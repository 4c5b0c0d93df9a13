"""Ceiling baseline: the service's HTTP stack with no database and a fixed reply.

It runs Quart-Trio on Hypercorn's trio worker with the service's error
handlers, body checks and pydantic model (``SeatRequest.model_validate_json``).
Every reply is encoded once at import. Nothing else the service does costs
anything here, so no implementation on this stack can serve more. The list endpoints return fixed lists as long as the scenario's
data (BENCH_CEILING_FLIGHTS flights, BENCH_CEILING_SEATS tickets), so read
replies have the service's size. Serve with
``hypercorn --worker-class trio --workers 0 benchmarks.baselines.ceiling:app``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pydantic_core
from quart import Response
from quart_trio import QuartTrio

from api.app import read_json_body
from api.config import Settings
from api.models import SeatRequest
from api.rendering import JSON_CONTENT_TYPE, format_time, seat_body
from engine.commands import SeatReply
from engine.seats import FlightInfo, Passenger, TicketStatus, TicketView

from .routes import configure_app

_NOW = datetime(2021, 3, 22, 2, 3, 12, tzinfo=UTC)
_FLIGHT = FlightInfo(1, "SU", "Moscow", "Berlin", _NOW + timedelta(days=3))
_PASSENGER = Passenger("ceiling@bench.example", "CEILING-1", "Bench", "Passenger")


def _encode(payload: object) -> bytes:
    return pydantic_core.to_json(payload)


SOLD = _encode(seat_body(SeatReply(_FLIGHT, TicketView(1, 1, TicketStatus.SOLD, None, _NOW), _PASSENGER)))
BOOKED = _encode(
    seat_body(SeatReply(_FLIGHT, TicketView(1, 1, TicketStatus.BOOKED, _NOW + timedelta(minutes=15), None), _PASSENGER))
)
CANCELED = _encode({"ticket": {"id": 1, "seat": 1, "status": "available"}})


def _flight_list(count: int) -> bytes:
    return _encode(
        [
            {
                "id": number,
                "company": _FLIGHT.company,
                "departure": _FLIGHT.departure,
                "arrival": _FLIGHT.arrival,
                "departure_time": format_time(_FLIGHT.departure_time),
                "seats_available": 150,
            }
            for number in range(1, count + 1)
        ]
    )


def _ticket_list(count: int) -> bytes:
    return _encode([{"id": number, "seat": number, "status": "available"} for number in range(1, count + 1)])


def create_app(settings: Settings) -> QuartTrio:
    app = QuartTrio(__name__)
    configure_app(app, settings)
    flights = _flight_list(int(os.environ.get("BENCH_CEILING_FLIGHTS", "100")))
    tickets = _ticket_list(int(os.environ.get("BENCH_CEILING_SEATS", "150")))

    def fixed(body: bytes, status: int = 200) -> Response:
        return Response(body, status=status, content_type=JSON_CONTENT_TYPE)

    @app.get("/api/v1/flights")
    async def list_flights() -> Response:
        return fixed(flights)

    @app.get("/api/v1/tickets/flight-<flight_ref>")
    async def list_tickets(flight_ref: str) -> Response:
        return fixed(tickets)

    @app.post("/api/v1/tickets/buy")
    async def buy() -> Response:
        SeatRequest.model_validate_json(await read_json_body())
        return fixed(SOLD, 201)

    @app.post("/api/v1/tickets/book")
    async def book() -> Response:
        SeatRequest.model_validate_json(await read_json_body())
        return fixed(BOOKED, 201)

    @app.post("/api/v1/tickets/cancel-reservation")
    async def cancel_reservation() -> Response:
        SeatRequest.model_validate_json(await read_json_body())
        return fixed(CANCELED)

    return app


app = create_app(Settings())
