"""`tickets seed`: generated flights loaded with COPY, with progress output."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import trio

from api.cli import SeedProgress, main
from persistence.database import Database


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


async def _ticket_counts(url: str) -> tuple[int, int, int]:
    database = await Database.open(url, min_size=1, max_size=1)
    try:
        row = (
            await database.fetch(
                """
                SELECT count(*), count(DISTINCT flight_id),
                       count(*) FILTER (WHERE status = 'available' AND seat BETWEEN 1 AND 100)
                FROM tickets
                """
            )
        )[0]
        await database.execute("TRUNCATE outbox, flight_events, tickets, passengers, flights RESTART IDENTITY CASCADE")
        return row[0], row[1], row[2]
    finally:
        await database.close()


async def _empty_tables(url: str) -> None:
    database = await Database.open(url, min_size=1, max_size=1)
    try:
        await database.execute("TRUNCATE outbox, flight_events, tickets, passengers, flights RESTART IDENTITY CASCADE")
    finally:
        await database.close()


def test_seed_100k_tickets(database_url, monkeypatch, capsys, restore_logging):
    monkeypatch.setenv("TICKETS_DATABASE_URL", database_url)
    trio.run(_empty_tables, database_url)

    assert main(["seed", "--flights", "1000", "--seats", "100"]) == 0

    tickets, flights, available = trio.run(_ticket_counts, database_url)
    assert tickets == 100_000
    assert flights == 1000
    assert available == 100_000
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("seeded ")]
    assert progress[-1].startswith("seeded 100000 of 100000 tickets (100%) in ")
    assert len(progress) == 10


def test_seed_progress_plain_lines():
    stream = io.StringIO()
    progress = SeedProgress(1000, stream)

    for _ in range(8):
        progress.advance(125)

    lines = stream.getvalue().splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        "seeded 125 of 1000 tickets (12%)",
        "seeded 250 of 1000 tickets (25%)",
        "seeded 375 of 1000 tickets (37%)",
        "seeded 500 of 1000 tickets (50%)",
        "seeded 625 of 1000 tickets (62%)",
        "seeded 750 of 1000 tickets (75%)",
        "seeded 875 of 1000 tickets (87%)",
        "seeded 1000 of 1000 tickets (100%)",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_seed_progress_bar_on_terminal():
    stream = _Terminal()
    progress = SeedProgress(1000, stream)

    progress.advance(500)
    progress.advance(500)
    progress.close()

    output = stream.getvalue()
    assert "seeding: 100%" in output
    assert "1.00k/1.00k" in output
    assert "seeded " not in output
