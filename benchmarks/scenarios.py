"""The load scenarios and the implementations they run against."""

from __future__ import annotations

import sys
from dataclasses import dataclass

SERVICE = "service"
CEILING = "ceiling"
CONVENTIONAL_TRIO = "conventional-trio"
CONVENTIONAL_ASYNCIO = "conventional-asyncio"
ALL_IMPLEMENTATIONS = (SERVICE, CEILING, CONVENTIONAL_TRIO, CONVENTIONAL_ASYNCIO)


@dataclass(frozen=True)
class Implementation:
    name: str
    description: str
    uses_database: bool

    def command(self, port: int, switch_interval: float | None = None, workers: int = 1) -> list[str]:
        """Return the command line that serves this implementation on 127.0.0.1:``port``.

        With ``switch_interval`` (seconds) the server runs under
        ``benchmarks.launch``, which sets the GIL switch interval first.
        ``workers`` above 1 serves the service with ``tickets serve --workers``;
        the baselines always run as one process.
        """
        if workers > 1 and self.name != SERVICE:
            raise ValueError(f"{self.name} runs as one process; only {SERVICE} takes {workers} workers")
        python = [sys.executable, "-m"]
        if switch_interval is not None:
            python = [sys.executable, "-m", "benchmarks.launch", repr(switch_interval)]
        if self.name == SERVICE:
            command = [*python, "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
            if workers > 1:
                command += ["--workers", str(workers)]
            return command
        worker, module = {
            CEILING: ("trio", "benchmarks.baselines.ceiling:app"),
            CONVENTIONAL_TRIO: ("trio", "benchmarks.baselines.conventional_trio:app"),
            CONVENTIONAL_ASYNCIO: ("uvloop", "benchmarks.baselines.conventional_asyncio:app"),
        }[self.name]
        # --workers 0 serves in this process, as the service does; the
        # timeouts are the ones api/server.py gives Hypercorn.
        return [
            *python, "hypercorn",
            "--worker-class", worker,
            "--workers", "0",
            "--bind", f"127.0.0.1:{port}",
            "--keep-alive", "15",
            "--read-timeout", "30",
            "--graceful-timeout", "10",
            module,
        ]


IMPLEMENTATIONS = {
    SERVICE: Implementation(SERVICE, "the service: flight actors, group commit (Quart-Trio, Hypercorn trio worker)", True),
    CEILING: Implementation(
        CEILING, "same stack, same pydantic validation, fixed reply, no database: the most this stack can serve", False
    ),
    CONVENTIONAL_TRIO: Implementation(
        CONVENTIONAL_TRIO,
        "same stack and asyncpg bridge, one transaction per request with SELECT ... FOR UPDATE, no actors",
        True,
    ),
    CONVENTIONAL_ASYNCIO: Implementation(
        CONVENTIONAL_ASYNCIO,
        "plain Quart on Hypercorn's uvloop worker, asyncpg directly, one transaction per request with SELECT ... FOR UPDATE",
        True,
    ),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    # wrk Lua script in benchmarks/lua; None for cancel-storm, which sends one webhook.
    script: str | None
    flights: int
    seats: int
    connections: int
    implementations: tuple[str, ...]
    quick_flights: int | None = None
    quick_seats: int | None = None
    quick_connections: int | None = None
    # Load past what a one-process server with a 10-connection pool can
    # queue within its 5 s deadlines on a busy machine: 503 replies pass the audit.
    overload_expected: bool = False

    def size(self, quick: bool) -> tuple[int, int]:
        if quick:
            return self.quick_flights or self.flights, self.quick_seats or self.seats
        return self.flights, self.seats

    def connection_count(self, quick: bool) -> int:
        return (self.quick_connections or self.connections) if quick else self.connections


SCENARIOS = {
    scenario.name: scenario
    for scenario in [
        Scenario(
            "flash-sale",
            "one flight of 5,000 seats; 256 connections each buy a random seat for a new passenger, "
            "so most attempts collide once the flight fills: accepted and rejected throughput under contention",
            "buy_random.lua",
            flights=1,
            seats=5000,
            connections=256,
            implementations=ALL_IMPLEMENTATIONS,
            overload_expected=True,
        ),
        Scenario(
            "spread",
            "1,000 flights of 150 seats; 64 connections buy uniformly random tickets for new passengers",
            "buy_random.lua",
            flights=1000,
            seats=150,
            connections=64,
            implementations=ALL_IMPLEMENTATIONS,
            quick_flights=200,
        ),
        Scenario(
            "mixed",
            "100 flights of 150 seats; 64 connections: 35% GET /flights, 35% GET /tickets/flight-{id}, "
            "20% book, 10% buy or cancel a hold of the same thread (half each), or buy a random seat when it has none",
            "mixed.lua",
            flights=100,
            seats=150,
            connections=64,
            implementations=ALL_IMPLEMENTATIONS,
        ),
        Scenario(
            "hold-churn",
            "10 flights of 500 seats; 64 connections: each passenger books a random seat, cancels that "
            "reservation, books again: the write path without selling out",
            "hold_churn.lua",
            flights=10,
            seats=500,
            connections=64,
            implementations=ALL_IMPLEMENTATIONS,
        ),
        Scenario(
            "cancel-storm",
            "one flight whose 5,000 seats are held by 5,000 passengers (odd seats booked, even seats sold); "
            "one flight_canceled webhook; time until every passenger's email reached a local SMTP server",
            None,
            flights=1,
            seats=5000,
            connections=1,
            implementations=(SERVICE,),
            quick_seats=300,
        ),
    ]
}
