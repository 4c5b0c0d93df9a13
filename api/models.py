"""Request bodies, validated with pydantic straight from the raw JSON bytes."""

from __future__ import annotations

import re
from typing import Annotated

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
