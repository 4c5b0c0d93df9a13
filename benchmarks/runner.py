"""Run the suite: seed each scenario, serve each implementation, load it, audit it, report."""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cancel_storm, profile, report
from .audit import Check, audit_database, audit_replies, load_expectations
from .database import DatabaseServer, SeededData, read_state, seed_template
from .layouts import ONE_PROCESS, NODES, ServiceLayout
from .load import LoadResult, LoadSpec, run_wrk, wrk_version
from .machine import describe_code, describe_machine
from .processes import REPO_ROOT, ProcessGroup, wait_for_quiet_machine
from .scenarios import IMPLEMENTATIONS, SCENARIOS, SERVICE, Implementation, Scenario
from .servers import Servers, start_servers, stop_servers

log = logging.getLogger(__name__)

WRITE_KINDS = ("book", "buy", "buy_held", "cancel", "other_2xx")
READ_KINDS = ("flights", "tickets", "empty_list")


@dataclass(frozen=True)
class Options:
    scenarios: list[str]
    quick: bool
    duration: float
    threads: int
    max_drain: float
    output_dir: Path
    implementations: list[str]
    profile: bool
    switch_interval: float | None = None
    repeat: int = 1
    # Before each load, wait up to quiet_wait seconds for the machine's CPU
    # use to drop below quiet_percent of one core (0 disables the wait).
    quiet_wait: float = 0.0
    quiet_percent: float = 25.0
    # The service runs once in each layout; the baselines always run as one process.
    layouts: tuple[ServiceLayout, ...] = (ONE_PROCESS,)


