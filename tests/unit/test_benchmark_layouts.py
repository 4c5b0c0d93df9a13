"""The benchmark suite's --workers and --nodes: argument checks, layouts, merged wrk tallies, CPU per request."""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.layouts import NODES, ONE_PROCESS, WORKERS, ServiceLayout, parse_process_counts, service_layouts, split_connections
from benchmarks.load import LoadResult
from benchmarks.tallies import merge_latency, merge_tallies
from benchmarks.processes import tree_cpu_ticks
from benchmarks.runner import cpu_ms_per_request, summarize_load
from benchmarks.scenarios import CEILING, IMPLEMENTATIONS, SERVICE


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """main() calls logging.basicConfig; put the root logger back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


# Arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--workers", "--nodes"])
@pytest.mark.parametrize("value", ["0", "65", "x", "1,,2", "", "-1", "1.5", "2,0"])
def test_invalid_process_count_exits_2(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", option, value])

    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {option}: invalid process count" in error
    assert "whole numbers from 1 to 64" in error


def test_workers_zero_message(capsys):
    with pytest.raises(SystemExit):
        main(["run", "spread", "--workers", "0"])

    assert "argument --workers: invalid process count '0' in '0'" in capsys.readouterr().err


def test_process_counts_sorted_without_repeats():
    assert parse_process_counts("2,1,2") == [1, 2]
    assert parse_process_counts(" 3 ") == [3]
    assert parse_process_counts("64") == [64]


def test_layouts_default_one_process():
    assert service_layouts(None, None) == [ONE_PROCESS]
    assert service_layouts([], []) == [ONE_PROCESS]


def test_layouts_one_process_runs_once():
    layouts = service_layouts([1, 2, 4], [1, 2])

    assert layouts == [ONE_PROCESS, ServiceLayout(WORKERS, 2), ServiceLayout(WORKERS, 4), ServiceLayout(NODES, 2)]


def test_layouts_without_one_process():
    assert service_layouts([2], None) == [ServiceLayout(WORKERS, 2)]
    assert service_layouts(None, [3]) == [ServiceLayout(NODES, 3)]


def test_layout_labels_and_slugs():
    assert (ONE_PROCESS.label, ONE_PROCESS.slug) == ("1 process", "")
    assert (ServiceLayout(WORKERS, 2).label, ServiceLayout(WORKERS, 2).slug) == ("2 workers", "2workers")
    assert (ServiceLayout(NODES, 3).label, ServiceLayout(NODES, 3).slug) == ("3 nodes", "3nodes")


def test_layouts_need_service(capsys):
    assert main(["run", "spread", "--workers", "2", "--implementations", CEILING]) == 2

    assert "add service to --implementations" in capsys.readouterr().err


def test_one_process_without_service_accepted_until_wrk_check(capsys, monkeypatch):
    # --workers 1 is the default layout, so it needs no service run. The
    # next check, for wrk, fails here on purpose, so no load starts.
    from benchmarks import __main__ as entry
    from benchmarks.load import WrkMissing

    def missing() -> str:
        raise WrkMissing("wrk is not installed")

    monkeypatch.setattr(entry, "wrk_path", missing)

    assert main(["run", "spread", "--workers", "1", "--implementations", CEILING]) == 2
    assert capsys.readouterr().err.strip().endswith("wrk is not installed")


def test_switch_interval_with_workers_rejected(capsys):
    assert main(["run", "spread", "--workers", "1,2", "--switch-interval", "0.001"]) == 2

    assert "--switch-interval cannot be combined with --workers above 1" in capsys.readouterr().err


def test_nodes_fewer_connections_than_threads_rejected(capsys):
    # spread has 64 connections: 64 nodes get 1 each, fewer than 2 wrk threads.
    assert main(["run", "spread", "--nodes", "64", "--threads", "2"]) == 2

    error = capsys.readouterr().err
    assert "--nodes 64 gives spread 1 connections per node, fewer than --threads 2" in error


def test_split_connections_even():
    assert split_connections(256, 2) == [128, 128]
    assert split_connections(65, 2) == [33, 32]
    assert split_connections(10, 3) == [4, 3, 3]
    assert sum(split_connections(64, 5)) == 64


def test_service_command_with_workers():
    service = IMPLEMENTATIONS[SERVICE]

    assert "--workers" not in service.command(8000)
    assert service.command(8000, workers=1) == service.command(8000)
    assert service.command(8000, workers=2)[-2:] == ["--workers", "2"]


def test_baseline_command_rejects_workers():
    with pytest.raises(ValueError, match="ceiling runs as one process"):
        IMPLEMENTATIONS[CEILING].command(8000, workers=2)


# Merging wrk tallies -----------------------------------------------------------


def _latency(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def percentile(p: float) -> float:
        # wrk's rule: the first value whose cumulative count reaches round(p% * n + 0.5).
        rank = round(p / 100 * len(ordered) + 0.5)
        return ordered[min(rank, len(ordered)) - 1]

    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "stdev": statistics.stdev(ordered),
        "p50": percentile(50),
        "p75": percentile(75),
        "p90": percentile(90),
        "p99": percentile(99),
        "p999": percentile(99.9),
    }


def _part(samples: list[float], **fields: object) -> dict[str, object]:
    tallies: dict[str, object] = {
        "threads": 1,
        "completed": len(samples),
        "received": len(samples),
        "sent_total": len(samples),
        "bytes": 100 * len(samples),
        "non_json": 0,
        "server_errors": 0,
        "expected_tickets": 0,
        "unknown_passengers": 0,
        "corrupt_expectations": 0,
        "duration_us": 2_000_000,
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "sent": {"buy": len(samples)},
        "ok": {},
        "statuses": {},
        "codes": {},
        "latency_us": _latency(samples),
    }
    tallies.update(fields)
    return tallies


FIRST_SAMPLES = [1000.0 + 37 * i for i in range(200)]
SECOND_SAMPLES = [3000.0 + 91 * i for i in range(120)]


def test_merge_tallies_sums_counts():
    first = _part(
        FIRST_SAMPLES,
        ok={"buy": 150},
        statuses={"201": 150, "409": 50},
        codes={"ticket_unavailable": 50},
        socket_errors={"connect": 0, "read": 1, "write": 0, "timeout": 0},
        duration_us=2_100_000,
    )
    second = _part(
        SECOND_SAMPLES,
        ok={"buy": 100},
        statuses={"201": 100, "409": 18, "503": 2},
        codes={"ticket_unavailable": 18, "overloaded": 2},
        socket_errors={"connect": 0, "read": 0, "write": 0, "timeout": 3},
        unknown_passengers=1,
    )

    merged = merge_tallies([first, second])

    assert merged["threads"] == 2
    assert merged["completed"] == merged["received"] == merged["sent_total"] == 320
    assert merged["bytes"] == 32_000
    assert merged["ok"] == {"buy": 250}
    assert merged["sent"] == {"buy": 320}
    assert merged["statuses"] == {"201": 250, "409": 68, "503": 2}
    assert merged["codes"] == {"ticket_unavailable": 68, "overloaded": 2}
    assert merged["socket_errors"] == {"connect": 0, "read": 1, "write": 0, "timeout": 3}
    assert merged["unknown_passengers"] == 1
    assert merged["duration_us"] == 2_100_000


def test_merge_latency_exact_moments():
    merged = merge_tallies([_part(FIRST_SAMPLES), _part(SECOND_SAMPLES)])["latency_us"]
    everything = FIRST_SAMPLES + SECOND_SAMPLES

    assert merged["min"] == min(everything)
    assert merged["max"] == max(everything)
    assert math.isclose(merged["mean"], statistics.fmean(everything))
    assert math.isclose(merged["stdev"], statistics.stdev(everything))


def test_merge_latency_percentiles_upper_bound():
    first, second = _latency(FIRST_SAMPLES), _latency(SECOND_SAMPLES)
    exact = _latency(FIRST_SAMPLES + SECOND_SAMPLES)

    merged = merge_latency([(len(FIRST_SAMPLES), first), (len(SECOND_SAMPLES), second)])

    for name in ("p50", "p75", "p90", "p99", "p999"):
        assert merged[name] == max(first[name], second[name])
        assert min(first[name], second[name]) <= exact[name] <= merged[name], name


def test_merge_latency_skips_empty_parts():
    only = _latency(FIRST_SAMPLES)

    merged = merge_latency([(len(FIRST_SAMPLES), only), (0, {"min": 1.8e19, "max": 0, "mean": 0, "stdev": 0})])

    assert merged["min"] == only["min"]
    assert merged["p99"] == only["p99"]
    assert merge_latency([(0, {})]) == {}


def test_merge_tallies_one_part_unchanged():
    part = _part(FIRST_SAMPLES)

    assert merge_tallies([part]) is part


# CPU per request ---------------------------------------------------------------


def test_tree_cpu_counts_descendants_only():
    table = {
        1: (0, 5000),  # init: the root's parent, not counted
        10: (1, 100),  # root (tickets serve --workers 2)
        11: (10, 40),  # worker
        12: (10, 60),  # worker
        13: (11, 7),  # a worker's child
        20: (1, 900),  # unrelated process
        21: (20, 300),  # its child
    }

    assert tree_cpu_ticks(table, [10]) == (207, 4)
    assert tree_cpu_ticks(table, [11]) == (47, 2)
    assert tree_cpu_ticks(table, [10, 20]) == (1407, 6)
    assert tree_cpu_ticks(table, [99]) == (0, 0)


def test_cpu_ms_per_request():
    assert cpu_ms_per_request(2.0, 1000) == 2.0
    assert cpu_ms_per_request(1.5, 4000) == 0.375
    assert cpu_ms_per_request(1.0, 0) is None


def _load_result(tmp_path: Path, received: int, server_cpu: float, postgres_cpu: float) -> LoadResult:
    tallies = _part([1000.0] * 3, received=received, sent_total=received, ok={"buy": received}, statuses={"201": received})
    return LoadResult(
        tallies=tallies,
        window_seconds=2.0,
        drain_seconds=0.5,
        drained=True,
        server_cpu_seconds=server_cpu,
        wrk_cpu_seconds=0.2,
        postgres_cpu_seconds=postgres_cpu,
        machine_cpu_seconds=4.0,
        load_average=1.0,
        expect_path=tmp_path / "run.expect.txt",
        output_path=tmp_path / "run.wrk.txt",
        server_processes=3,
    )


def test_summary_cpu_per_request(tmp_path):
    summary = summarize_load(_load_result(tmp_path, received=800, server_cpu=2.4, postgres_cpu=0.8))

    assert summary["server_cpu"] == {"seconds": 2.4, "processes": 3, "ms_per_request": 3.0, "postgres_ms_per_request": 1.0}
    assert summary["rates"]["total"] == 400.0
    assert summary["cpu_percent_of_one_core"]["server"] == 96.0
    assert "load_split" not in summary


def test_summary_no_requests_no_cpu_per_request(tmp_path):
    summary = summarize_load(_load_result(tmp_path, received=0, server_cpu=0.5, postgres_cpu=0.1))

    assert summary["server_cpu"]["ms_per_request"] is None
    assert summary["server_cpu"]["postgres_ms_per_request"] is None
