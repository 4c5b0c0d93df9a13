"""The engine's FlightStore on PostgreSQL: load a flight, commit a batch.

A flight loads in one statement: its row and its tickets as arrays. Batches
are written by ``batch_writes`` in groups (``group_commit``): the batches of
every actor that commits at the same moment share one transaction.
"""

from __future__ import annotations

import logging

import asyncpg

from engine.ports import Fence
from engine.seats import Changes, Flight, FlightInfo, FlightStatus, Passenger, Ticket, TicketStatus

from .batch_writes import Batch, write_batches
from .database import Database
from .group_commit import GroupCommitter

log = logging.getLogger(__name__)

# One statement, so the flight row and its tickets come from one snapshot.
_LOAD_FLIGHT = """
SELECT f.id, f.company, f.departure, f.arrival, f.departure_time, f.status,
       t.ids, t.seats, t.statuses, t.booked_until, t.date_of_sale, t.versions,
       t.emails, t.pass_numbers, t.firstnames, t.lastnames
FROM flights AS f
LEFT JOIN LATERAL (
    SELECT array_agg(t.id) AS ids, array_agg(t.seat) AS seats, array_agg(t.status) AS statuses,
           array_agg(t.booked_until) AS booked_until, array_agg(t.date_of_sale) AS date_of_sale,
           array_agg(t.version) AS versions,
           array_agg(p.email) AS emails, array_agg(p.pass_number) AS pass_numbers,
           array_agg(p.firstname) AS firstnames, array_agg(p.lastname) AS lastnames
    FROM tickets AS t LEFT JOIN passengers AS p ON p.id = t.passenger_id
    WHERE t.flight_id = f.id
) AS t ON true
WHERE f.id = $1
"""

_FLIGHT_OF_TICKET = "SELECT flight_id FROM tickets WHERE id = $1"

_TICKET_IDS = "SELECT id FROM tickets WHERE flight_id = $1"

# A load converts every ticket's status, and a dict lookup costs less than
# calling the enum class.
_TICKET_STATUS = {status.value: status for status in TicketStatus}


class PostgresFlightStore:
    """Implements engine.ports.FlightStore with one bridge crossing per call.

    A fenced commit extends the flight's lease to ``lease_ttl`` seconds from
    the transaction's start. Commits of several flights at once share
    transactions, up to ``commit_groups`` of them running at a time.
    """

    def __init__(
        self,
        database: Database,
        *,
        idempotency_ttl: float = 24 * 3600,
        lease_ttl: float = 5.0,
        commit_groups: int = 2,
    ) -> None:
        self._database = database
        self._idempotency_ttl = idempotency_ttl
        self._lease_ttl = lease_ttl
        self.committer = GroupCommitter(self._write_group, max_groups=commit_groups)

    async def load_flight(self, flight_id: int) -> Flight | None:
        row = await self._database.fetchrow(_LOAD_FLIGHT, flight_id)
        return None if row is None else _flight_from_row(row)

    async def commit(self, flight_id: int, changes: Changes, *, fence: Fence | None = None) -> None:
        await self.committer.commit(Batch(flight_id, changes, fence))

    async def flight_of_ticket(self, ticket_id: int) -> int | None:
        return await self._database.fetchval(_FLIGHT_OF_TICKET, ticket_id)

    async def ticket_ids(self, flight_id: int) -> list[int]:
        return [row["id"] for row in await self._database.fetch(_TICKET_IDS, flight_id)]

    async def _write_group(self, batches: list[Batch]) -> None:
        await self._database.transaction(
            write_batches, batches, idempotency_ttl=self._idempotency_ttl, lease_ttl=self._lease_ttl
        )


def _flight_from_row(row: asyncpg.Record) -> Flight:
    info = FlightInfo(row["id"], row["company"], row["departure"], row["arrival"], row["departure_time"])
    tickets = []
    if row["ids"] is not None:
        for ticket_id, seat, status, booked_until, date_of_sale, version, email, pass_number, firstname, lastname in zip(
            row["ids"], row["seats"], row["statuses"], row["booked_until"], row["date_of_sale"], row["versions"],
            row["emails"], row["pass_numbers"], row["firstnames"], row["lastnames"],
        ):
            holder = None if email is None else Passenger(email, pass_number, firstname, lastname)
            tickets.append(Ticket(ticket_id, seat, _TICKET_STATUS[status], holder, booked_until, date_of_sale, version))
    return Flight(info, FlightStatus(row["status"]), tickets)
