"""The routes both conventional baselines serve, over an injected way to run SQL.

``in_transaction(work, *args)`` runs ``work(connection, *args)`` inside one
transaction and ``on_connection`` runs it outside one. The trio baseline
passes the service's bridged ``Database`` methods, the asyncio baseline
passes asyncpg pool calls, so the two differ only in the stack underneath.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Quart, Response

from api.app import parse_id, read_json_body
from api.config import Settings
from api.errors import register_error_handlers
from api.models import SeatRequest
from api.rendering import format_time, json_response, seat_body

from . import conventional_sql

RunSql = Callable[..., Awaitable[Any]]


def configure_app(app: Quart, settings: Settings) -> None:
    """Apply the service's request limits and JSON error handlers."""
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["BODY_TIMEOUT"] = 30
    app.config["JSON_SORT_KEYS"] = False
    register_error_handlers(app)


def register_routes(app: Quart, settings: Settings, in_transaction: RunSql, on_connection: RunSql) -> None:
    hold = timedelta(seconds=settings.booking_ttl)

    async def read_seat_request() -> SeatRequest:
        return SeatRequest.model_validate_json(await read_json_body())

    @app.get("/api/v1/flights")
    async def list_flights() -> Response:
        rows = await on_connection(conventional_sql.flights_on_sale)
        return json_response(
            [
                {
                    "id": row["id"],
                    "company": row["company"],
                    "departure": row["departure"],
                    "arrival": row["arrival"],
                    "departure_time": format_time(row["departure_time"]),
                    "seats_available": row["seats_available"],
                }
                for row in rows
            ]
        )

    @app.get("/api/v1/tickets/flight-<flight_ref>")
    async def list_tickets(flight_ref: str) -> Response:
        flight_id = parse_id(flight_ref, "flight id")
        rows = await on_connection(conventional_sql.tickets_on_sale, flight_id, datetime.now(UTC))
        return json_response([{"id": row["id"], "seat": row["seat"], "status": "available"} for row in rows])

    @app.post("/api/v1/tickets/buy")
    async def buy() -> Response:
        seat_request = await read_seat_request()
        passenger = seat_request.passenger.to_domain()
        reply = await in_transaction(conventional_sql.buy, seat_request.ticketId, passenger, datetime.now(UTC))
        return json_response(seat_body(reply), 201)

    @app.post("/api/v1/tickets/book")
    async def book() -> Response:
        seat_request = await read_seat_request()
        passenger = seat_request.passenger.to_domain()
        reply = await in_transaction(conventional_sql.book, seat_request.ticketId, passenger, datetime.now(UTC), hold)
        return json_response(seat_body(reply), 201)

    @app.post("/api/v1/tickets/cancel-reservation")
    async def cancel_reservation() -> Response:
        seat_request = await read_seat_request()
        passenger = seat_request.passenger.to_domain()
        ticket = await in_transaction(
            conventional_sql.cancel_reservation, seat_request.ticketId, passenger, datetime.now(UTC)
        )
        return json_response({"ticket": {"id": ticket.id, "seat": ticket.seat, "status": ticket.status.value}})
