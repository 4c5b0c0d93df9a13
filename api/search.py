"""Query parameters of the list endpoints: flight search filters, page size and cursors.

A page ends with a ``Link: <...>; rel="next"`` header when more items follow.
Its cursor is opaque to clients: URL-safe base64 of the last item's sort
key with a prefix naming the list, so a cursor of one list is rejected by
another. A request without any of these parameters gets the whole list, as
before paging existed.
"""

from __future__ import annotations

import base64
import binascii
import re
import datetime as dt
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from werkzeug.datastructures import MultiDict

from .errors import ApiError
from .models import MAX_ID, Name

MAX_PAGE_SIZE = 1000
_MAX_CURSOR_LENGTH = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FLIGHT_CURSOR = "f1"
_TICKET_CURSOR = "t1"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DIGITS = re.compile(r"[0-9]{1,9}")
_INVALID_CURSOR = "is not a cursor of this list; use the URL of the Link header as given"


def _encode(*parts: object) -> str:
    text = ".".join(str(part) for part in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str, prefix: str, count: int) -> list[int]:
    """Return the integers of a cursor made by ``_encode(prefix, ...)``; raise ValueError otherwise."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(_INVALID_CURSOR) from None
    parts = text.split(".")
    if len(parts) != count + 1 or parts[0] != prefix:
        raise ValueError(_INVALID_CURSOR)
    numbers = []
    for part in parts[1:]:
        if not part.isascii() or not part.lstrip("-").isdigit() or len(part) > 20:
            raise ValueError(_INVALID_CURSOR)
        numbers.append(int(part))
    return numbers


def flight_cursor(departure_time: datetime, flight_id: int) -> str:
    """Return the cursor that continues a flight list after this flight."""
    micros = (departure_time - _EPOCH) // timedelta(microseconds=1)
    return _encode(_FLIGHT_CURSOR, micros, flight_id)


def flight_position(cursor: str) -> tuple[datetime, int]:
    """Return the (departure time, flight id) a flight cursor continues after; raise ValueError if invalid."""
    micros, flight_id = _decode(cursor, _FLIGHT_CURSOR, 2)
    if not 0 < flight_id <= MAX_ID:
        raise ValueError(_INVALID_CURSOR)
    try:
        return _EPOCH + timedelta(microseconds=micros), flight_id
    except OverflowError:
        raise ValueError(_INVALID_CURSOR) from None


def ticket_cursor(seat: int) -> str:
    """Return the cursor that continues a ticket list after this seat."""
    return _encode(_TICKET_CURSOR, seat)


def ticket_position(cursor: str) -> int:
    """Return the seat a ticket cursor continues after; raise ValueError if invalid."""
    (seat,) = _decode(cursor, _TICKET_CURSOR, 1)
    if not 0 < seat < 2**31:
        raise ValueError(_INVALID_CURSOR)
    return seat


def _date_text(value: object) -> object:
    # Only YYYY-MM-DD: pydantic alone would also take Unix times and datetimes.
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError(f"{str(value)[:40]!r} is not a date; use YYYY-MM-DD")
    return value


def _digits(value: object) -> object:
    # Only plain digits: pydantic alone would also take " 5" and "5.0".
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise ValueError(f"{str(value)[:40]!r} is not a whole number from 1 to {MAX_PAGE_SIZE}")
    return value


def _valid(position: Any) -> Any:
    def check(cursor: str) -> str:
        position(cursor)
        return cursor

    return AfterValidator(check)


Limit = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, description=f"Maximum items in the page, 1 to {MAX_PAGE_SIZE}."), BeforeValidator(_digits)]
Cursor = Annotated[
    str,
    StringConstraints(min_length=1, max_length=_MAX_CURSOR_LENGTH),
    Field(description="Where the page starts: the cursor of the Link header of the previous page."),
]


class FlightQuery(BaseModel):
    """Query parameters of GET /api/v1/flights; every one is optional."""

    model_config = ConfigDict(extra="ignore")

    # Each field defaults to None without allowing null, so the document
    # shows each parameter with its plain type.
    departure: Name = Field(None, description="City of departure, compared case-insensitively.")
    arrival: Name = Field(None, description="City of arrival, compared case-insensitively.")
    date: Annotated[dt.date, BeforeValidator(_date_text)] = Field(None, description="Departure date in UTC, YYYY-MM-DD.")
    limit: Limit = None
    cursor: Annotated[Cursor, _valid(flight_position)] = None


class TicketQuery(BaseModel):
    """Query parameters of GET /api/v1/tickets/flight-{id}; both are optional."""

    model_config = ConfigDict(extra="ignore")

    limit: Limit = None
    cursor: Annotated[Cursor, _valid(ticket_position)] = None


def parse_query(model: type[pydantic.BaseModel], args: MultiDict[str, str]) -> Any:
    """Validate query parameters with ``model``; raise a 400 ApiError naming the first invalid one."""
    for name in model.model_fields:
        values = args.getlist(name)
        if len(values) > 1:
            raise ApiError(400, "invalid_request", f"invalid query parameter {name}: given {len(values)} times; give it once")
    try:
        return model.model_validate(args.to_dict())
    except pydantic.ValidationError as error:
        problem = error.errors(include_url=False)[0]
        name = ".".join(str(part) for part in problem["loc"]) or "query"
        message = problem["msg"].removeprefix("Value error, ")
        raise ApiError(400, "invalid_request", f"invalid query parameter {name}: {message}") from None


def next_link(path: str, args: MultiDict[str, str], cursor: str) -> str:
    """Return a Link header value pointing at the next page: the same query with the new cursor."""
    query = [(name, value) for name, value in args.items(multi=True) if name != "cursor"]
    query.append(("cursor", cursor))
    return f'<{path}?{urlencode(query)}>; rel="next"'
