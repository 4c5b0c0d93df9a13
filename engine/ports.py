"""What the engine needs from storage; ``persistence`` implements it."""

from __future__ import annotations

from typing import Protocol

from .seats import Changes, Flight


class FlightStore(Protocol):
    """Loads flights and writes a batch's changes in one transaction.

    ``commit`` raises ``StaleFlightState`` when a guard finds a row that
    differs from memory, and another ``StoreError`` for any other failure;
    either way nothing of the batch is written.
    """

    async def load_flight(self, flight_id: int) -> Flight | None:
        """Return the flight with its tickets, or None if no such flight exists."""

    async def commit(self, flight_id: int, changes: Changes) -> None:
        """Write the changes atomically, each ticket guarded by its expected status and version."""

    async def flight_of_ticket(self, ticket_id: int) -> int | None:
        """Return the id of the flight the ticket belongs to, or None if it does not exist."""


class StoreError(Exception):
    """The store could not complete an operation."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or failed; nothing was written."""


class StaleFlightState(StoreError):
    """A guarded write found rows that differ from the actor's memory; nothing was written."""
