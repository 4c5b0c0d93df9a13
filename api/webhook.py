"""The airline webhook: close sales or cancel a flight, through its actor."""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

import trio
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from quart import Response
from quart_trio import QuartTrio

from engine.commands import CancelFlight, CloseSales, EventReply
from engine.idempotency import IdempotentRequest

from .errors import ApiError
from .idempotency import IdempotencyKeys
from .json_body import read_json_body, validate_json
from .models import Id
from .outcomes import render_event_applied
from .rendering import bytes_response
from .runtime import Runtime

log = logging.getLogger(__name__)

SALES_COMPLETED = "flight_ticket_sales_completed"
FLIGHT_CANCELED = "flight_canceled"

# Unix seconds between 2000-01-01 and 2100-01-01 UTC; a larger value is
# most likely milliseconds, and the message says so.
_EARLIEST = 946_684_800
_LATEST = 4_102_444_800


def _sane_unix_seconds(value: int) -> int:
    if value < 0:
        raise ValueError(f"must be Unix time in seconds, not negative; got {value}")
    if value > _LATEST and value // 1000 <= _LATEST:
        raise ValueError(f"looks like milliseconds ({value}); send Unix time in seconds")
    if not _EARLIEST <= value <= _LATEST:
        raise ValueError(f"must be Unix time in seconds between {_EARLIEST} (2000) and {_LATEST} (2100); got {value}")
    return value


class EventData(BaseModel):
    model_config = ConfigDict(strict=True)

    flight_id: Id
    triggered_at: Annotated[int, AfterValidator(_sane_unix_seconds)]
    event: Literal["flight_ticket_sales_completed", "flight_canceled"]
    secret_key: Annotated[str, Field(min_length=1, max_length=256)]


class EventRequest(BaseModel):
    """Body of POST /api/v1/callback/events."""

    model_config = ConfigDict(strict=True)

    data: EventData


def register_webhook(app: QuartTrio, runtime: Runtime, idempotency: IdempotencyKeys) -> None:
    """Add POST /api/v1/callback/events to the app."""
    deadline_seconds = runtime.settings.request_deadline
    secret = runtime.callback_secret.encode() if runtime.callback_secret is not None else None

    @app.post("/api/v1/callback/events")
    async def callback_event() -> Response:
        """Apply an airline event: close a flight's sales or cancel it. Replays change nothing."""
        if secret is None:
            raise ApiError(
                503,
                "callback_secret_not_configured",
                "the webhook is disabled: set TICKETS_CALLBACK_SECRET on the server",
                {"Retry-After": "60"},
            )
        body = await read_json_body()
        deadline = trio.current_time() + deadline_seconds

        async def execute(idempotent: IdempotentRequest | None) -> Response:
            data = validate_json(EventRequest, body).data
            if not hmac.compare_digest(data.secret_key.encode(), secret):
                log.warning("callback for flight %d rejected: wrong secret", data.flight_id)
                raise ApiError(403, "invalid_secret", "secret_key does not match the configured webhook secret")

            triggered_at = datetime.fromtimestamp(data.triggered_at, UTC)
            command = CancelFlight(triggered_at) if data.event == FLIGHT_CANCELED else CloseSales(triggered_at)
            reply = await runtime.registry.ask(data.flight_id, command, deadline, idempotency=idempotent)
            assert isinstance(reply, EventReply)

            if reply.applied:
                log.info("flight %d: event %s applied (triggered at %s)", data.flight_id, data.event, triggered_at)
            else:
                log.info("flight %d: event %s ignored: already applied or flight canceled", data.flight_id, data.event)
            return bytes_response(*render_event_applied(reply))

        return await idempotency.run(body, render_event_applied, execute, deadline)