class Suite:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.processes = ProcessGroup()
        self.server = DatabaseServer(os.environ.get("TICKETS_DATABASE_URL") or None)
        self.raw_dir = options.output_dir / "raw"
        # Database names of this run share a prefix, so leftovers of a
        # killed run are easy to find and drop.
        self.prefix = f"bench_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"

    def run(self) -> dict[str, Any]:
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        runs: list[dict[str, Any]] = []
        machine: dict[str, Any] = {}
        try:
            self.server.start()
            machine = describe_machine(wrk_version(), self.server.describe())
            machine["code"] = describe_code()
            for name in self.options.scenarios:
                scenario = SCENARIOS[name]
                if scenario.script is None:
                    runs.append(self._run_cancel_storm(scenario))
                else:
                    runs.extend(self._run_scenario(scenario))
        finally:
            self.processes.stop_all()
            self.server.stop()
        return report.build(
            machine=machine,
            runs=runs,
            settings={
                "quick": self.options.quick,
                "duration_s": self.options.duration,
                "wrk_threads": self.options.threads,
                "max_drain_s": self.options.max_drain,
                "repeat": self.options.repeat,
                "quiet_wait_s": self.options.quiet_wait,
                "quiet_percent": self.options.quiet_percent,
                "switch_interval_s": self.options.switch_interval,
                "service_layouts": [layout.label for layout in self.options.layouts],
                "service_settings": {key: value for key, value in os.environ.items() if key.startswith("TICKETS_") and "SECRET" not in key and key != "TICKETS_DATABASE_URL"},
            },
            elapsed_s=time.time() - started,
        )

    # Load scenarios --------------------------------------------------------

    def _run_scenario(self, scenario: Scenario) -> list[dict[str, Any]]:
        flights, seats = scenario.size(self.options.quick)
        template = f"{self.prefix}_{scenario.name.replace('-', '_')}_tpl"
        log.info("%s: seeding %d flights of %d seats", scenario.name, flights, seats)
        seeded = seed_template(self.server, template, flights, seats)
        runs = []
        try:
            # Repetitions go round the implementations, so a slow spell of
            # the machine is spread over all of them.
            for repetition in range(1, self.options.repeat + 1):
                for name in scenario.implementations:
                    if name not in self.options.implementations:
                        continue
                    layouts = self.options.layouts if name == SERVICE else (ONE_PROCESS,)
                    for layout in layouts:
                        run = self._run_load(scenario, IMPLEMENTATIONS[name], layout, template, seeded, repetition)
                        runs.append(run)
        finally:
            self.drop_database(template)
        return runs

    def _run_load(
        self,
        scenario: Scenario,
        implementation: Implementation,
        layout: ServiceLayout,
        template: str,
        seeded: SeededData,
        repetition: int,
    ) -> dict[str, Any]:
        label = f"{scenario.name}-{implementation.name}"
        if layout.slug:
            label += f"-{layout.slug}"
        if self.options.repeat > 1:
            label += f"-{repetition}"
        flights, seats = scenario.size(self.options.quick)
        result: dict[str, Any] = {
            "scenario": scenario.name,
            "implementation": implementation.name,
            "layout": layout.as_dict(),
            "repetition": repetition,
            "connections": scenario.connection_count(self.options.quick),
            "data": {"flights": flights, "seats_per_flight": seats, "tickets": seeded.tickets},
            "error": None,
        }
        checks: list[Check] = []
        database_name = None
        servers = Servers()
        try:
            env = dict(os.environ)
            env.update(
                {
                    "TICKETS_LOG_LEVEL": "WARNING",
                    "TICKETS_MAIL_URL": "console://",
                    "BENCH_CEILING_FLIGHTS": str(flights),
                    "BENCH_CEILING_SEATS": str(seats),
                }
            )
            url = None
            if implementation.uses_database:
                layout_part = f"_{layout.slug}" if layout.slug else ""
                database_name = (
                    f"{self.prefix}_{scenario.name.replace('-', '_')}_{implementation.name.replace('-', '_')}"
                    f"{layout_part}_{repetition}"
                )
                url = self.server.create_database(database_name, template)
                env["TICKETS_DATABASE_URL"] = url

            if self.options.quiet_wait > 0:
                waited, busy = wait_for_quiet_machine(self.options.quiet_percent, self.options.quiet_wait)
                result["machine_before_load"] = {"waited_s": round(waited, 1), "busy_percent": round(busy, 1)}
                if busy >= self.options.quiet_percent:
                    log.warning("%s: the machine stayed busy (%.0f%% of a core) for %.0f s; loading anyway", label, busy, waited)

            start_servers(
                self.processes, implementation, layout, env, self.options.switch_interval, self.raw_dir, label, servers
            )
            if servers.internal_ports:
                result["nodes"] = [
                    {"url": node_url, "internal_port": internal_port}
                    for node_url, internal_port in zip(servers.urls, servers.internal_ports)
                ]

            spec = LoadSpec(
                script=scenario.script or "",
                connections=result["connections"],
                threads=self.options.threads,
                duration=self.options.duration,
                max_drain=self.options.max_drain,
                env={
                    "BENCH_TICKET_FIRST": str(seeded.ticket_first),
                    "BENCH_TICKET_LAST": str(seeded.ticket_last),
                    "BENCH_FLIGHT_FIRST": str(seeded.flight_first),
                    "BENCH_FLIGHT_LAST": str(seeded.flight_last),
                    "BENCH_SEED": str(sum(map(ord, scenario.name))),
                },
            )
            profiler = None
            if self.options.profile and implementation.name == SERVICE:
                if layout == ONE_PROCESS:
                    profiler = profile.start(
                        self.processes, servers.pids[0], max(1, int(self.options.duration)), self.raw_dir / f"{label}.pyspy.txt"
                    )
                else:
                    log.info("%s: not profiled, because py-spy samples one process and this run has %s", label, layout.label)
            log.info(
                "%s: loading %s (%s) for %g s with %d connections",
                scenario.name, implementation.name, layout.label, spec.duration, spec.connections,
            )
            load = run_wrk(
                self.processes, spec, servers.urls, servers.pids, self.server.postmaster_pid, self.raw_dir, label
            )
            if profiler is not None:
                result["profile"] = profile.finish(self.processes, profiler)

            exit_codes = stop_servers(self.processes, servers)
            if layout.mode == NODES:
                result["server_exit_codes"] = exit_codes
            else:
                result["server_exit_code"] = exit_codes[0]
            result.update(summarize_load(load))

            checks += audit_replies(load.tallies, overload_expected=scenario.overload_expected)
            if url is not None:
                state = read_state(url)
                checks += audit_database(load.tallies, load_expectations(load.expect_path), state)
                result["database"] = {
                    "status_counts": state.status_counts,
                    "held": len(state.held),
                }
                if state.first_sale is not None and state.last_sale is not None:
                    result["database"]["sale_span_s"] = round((state.last_sale - state.first_sale).total_seconds(), 3)
                result["database"]["seconds_to_sell"] = state.seconds_to_sell
        except Exception as error:  # noqa: BLE001 - recorded as a failed run; the suite goes on
            log.exception("%s: run against %s (%s) failed", scenario.name, implementation.name, layout.label)
            result["error"] = f"{type(error).__name__}: {error}"
            checks.append(Check("run_completed", False, result["error"]))
        finally:
            stop_servers(self.processes, servers)
            if database_name is not None:
                self.drop_database(database_name)

        result["audit"] = {"passed": all(check.passed for check in checks), "checks": [check.as_dict() for check in checks]}
        log.info(
            "%s/%s (%s) #%d: %.0f req/s (%.0f accepted, %.0f rejected), p99 %.1f ms, "
            "server CPU %.2f ms/request, other CPU %.0f%%, audit %s",
            scenario.name,
            implementation.name,
            layout.label,
            repetition,
            result.get("rates", {}).get("total", 0),
            result.get("rates", {}).get("accepted", 0),
            result.get("rates", {}).get("rejected", 0),
            result.get("latency_ms", {}).get("p99", 0),
            result.get("server_cpu", {}).get("ms_per_request") or 0,
            result.get("cpu_percent_of_one_core", {}).get("other", 0),
            "passed" if result["audit"]["passed"] else "FAILED",
        )
        return result

    def _run_cancel_storm(self, scenario: Scenario) -> dict[str, Any]:
        return cancel_storm.run(self, scenario)

    def drop_database(self, name: str) -> None:
        try:
            self.server.drop_database(name)
        except Exception as error:  # noqa: BLE001 - a leftover database must not hide the results
            log.warning("could not drop database %s: %s", name, error)


