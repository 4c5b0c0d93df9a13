"""Build the report (ratios, targets), and write it as JSON, Markdown and a PNG chart."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from .layouts import NODES, ONE_PROCESS, SINGLE, WORKERS
from .scenarios import ALL_IMPLEMENTATIONS, CEILING, CONVENTIONAL_ASYNCIO, CONVENTIONAL_TRIO, SCENARIOS, SERVICE

FLASH_SALE_CONNECTIONS = 256

# Scaling targets of several processes against one: server CPU per request
# may grow by at most this much (the cost of forwarding), and throughput
# must not fall.
MAX_CPU_INCREASE_PERCENT = 25.0
MIN_THROUGHPUT_RATIO = 1.0


# Runs that used more than this much CPU of other processes (% of one core) are flagged.
DISTURBED_PERCENT = 20.0


def layout_label(run: dict[str, Any]) -> str:
    """Return the run's process layout as shown in reports ("1 process", "2 workers", "2 nodes")."""
    return run.get("layout", {}).get("label", ONE_PROCESS.label)


def run_name(run: dict[str, Any]) -> str:
    """Return the implementation's name, followed by the layout when it is not one process."""
    label = layout_label(run)
    return run["implementation"] if label == ONE_PROCESS.label else f"{run['implementation']} ({label})"


_MODE_ORDER = (SINGLE, WORKERS, NODES)


def _order(run: dict[str, Any]) -> tuple[int, int, int]:
    """Sort key: implementation as in ALL_IMPLEMENTATIONS, then one process, workers, nodes, by count."""
    layout = run.get("layout", ONE_PROCESS.as_dict())
    return ALL_IMPLEMENTATIONS.index(run["implementation"]), _MODE_ORDER.index(layout["mode"]), layout["processes"]


def _find(
    runs: list[dict[str, Any]], scenario: str, implementation: str, layout: str = ONE_PROCESS.label
) -> dict[str, Any] | None:
    """Return the representative run of an implementation in a scenario, in ``layout`` (one process by default)."""
    for run in runs:
        if (
            run["scenario"] == scenario
            and run["implementation"] == implementation
            and layout_label(run) == layout
            and run.get("representative", True)
        ):
            return run
    return None


def mark_representatives(runs: list[dict[str, Any]]) -> None:
    """Mark, per scenario, implementation and layout, the run with the median total throughput as representative."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["scenario"], run["implementation"], layout_label(run))].append(run)
    for group in groups.values():
        usable = sorted((run for run in group if _usable(run)), key=lambda run: run["rates"]["total"])
        chosen = usable[(len(usable) - 1) // 2] if usable else group[0]
        for run in group:
            run["representative"] = run is chosen
        if len(group) > 1:
            chosen["repetitions"] = {"runs": len(group), "total_rates": [run["rates"]["total"] for run in usable]}


def _usable(run: dict[str, Any] | None) -> bool:
    return run is not None and not run.get("error") and "rates" in run


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def comparisons(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return, per scenario, the service's throughput and p99 relative to each other implementation."""
    result: dict[str, dict[str, Any]] = {}
    for scenario in dict.fromkeys(run["scenario"] for run in runs):
        service = _find(runs, scenario, SERVICE)
        if not _usable(service):
            continue
        for other_name in ALL_IMPLEMENTATIONS:
            other = _find(runs, scenario, other_name)
            if other_name == SERVICE or not _usable(other):
                continue
            result.setdefault(scenario, {})[other_name] = {
                "throughput_ratio": _ratio(service["rates"]["total"], other["rates"]["total"]),
                "accepted_ratio": _ratio(service["rates"]["accepted"], other["rates"]["accepted"]),
                "p99_ratio": _ratio(service["latency_ms"]["p99"], other["latency_ms"]["p99"]),
            }
    return result


def _target(name: str, met: bool | None, detail: str) -> dict[str, Any]:
    if met is None:
        status = "not evaluated"
    elif met:
        status = "met"
    else:
        status = "not met"
    return {"name": name, "status": status, "detail": detail}


