"""The storage port of the engine; ``persistence`` implements it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .seats import Changes, Flight


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a batch is committed under: this process's id and the epoch it acquired."""

    owner: str
    epoch: int


class FlightStore(Protocol):
    """Loads flights and writes a batch's changes in one transaction.

    ``commit`` raises ``StaleFlightState`` when a guard finds a row that
    differs from memory, ``LeaseLost`` when ``fence`` no longer matches the
    flight's lease, and another ``StoreError`` for any other failure. In
    every case nothing of the batch is written.
    """

    async def load_flight(self, flight_id: int) -> Flight | None:
        """Return the flight with its tickets, or None if no such flight exists."""

    async def commit(self, flight_id: int, changes: Changes, *, fence: Fence | None = None) -> None:
        """Write the changes atomically, each ticket guarded by its expected status and version.

        With a ``fence``, the same transaction checks that the flight's lease
        still has that owner and epoch, and extends it.
        """

    async def flight_of_ticket(self, ticket_id: int) -> int | None:
        """Return the id of the flight the ticket belongs to, or None if it does not exist."""

    async def ticket_ids(self, flight_id: int) -> list[int]:
        """Return the ids of the flight's tickets (none if no such flight)."""


class StoreError(Exception):
    """The store could not complete an operation."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or failed; nothing was written."""


class StaleFlightState(StoreError):
    """A guarded write found rows that differ from the actor's memory; nothing was written."""


class LeaseLost(StoreError):
    """The flight's lease has another owner or epoch than the batch's fence; nothing was written."""
