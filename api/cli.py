"""The ``tickets`` command: serve, migrate, seed, config."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TextIO

import pydantic
import trio

from .config import Settings
from .config_report import describe_invalid_settings, format_settings
from .logs import configure_logging

log = logging.getLogger("tickets")

_EPILOG = "Settings come from TICKETS_* environment variables; `tickets config` prints them."


def _bounded_int(low: int, high: int, what: str):
    """Return an argparse type that accepts a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: expected a whole number from {low} to {high}")
        return int(text)

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickets", description="Flight-ticket sales service.", epilog=_EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP API (applies migrations first)",
        description="Apply pending migrations, then serve the HTTP API until SIGINT or SIGTERM.",
        epilog=_EPILOG,
    )
    serve.add_argument("--demo", action="store_true", help="load the demo flights into an empty database first")
    serve.add_argument("--host", metavar="ADDRESS", help="IP address or host name to listen on (default: TICKETS_HOST, 127.0.0.1)")
    serve.add_argument(
        "--port",
        type=_bounded_int(0, 65535, "port"),
        metavar="PORT",
        help="TCP port to listen on, 0 to 65535 (default: TICKETS_PORT, 8000)",
    )
    serve.add_argument(
        "--workers",
        type=_bounded_int(1, 64, "worker count"),
        default=1,
        metavar="N",
        help="server processes sharing the port, each owning its own flights, 1 to 64 (default: 1)",
    )
    # Set by `serve --workers N` on the processes it starts.
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    commands.add_parser(
        "migrate",
        help="apply pending database migrations and exit",
        description="Apply pending database migrations and exit. Takes no options.",
        epilog=_EPILOG,
    )

    seed = commands.add_parser(
        "seed",
        help="load flights: the demo sample, or --flights generated ones",
        description="Load the demo flights into an empty database, or add --flights generated flights "
        "of --seats seats each with COPY. Shows a progress bar on a terminal and progress lines otherwise.",
        epilog=_EPILOG,
    )
    seed.add_argument(
        "--flights",
        type=_bounded_int(1, 10_000_000, "flight count"),
        metavar="N",
        help="number of generated flights, 1 to 10,000,000 (default: load the demo sample instead)",
    )
    seed.add_argument(
        "--seats",
        type=_bounded_int(1, 100_000, "seat count"),
        default=150,
        metavar="M",
        help="seats (tickets) per generated flight, 1 to 100,000 (default: 150)",
    )

    commands.add_parser(
        "config",
        help="print the effective settings, secrets masked",
        description="Print every setting: variable, effective value (secrets and URL passwords masked), "
        "unit, and whether it came from the environment or is the default. Takes no options.",
        epilog=_EPILOG,
    )

    outbox = commands.add_parser(
        "outbox",
        help="list recent passenger notifications and their state",
        description="List the newest passenger notifications from the outbox with their delivery state.",
        epilog=_EPILOG,
    )
    outbox.add_argument(
        "--limit",
        type=_bounded_int(1, 10_000, "limit"),
        default=50,
        metavar="N",
        help="how many notifications to list, newest first, 1 to 10,000 (default: 50)",
    )
    return parser


async def _outbox(settings: Settings, limit: int) -> None:
    from notify import format_notifications, recent_notifications

    from .runtime import open_database

    async with open_database(settings) as database:
        print(format_notifications(await recent_notifications(database, limit=limit)), end="")


async def _migrate(settings: Settings) -> None:
    from persistence.migrations import migrate

    from .runtime import open_database

    async with open_database(settings) as database:
        await migrate(database)


class SeedProgress:
    """Seeding progress: a tqdm bar on a terminal, otherwise a line at every tenth of the total."""

    def __init__(self, total_tickets: int, stream: TextIO) -> None:
        self.total = total_tickets
        self.done = 0
        self._stream = stream
        self._started = time.monotonic()
        self._tenths_shown = 0
        self._bar = None
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_tickets, unit=" tickets", unit_scale=True, file=stream, desc="seeding")

    def advance(self, tickets: int) -> None:
        self.done += tickets
        if self._bar is not None:
            self._bar.update(tickets)
            return
        tenths = self.done * 10 // self.total
        if tenths > self._tenths_shown:
            self._tenths_shown = tenths
            elapsed = time.monotonic() - self._started
            percent = self.done * 100 // self.total
            print(f"seeded {self.done} of {self.total} tickets ({percent}%) in {elapsed:.1f} s", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def _seed(settings: Settings, flights: int | None, seats: int, stream: TextIO) -> None:
    from persistence.migrations import migrate
    from persistence.seed import seed_demo, seed_generated

    from .runtime import open_database

    async with open_database(settings) as database:
        await migrate(database)
        if flights is None:
            await seed_demo(database)
            return
        progress = SeedProgress(flights * seats, stream)
        started = time.monotonic()
        try:
            flight_ids = await seed_generated(database, flights, seats, on_progress=progress.advance)
        finally:
            progress.close()
        elapsed = time.monotonic() - started
        log.info(
            "loaded %d flights with %d seats each (%d tickets) in %.1f s",
            len(flight_ids),
            seats,
            len(flight_ids) * seats,
            elapsed,
        )


def load_settings(**overrides: object) -> Settings | None:
    """Read the settings; print each invalid one to stderr and return None if any is invalid."""
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as error:
        for line in describe_invalid_settings(error):
            print(f"tickets: {line}", file=sys.stderr)
        print("tickets: not started; fix the settings above", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    overrides = {}
    if arguments.command == "serve":
        if arguments.host is not None:
            overrides["host"] = arguments.host
        if arguments.port is not None:
            overrides["port"] = arguments.port
    settings = load_settings(**overrides)
    if settings is None:
        return 2

    if arguments.command == "config":
        print(format_settings(settings))
        return 0

    configure_logging(settings.log_level, settings.log_format)
    if arguments.command == "serve":
        from .server import run_server

        if arguments.workers > 1:
            if settings.port == 0:
                print("tickets: --workers needs a fixed --port; 0 would give each worker its own port", file=sys.stderr)
                return 2
            from .workers import run_workers

            return run_workers(settings, arguments.workers, demo=arguments.demo)
        trio.run(lambda: run_server(settings, demo=arguments.demo, worker=arguments.worker))
    elif arguments.command == "migrate":
        trio.run(_migrate, settings)
    elif arguments.command == "seed":
        trio.run(_seed, settings, arguments.flights, arguments.seats, sys.stderr)
    elif arguments.command == "outbox":
        trio.run(_outbox, settings, arguments.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