def _throughput_target(runs: list[dict[str, Any]], scenario: str, other_name: str, factor: float) -> dict[str, Any]:
    name = f"{scenario}: service throughput >= {factor} x {other_name}"
    service, other = _find(runs, scenario, SERVICE), _find(runs, scenario, other_name)
    if not (_usable(service) and _usable(other)):
        return _target(name, None, "both runs are needed")
    ratio = service["rates"]["total"] / other["rates"]["total"] if other["rates"]["total"] else 0.0
    return _target(
        name,
        ratio >= factor,
        f"{service['rates']['total']:.0f} vs {other['rates']['total']:.0f} req/s = {ratio:.2f} x",
    )


def targets(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = [
        _throughput_target(runs, "spread", CEILING, 0.85),
        _throughput_target(runs, "flash-sale", CONVENTIONAL_TRIO, 1.5),
        _throughput_target(runs, "flash-sale", CONVENTIONAL_ASYNCIO, 1.0),
    ]
    service = _find(runs, "flash-sale", SERVICE)
    name = f"flash-sale: service p99 <= 100 ms at {FLASH_SALE_CONNECTIONS} connections"
    if not _usable(service) or service["connections"] != FLASH_SALE_CONNECTIONS:
        result.append(_target(name, None, f"needs a service run with {FLASH_SALE_CONNECTIONS} connections"))
    else:
        p99 = service["latency_ms"]["p99"]
        detail = f"p99 {p99:.1f} ms"
        ceiling = _find(runs, "flash-sale", CEILING)
        if _usable(ceiling) and ceiling["rates"]["total"]:
            # Little's law: with N connections always busy, mean latency = N / throughput.
            floor_ms = 1000 * ceiling["connections"] / ceiling["rates"]["total"]
            detail += (
                f"; the ceiling's p99 is {ceiling['latency_ms']['p99']:.0f} ms, and {ceiling['connections']} busy "
                f"connections at its {ceiling['rates']['total']:.0f} req/s mean at least {floor_ms:.0f} ms per request"
            )
        result.append(_target(name, p99 <= 100.0, detail))
    failures = [f"{run['scenario']}/{run_name(run)}#{run.get('repetition', 1)}" for run in runs if not run["audit"]["passed"]]
    result.append(
        _target(
            "zero audit failures",
            not failures,
            f"{len(runs)} runs audited" + (f"; failed: {', '.join(failures)}" if failures else ", all passed"),
        )
    )
    return result


def _cpu_per_request(run: dict[str, Any]) -> float | None:
    return run.get("server_cpu", {}).get("ms_per_request")


def scaling_verdicts(one_process: dict[str, Any] | None, several: dict[str, Any] | None) -> dict[str, Any]:
    """Compare a run of several service processes with the one-process run of the same scenario.

    Returns the CPU-per-request change in percent and the throughput ratio,
    each with its target: CPU per request at most MAX_CPU_INCREASE_PERCENT
    higher, throughput at least MIN_THROUGHPUT_RATIO times.
    """
    cpu_name = f"server CPU per request <= +{MAX_CPU_INCREASE_PERCENT:g}% over 1 process"
    throughput_name = f"throughput >= {MIN_THROUGHPUT_RATIO:.1f} x 1 process"
    result: dict[str, Any] = {"cpu_change_percent": None, "throughput_ratio": None}
    if not (_usable(one_process) and _usable(several)):
        if not _usable(one_process):
            reason = "needs a completed one-process run of the service: add 1 to --workers or --nodes"
        else:
            reason = "this run did not complete"
        result["targets"] = [_target(cpu_name, None, reason), _target(throughput_name, None, reason)]
        return result

    cpu_one_process, cpu_several = _cpu_per_request(one_process), _cpu_per_request(several)
    if cpu_one_process and cpu_several is not None:
        change = 100 * (cpu_several / cpu_one_process - 1)
        result["cpu_change_percent"] = round(change, 1)
        cpu_target = _target(
            cpu_name, change <= MAX_CPU_INCREASE_PERCENT, f"{cpu_several:.2f} vs {cpu_one_process:.2f} ms = {change:+.1f}%"
        )
    else:
        cpu_target = _target(cpu_name, None, "needs completed requests in both runs")

    rate_one_process, rate_several = one_process["rates"]["total"], several["rates"]["total"]
    if rate_one_process:
        ratio = rate_several / rate_one_process
        result["throughput_ratio"] = round(ratio, 3)
        throughput_target = _target(
            throughput_name, ratio >= MIN_THROUGHPUT_RATIO, f"{rate_several:.0f} vs {rate_one_process:.0f} req/s = {ratio:.2f} x"
        )
    else:
        throughput_target = _target(throughput_name, None, "the one-process run completed no requests")
    result["targets"] = [cpu_target, throughput_target]
    return result


def scaling(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return, per load scenario and layout of several service processes, the comparison with one process."""
    rows = []
    service_runs = sorted(
        (run for run in runs if run["implementation"] == SERVICE and run.get("representative", True)),
        key=_order,
    )
    for scenario in dict.fromkeys(run["scenario"] for run in runs):
        several_runs = [run for run in service_runs if run["scenario"] == scenario and layout_label(run) != ONE_PROCESS.label]
        if not several_runs:
            continue
        one_process = _find(runs, scenario, SERVICE)
        for several in several_runs:
            rows.append({"scenario": scenario, "layout": layout_label(several), **scaling_verdicts(one_process, several)})
    return rows


def build(*, machine: dict[str, Any], runs: list[dict[str, Any]], settings: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    mark_representatives(runs)
    failures = [run for run in runs if not run["audit"]["passed"]]
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(elapsed_s, 1),
        "machine": machine,
        "settings": settings,
        "scenarios": {name: SCENARIOS[name].description for name in dict.fromkeys(run["scenario"] for run in runs)},
        "runs": runs,
        "comparisons": comparisons(runs),
        "targets": targets(runs),
        "scaling": scaling(runs),
        "audit_failures": len(failures),
        "passed": not failures,
    }


# Markdown ---------------------------------------------------------------------


def _format_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _format_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _load_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| implementation | total req/s | accepted req/s | rejected req/s | reads req/s | p50 ms | p90 ms | p99 ms | max ms "
        "| 5xx / socket / non-JSON | CPU % server / wrk / PG / other | server CPU ms/req | audit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |",
    ]
    for run in runs:
        if not run.get("representative", True):
            continue
        audit = "passed" if run["audit"]["passed"] else "**FAILED**"
        name = run_name(run)
        repetitions = run.get("repetitions")
        if repetitions:
            rates_seen = repetitions["total_rates"]
            name += f" (median of {repetitions['runs']}: {min(rates_seen):,.0f}-{max(rates_seen):,.0f})"
        if run.get("error") or "rates" not in run:
            lines.append(f"| {name} | - | - | - | - | - | - | - | - | - | - | - | {audit}: {run.get('error')} |")
            continue
        rates, latency, counts, cpu = run["rates"], run["latency_ms"], run["counts"], run["cpu_percent_of_one_core"]
        lines.append(
            f"| {name} | {_format_rate(rates['total'])} | {_format_rate(rates['accepted'])} "
            f"| {_format_rate(rates['rejected'])} | {_format_rate(rates['reads'])} | {_format_ms(latency['p50'])} "
            f"| {_format_ms(latency['p90'])} | {_format_ms(latency['p99'])} | {_format_ms(latency['max'])} "
            f"| {counts['server_errors']} / {counts['socket_errors']} / {counts['non_json']} "
            f"| {cpu['server']:.0f} / {cpu['wrk']:.0f} / {cpu['postgres']:.0f} / {cpu.get('other', 0):.0f} "
            f"| {_format_cpu(_cpu_per_request(run))} | {audit} |"
        )
    return lines


def _format_cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _scaling_lines(report: dict[str, Any]) -> list[str]:
    """Tabulate each scenario's service runs by process count, with the scaling verdicts against one process."""
    rows = report.get("scaling") or []
    if not rows:
        return []
    lines = [
        "",
        "## Scaling",
        "",
        "The service as one process against several (`--workers`, `--nodes`), same scenario and load. "
        "Server CPU is the CPU time of every server process (parent, workers, all nodes) from wrk's start to its "
        "stop, divided by the requests wrk completed. wrk and PostgreSQL are not in it. "
        "PostgreSQL's CPU per request is shown apart and counts every client of that server. "
        "With several nodes, p99 is the highest of the nodes' p99 values, an upper bound.",
        "",
        f"| scenario | processes | total req/s | accepted req/s | p99 ms | server CPU ms/req | PG CPU ms/req "
        f"| CPU/req vs 1 process (<= +{MAX_CPU_INCREASE_PERCENT:g}%) | throughput vs 1 process (>= {MIN_THROUGHPUT_RATIO:.1f} x) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for scenario in dict.fromkeys(row["scenario"] for row in rows):
        one_process = _find(report["runs"], scenario, SERVICE)
        entries = [(one_process, None)] + [
            (_find(report["runs"], scenario, SERVICE, row["layout"]), row) for row in rows if row["scenario"] == scenario
        ]
        for run, row in entries:
            if run is None:
                lines.append(f"| {scenario} | 1 process | - | - | - | - | - | not run | not run |")
                continue
            if row is None:
                verdicts = ["reference", "reference"]
            else:
                verdicts = [_verdict(target) for target in row["targets"]]
            cells = [scenario, layout_label(run)]
            if _usable(run):
                cells += [
                    _format_rate(run["rates"]["total"]),
                    _format_rate(run["rates"]["accepted"]),
                    _format_ms(run["latency_ms"]["p99"]),
                    _format_cpu(_cpu_per_request(run)),
                    _format_cpu(run.get("server_cpu", {}).get("postgres_ms_per_request")),
                ]
            else:
                cells += ["-"] * 5
            lines.append("| " + " | ".join(cells + verdicts) + " |")
    return lines


def _verdict(target: dict[str, Any]) -> str:
    """Return a scaling target's status and measurement for a table cell."""
    status = "**not met**" if target["status"] == "not met" else target["status"]
    return f"{status}: {target['detail']}"


def _sale_progress_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Tabulate how long each implementation took to sell given shares of the seats."""
    rows = [run for run in runs if run.get("database", {}).get("seconds_to_sell") is not None]
    if not rows:
        return []
    shares = ["50%", "80%", "95%"]
    lines = ["", "Seconds from the first sale until this share of the seats was sold (- = not reached):", ""]
    lines += ["| implementation | " + " | ".join(shares) + " |", "| --- |" + " ---: |" * len(shares)]
    for run in rows:
        reached = run["database"]["seconds_to_sell"]
        cells = [f"{reached[share]:.1f}" if share in reached else "-" for share in shares]
        lines.append(f"| {run_name(run)} | " + " | ".join(cells) + " |")
    return lines


def _storm_lines(run: dict[str, Any]) -> list[str]:
    lines = [f"Passengers: {run['data']['passengers']:,}."]
    if run.get("skipped"):
        return lines + ["", f"Not run: {run['skipped']}"]
    if run.get("error"):
        lines += ["", f"Failed: {run['error']}"]
    webhook = run.get("webhook")
    if webhook:
        lines.append(f"Webhook reply: {webhook['status']} in {webhook['reply_s']:.3f} s.")
    emails = run.get("emails")
    if emails:
        lines.append(
            f"Emails: {emails.get('received_in_time', 0):,} of {emails['expected']:,} "
            f"(waited up to {emails['wait_limit_s']:.0f} s, or {emails['stall_limit_s']:.0f} s without a new one); "
            f"first after {emails.get('first_s')} s, last expected one after {emails.get('last_s')} s"
            + (f" ({emails['per_second']:,.0f} emails/s)" if emails.get("per_second") else "")
            + f"; {emails.get('received_total', 0):,} in total after a replay of the webhook."
        )
    lines.append(f"Audit: {'passed' if run['audit']['passed'] else '**FAILED**'}.")
    return lines


def _audit_lines(runs: list[dict[str, Any]]) -> list[str]:
    """List every failed check in full; a passed run gets one line with its count check."""
    lines = []
    for run in runs:
        name = f"{run['scenario']} / {run_name(run)} #{run.get('repetition', 1)}"
        checks = run["audit"]["checks"]
        failed = [check for check in checks if not check["passed"]]
        if failed:
            for check in failed:
                lines.append(f"- {name} / `{check['name']}`: **FAILED**. {check['detail']}")
            continue
        counted = [check["detail"] for check in checks if check["name"] in ("held_count_matches_2xx", "every_passenger_emailed_once")]
        summary = f" {counted[0]}" if counted else ""
        lines.append(f"- {name}: all {len(checks)} checks passed.{summary}")
    return lines


def _profile_lines(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for run in runs:
        profile = run.get("profile")
        if not profile or "top_self" not in profile:
            continue
        lines += ["", f"### {run['scenario']} / service #{run.get('repetition', 1)}", ""]
        lines.append(f"{profile['samples']:,} on-CPU samples at {profile['rate_hz']} Hz over {profile['duration_s']} s.")
        for thread, info in profile["threads"].items():
            lines.append(f"- {thread}: busy {info['busy_percent_of_duration']}% of the run")
        lines += ["", "| function (self) | % of samples |", "| --- | ---: |"]
        lines += [f"| `{item['function']}` | {item['percent']} |" for item in profile["top_self"][:10]]
        lines += ["", "| function (inclusive) | % of samples |", "| --- | ---: |"]
        lines += [f"| `{item['function']}` | {item['percent']} |" for item in profile["top_inclusive"][:12]]
    return lines


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    postgres = machine.get("postgres", {})
    settings = report["settings"]
    lines = [
        f"# Benchmark report {report['generated_at']}",
        "",
        f"{'Quick smoke run: short and not representative. ' if settings['quick'] else ''}"
        f"Suite took {report['elapsed_s']:.0f} s; each load ran {settings['duration_s']:g} s "
        f"(wrk, {settings['wrk_threads']} thread(s)) after which in-flight requests drained.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine.get('cpu_model')}, {machine.get('cores')} cores ({machine.get('usable_cores')} usable); "
        f"memory {machine.get('memory_gib')} GiB; Linux {machine.get('kernel')}; host `{machine.get('hostname')}`",
        f"- Python {machine.get('python')}; "
        + ", ".join(f"{name} {version}" for name, version in machine.get("packages", {}).items() if version),
        f"- {machine.get('wrk')}",
        f"- PostgreSQL, {postgres.get('kind')}: {postgres.get('version')}",
        "- PostgreSQL settings: " + ", ".join(f"`{name}={value}`" for name, value in postgres.get("settings", {}).items()),
        "",
        f"> **Warning:** {machine.get('shared_cores_warning')}.",
        "",
    ]
    code = machine.get("code") or {}
    if code:
        changed = ", ".join(code.get("changed_files") or []) or "none"
        lines += [f"Code: commit `{code.get('commit')}`; tracked files changed since that commit: {changed}.", ""]
    disturbed = [
        f"{run['scenario']}/{run_name(run)}#{run.get('repetition', 1)} {run['cpu_percent_of_one_core']['other']:.0f}%"
        for run in report["runs"]
        if run.get("cpu_percent_of_one_core", {}).get("other", 0) > DISTURBED_PERCENT
    ]
    if disturbed:
        lines += [
            f"> **Warning:** other processes on the machine used more than {DISTURBED_PERCENT:.0f}% of a core during "
            f"{len(disturbed)} run(s), so those numbers are lower than a quiet machine gives: " + ", ".join(disturbed) + ".",
            "",
        ]
    if settings.get("service_settings"):
        lines += ["Service settings from the environment: " + ", ".join(f"`{k}={v}`" for k, v in settings["service_settings"].items()), ""]

    lines += ["## Targets", "", "| target | status | measured |", "| --- | --- | --- |"]
    for target in report["targets"]:
        status = target["status"] if target["status"] != "not met" else "**not met**"
        lines.append(f"| {target['name']} | {status} | {target['detail']} |")
    lines += _scaling_lines(report)

    runs = report["runs"]
    for scenario, description in report["scenarios"].items():
        scenario_runs = [run for run in runs if run["scenario"] == scenario]
        lines += ["", f"## {scenario}", "", description[0].upper() + description[1:] + ".", ""]
        if SCENARIOS[scenario].script is None:
            for run in scenario_runs:
                lines += _storm_lines(run)
            continue
        first = scenario_runs[0]
        scenario_runs = [run for run in scenario_runs if run.get("representative", True)] or scenario_runs
        scenario_runs.sort(key=_order)
        lines.append(f"{first['connections']} connections; {first['data']['tickets']:,} tickets seeded.")
        lines.append("")
        lines += _load_table(scenario_runs)
        ratios = report["comparisons"].get(scenario)
        if ratios:
            lines += ["", "| service vs | throughput | accepted | p99 |", "| --- | ---: | ---: | ---: |"]
            for other, ratio in ratios.items():
                shown = [f"{ratio[key]:.2f} x" if ratio[key] is not None else "-" for key in ("throughput_ratio", "accepted_ratio", "p99_ratio")]
                lines.append(f"| {other} | {' | '.join(shown)} |")
        if scenario == "flash-sale":
            lines += _sale_progress_lines(scenario_runs)

    lines += ["", "## Audit", ""] + _audit_lines(runs)
    profile_lines = _profile_lines(runs)
    if profile_lines:
        lines += ["", "## Profiles (py-spy)"] + profile_lines
    lines += [
        "",
        "## How to read this",
        "",
        "- total req/s counts every answered request; accepted = 2xx writes (201 book/buy, 200 cancel); "
        "rejected = 4xx (mostly `ticket_unavailable` when seats collide); reads = 200 list replies.",
        "- Rates are over the sending window; latency percentiles cover every request (wrk, per request).",
        "- CPU % is of one core over the run (200 % is a 2-core machine): the server processes, wrk, every PostgreSQL "
        "process, and other = the rest of the machine's busy time (other sessions, the OS).",
        "- Server CPU ms/req is the server processes' own CPU time (utime + stime in /proc, children included) "
        "while wrk ran, divided by the requests wrk completed.",
    ]
    return "\n".join(lines) + "\n"


# Chart --------------------------------------------------------------------------


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    load_scenarios = [name for name in report["scenarios"] if SCENARIOS[name].script is not None]
    if not load_scenarios:
        return
    figure, axes = plt.subplots(len(load_scenarios), 2, figsize=(12, 3.2 * len(load_scenarios)), squeeze=False)
    for row, scenario in enumerate(load_scenarios):
        runs = [
            run for run in report["runs"] if run["scenario"] == scenario and _usable(run) and run.get("representative", True)
        ]
        runs.sort(key=_order)
        names = [run_name(run) for run in runs]
        accepted = [run["rates"]["accepted"] for run in runs]
        rejected = [run["rates"]["rejected"] for run in runs]
        reads = [run["rates"]["reads"] for run in runs]
        throughput_axis, latency_axis = axes[row]
        throughput_axis.barh(names, accepted, label="accepted", color="#2b8a3e")
        throughput_axis.barh(names, rejected, left=accepted, label="rejected (4xx)", color="#e8590c")
        throughput_axis.barh(
            names, reads, left=[a + r for a, r in zip(accepted, rejected)], label="reads", color="#1971c2"
        )
        throughput_axis.set_title(f"{scenario}: requests/s")
        throughput_axis.invert_yaxis()
        totals = [run["rates"]["total"] for run in runs]
        for index, value in enumerate(totals):
            throughput_axis.annotate(f"{value:,.0f}", (value, index), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        throughput_axis.set_xlim(0, max(totals + [1]) * 1.15)
        p99 = [run["latency_ms"]["p99"] for run in runs]
        latency_axis.barh(names, p99, color="#862e9c")
        latency_axis.set_title(f"{scenario}: p99 latency, ms")
        latency_axis.invert_yaxis()
        for index, value in enumerate(p99):
            latency_axis.annotate(f"{value:.0f}", (value, index), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        latency_axis.set_xlim(0, max(p99 + [1]) * 1.15)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=9)
    machine = report["machine"]
    figure.suptitle(
        f"Tickets benchmarks {report['generated_at']} - {machine.get('cores')} cores {machine.get('cpu_model')}, shared with wrk and PostgreSQL",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(report: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    markdown_path = directory / "report.md"
    markdown_path.write_text(markdown(report))
    written = [json_path, markdown_path]
    chart_path = directory / "chart.png"
    chart(report, chart_path)
    if chart_path.exists():
        written.append(chart_path)
    return written