def _cpu_percentages(load: LoadResult, wall: float) -> dict[str, float]:
    """Return CPU use during the run in % of one core: ours, and the rest of the machine's ("other").

    "postgres" counts the server's postmaster and all its backends, including
    backends that serve other clients of the same server.
    """
    if not wall:
        return {"server": 0.0, "wrk": 0.0, "postgres": 0.0, "machine": 0.0, "other": 0.0}
    ours = load.server_cpu_seconds + load.wrk_cpu_seconds + load.postgres_cpu_seconds
    return {
        "server": round(100 * load.server_cpu_seconds / wall, 1),
        "wrk": round(100 * load.wrk_cpu_seconds / wall, 1),
        "postgres": round(100 * load.postgres_cpu_seconds / wall, 1),
        "machine": round(100 * load.machine_cpu_seconds / wall, 1),
        "other": round(100 * max(0.0, load.machine_cpu_seconds - ours) / wall, 1),
    }


def cpu_ms_per_request(cpu_seconds: float, requests: int) -> float | None:
    """Return CPU milliseconds per request, or None when no request completed."""
    if requests <= 0:
        return None
    return round(1000 * cpu_seconds / requests, 3)


def summarize_load(load: LoadResult) -> dict[str, Any]:
    """Turn wrk's tallies into counts, rates per second, latency in ms and CPU use.

    ``server_cpu`` is the CPU time of the server processes (with their
    workers) while wrk ran, over the requests wrk completed, sending window
    and drain alike. PostgreSQL's share is given apart, because the
    PostgreSQL server may also serve other clients.
    """
    tallies = load.tallies
    ok = tallies.get("ok", {})
    statuses = {int(status): count for status, count in tallies.get("statuses", {}).items()}

    accepted = sum(ok.get(kind, 0) for kind in WRITE_KINDS)
    reads = sum(ok.get(kind, 0) for kind in READ_KINDS)
    rejected = sum(count for status, count in statuses.items() if 400 <= status < 500)
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    completed = tallies.get("received", 0)
    socket_errors = sum(tallies.get("socket_errors", {}).values())
    latency = tallies.get("latency_us", {})
    wall = load.window_seconds + max(load.drain_seconds, 0.0)

    return {
        "window_s": round(load.window_seconds, 3),
        "drain_s": round(load.drain_seconds, 3),
        "drained": load.drained,
        "counts": {
            "completed": completed,
            "accepted": accepted,
            "rejected": rejected,
            "reads": reads,
            "server_errors": server_errors,
            "socket_errors": socket_errors,
            "non_json": tallies.get("non_json", 0),
            "unanswered": max(0, tallies.get("sent_total", 0) - completed),
        },
        "rates": {
            "total": round(load.rate(completed), 1),
            "accepted": round(load.rate(accepted), 1),
            "rejected": round(load.rate(rejected), 1),
            "reads": round(load.rate(reads), 1),
        },
        "latency_ms": {
            name: round(latency.get(key, 0) / 1000, 2)
            for name, key in (("p50", "p50"), ("p75", "p75"), ("p90", "p90"), ("p99", "p99"), ("p999", "p999"), ("max", "max"), ("mean", "mean"))
        },
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "error_codes": tallies.get("codes", {}),
        "ok_by_kind": ok,
        "sent_by_kind": tallies.get("sent", {}),
        "cpu_percent_of_one_core": _cpu_percentages(load, wall),
        "server_cpu": {
            "seconds": round(load.server_cpu_seconds, 3),
            "processes": load.server_processes,
            "ms_per_request": cpu_ms_per_request(load.server_cpu_seconds, completed),
            "postgres_ms_per_request": cpu_ms_per_request(load.postgres_cpu_seconds, completed),
        },
        "load_average_1m": round(load.load_average, 2),
        "raw_output": _shown_path(load.output_path),
        **({"load_split": _load_split(load)} if load.parts else {}),
    }


def _shown_path(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)


def _load_split(load: LoadResult) -> list[dict[str, Any]]:
    """Describe each wrk process of a split load: its node, connections, completed requests and latency in ms."""
    return [
        {
            "url": part["url"],
            "connections": part["connections"],
            "completed": part["completed"],
            "latency_ms": {name: round(value / 1000, 2) for name, value in part["latency_us"].items()},
            "raw_output": _shown_path(Path(part["raw_output"])),
        }
        for part in load.parts
    ]
