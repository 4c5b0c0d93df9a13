"""Request bodies, validated with pydantic straight from the raw JSON bytes, and response shapes."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from engine.seats import Passenger

MAX_ID = 2**63 - 1

# Control characters (NUL included) never belong in a name or document number.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters such as NUL")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _lower_email(value: str) -> str:
    # Identity compares emails case-insensitively, so store one spelling.
    return value.lower()


Name = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_printable)]
_PASS_NUMBER = re.compile(r"\w[\w -]*")


def _pass_number(value: str) -> str:
    if _PASS_NUMBER.fullmatch(value) is None:
        raise ValueError("must contain only letters, digits, spaces and hyphens, and start with a letter or digit")
    return value


PassNumber = Annotated[
    str,
    StringConstraints(min_length=1, max_length=32),
    AfterValidator(_printable),
    AfterValidator(_pass_number),
]
Email = Annotated[EmailStr, StringConstraints(max_length=254), AfterValidator(_lower_email)]
Id = Annotated[int, Field(gt=0, le=MAX_ID)]


class PassengerIn(BaseModel):
    model_config = ConfigDict(strict=True)

    email: Email
    firstname: Name
    lastname: Name
    passNumber: PassNumber

    def to_domain(self) -> Passenger:
        return Passenger(self.email, self.passNumber, self.firstname, self.lastname)


class SeatRequest(BaseModel):
    """Body of buy, book and cancel-reservation."""

    model_config = ConfigDict(strict=True)

    ticketId: Id
    passenger: PassengerIn


# Response bodies. The routes render plain dicts in one JSON encode
# (api/rendering.py), and these models describe the same shapes for the
# OpenAPI document. The schemathesis test checks real responses against them.

TimeText = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$",
        description="UTC time as YYYY-MM-DD HH:MM:SS.",
        examples=["2021-03-25 02:03:28"],
    ),
]
TicketStatusText = Literal["available", "booked", "sold", "canceled"]


class ErrorBody(BaseModel):
    """An error: what failed, on which value, and a stable machine-readable code."""

    error: str = Field(description="What failed, on which value, as a plain English sentence.")
    code: str = Field(description="Stable snake_case identifier, such as ticket_unavailable.", pattern=r"^[a-z][a-z0-9_]*$")


class FlightOnSale(BaseModel):
    """A flight whose sales are open."""

    id: int = Field(gt=0, le=MAX_ID)
    company: str
    departure: str
    arrival: str
    departure_time: TimeText
    seats_available: int = Field(ge=0)


class TicketOnSale(BaseModel):
    """A ticket that can be booked or bought now."""

    id: int = Field(gt=0, le=MAX_ID)
    seat: int = Field(gt=0)
    status: TicketStatusText


class SeatFlight(BaseModel):
    company: str
    departure: str
    arrival: str
    departure_time: TimeText


class SeatPassenger(BaseModel):
    firstname: str
    lastname: str
    pass_number: str


class SeatTicket(BaseModel):
    id: int = Field(gt=0, le=MAX_ID)
    seat: int = Field(gt=0)
    date_of_sale: TimeText | None = Field(description="When the ticket was sold; null unless sold.")
    status: TicketStatusText
    # A documentation model only: the key is absent, not null, unless the ticket is booked.
    booked_until: TimeText = Field(None, description="When the hold lapses; present only when booked.")


class SeatResponse(BaseModel):
    """The ticket after a buy or a book, with its flight and passenger."""

    flight: SeatFlight
    passenger: SeatPassenger
    ticket: SeatTicket


class CanceledTicket(BaseModel):
    id: int = Field(gt=0, le=MAX_ID)
    seat: int = Field(gt=0)
    status: TicketStatusText


class CancelResponse(BaseModel):
    """The ticket after its reservation was released."""

    ticket: CanceledTicket


class StatusOk(BaseModel):
    """The request succeeded."""

    status: Literal["ok"]


class NotReady(BaseModel):
    """The service cannot serve requests now: the database is unavailable or its schema is not current."""

    status: Literal["unavailable"]
    error: str
    code: Literal["not_ready"]
