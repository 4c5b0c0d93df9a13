"""The benchmark report's scaling table: several service processes against one_process, by CPU per request and throughput."""

from __future__ import annotations

from benchmarks import report
from benchmarks.layouts import NODES, ONE_PROCESS, WORKERS, ServiceLayout
from benchmarks.scenarios import CEILING, SERVICE


def _run(
    scenario: str,
    layout: ServiceLayout,
    total: float,
    cpu_ms: float | None,
    *,
    implementation: str = SERVICE,
    repetition: int = 1,
    passed: bool = True,
) -> dict[str, object]:
    return {
        "scenario": scenario,
        "implementation": implementation,
        "layout": layout.as_dict(),
        "repetition": repetition,
        "connections": 64,
        "data": {"flights": 1000, "seats_per_flight": 150, "tickets": 150_000},
        "error": None,
        "rates": {"total": total, "accepted": total * 0.9, "rejected": total * 0.1, "reads": 0.0},
        "latency_ms": {"p50": 100.0, "p75": 150.0, "p90": 200.0, "p99": 300.0, "p999": 400.0, "max": 500.0, "mean": 120.0},
        "counts": {"completed": int(total * 2), "server_errors": 0, "socket_errors": 0, "non_json": 0},
        "cpu_percent_of_one_core": {"server": 90.0, "wrk": 10.0, "postgres": 40.0, "machine": 150.0, "other": 10.0},
        "server_cpu": {"seconds": 1.0, "processes": layout.count, "ms_per_request": cpu_ms, "postgres_ms_per_request": 0.5},
        "audit": {"passed": passed, "checks": [{"name": "no_5xx", "passed": passed, "detail": "0 responses with status 5xx"}]},
    }


TWO_WORKERS = ServiceLayout(WORKERS, 2)
TWO_NODES = ServiceLayout(NODES, 2)


def _statuses(verdicts: dict[str, object]) -> list[str]:
    return [target["status"] for target in verdicts["targets"]]


def test_scaling_cpu_limit_inclusive():
    one_process = _run("spread", ONE_PROCESS, 400, 2.0)

    at_limit = report.scaling_verdicts(one_process, _run("spread", TWO_WORKERS, 400, 2.5))
    over = report.scaling_verdicts(one_process, _run("spread", TWO_WORKERS, 400, 2.52))

    assert at_limit["cpu_change_percent"] == 25.0
    assert _statuses(at_limit)[0] == "met"
    assert over["cpu_change_percent"] == 26.0
    assert _statuses(over)[0] == "not met"


def test_scaling_cpu_decrease_met():
    verdicts = report.scaling_verdicts(_run("spread", ONE_PROCESS, 400, 2.0), _run("spread", TWO_NODES, 500, 1.5))

    assert verdicts["cpu_change_percent"] == -25.0
    assert _statuses(verdicts) == ["met", "met"]
    assert verdicts["targets"][0]["detail"] == "1.50 vs 2.00 ms = -25.0%"


def test_scaling_throughput_not_below_one_process():
    one_process = _run("flash-sale", ONE_PROCESS, 400, 2.0)

    equal = report.scaling_verdicts(one_process, _run("flash-sale", TWO_WORKERS, 400, 2.0))
    lower = report.scaling_verdicts(one_process, _run("flash-sale", TWO_WORKERS, 396, 2.0))

    assert equal["throughput_ratio"] == 1.0
    assert _statuses(equal)[1] == "met"
    assert lower["throughput_ratio"] == 0.99
    assert _statuses(lower)[1] == "not met"
    assert lower["targets"][1]["detail"] == "396 vs 400 req/s = 0.99 x"


def test_scaling_verdict_uses_unrounded_ratio():
    # 3,999.5 / 4,000 rounds to 1.0 in the report but is still below it.
    verdicts = report.scaling_verdicts(_run("spread", ONE_PROCESS, 4000, 2.0), _run("spread", TWO_WORKERS, 3999.5, 2.0))

    assert verdicts["throughput_ratio"] == 1.0
    assert _statuses(verdicts)[1] == "not met"


def test_scaling_without_one_process_not_evaluated():
    verdicts = report.scaling_verdicts(None, _run("spread", TWO_WORKERS, 400, 2.0))

    assert _statuses(verdicts) == ["not evaluated", "not evaluated"]
    assert "add 1 to --workers or --nodes" in verdicts["targets"][0]["detail"]


def test_scaling_failed_run_not_evaluated():
    failed = _run("spread", TWO_WORKERS, 0, None)
    failed["error"] = "RuntimeError: server exited"

    verdicts = report.scaling_verdicts(_run("spread", ONE_PROCESS, 400, 2.0), failed)

    assert _statuses(verdicts) == ["not evaluated", "not evaluated"]
    assert verdicts["targets"][0]["detail"] == "this run did not complete"


def test_scaling_rows_per_scenario_and_layout():
    runs = [
        _run("spread", ONE_PROCESS, 400, 2.0),
        _run("spread", ONE_PROCESS, 900, 1.0, implementation=CEILING),
        _run("spread", TWO_WORKERS, 300, 3.0),
        _run("spread", TWO_NODES, 420, 2.2),
        _run("flash-sale", ONE_PROCESS, 500, 1.5),
    ]

    rows = report.scaling(runs)

    assert [(row["scenario"], row["layout"]) for row in rows] == [("spread", "2 workers"), ("spread", "2 nodes")]
    assert [row["throughput_ratio"] for row in rows] == [0.75, 1.05]
    assert [row["cpu_change_percent"] for row in rows] == [50.0, 10.0]


def test_representatives_chosen_per_layout():
    runs = [
        _run("spread", ONE_PROCESS, rate, 2.0, repetition=index) for index, rate in enumerate([300, 500, 400], start=1)
    ] + [_run("spread", TWO_WORKERS, rate, 2.0, repetition=index) for index, rate in enumerate([700, 600, 800], start=1)]

    report.mark_representatives(runs)

    chosen = [(report.layout_label(run), run["rates"]["total"]) for run in runs if run["representative"]]
    assert chosen == [("1 process", 400), ("2 workers", 700)]


def test_targets_compare_one_process_service():
    runs = [
        _run("spread", ONE_PROCESS, 400, 2.0),
        _run("spread", TWO_WORKERS, 900, 2.0),
        _run("spread", ONE_PROCESS, 1000, 1.0, implementation=CEILING),
    ]
    report.mark_representatives(runs)

    spread_target = report.targets(runs)[0]

    assert spread_target["detail"] == "400 vs 1000 req/s = 0.40 x"


def test_markdown_scaling_table():
    runs = [
        _run("spread", ONE_PROCESS, 400, 2.0),
        _run("spread", TWO_WORKERS, 380, 2.6),
        _run("spread", TWO_NODES, 0, None, passed=False),
    ]
    runs[2]["error"] = "RuntimeError: node 2 exited"
    built = report.build(
        machine={},
        runs=runs,
        settings={"quick": True, "duration_s": 1.5, "wrk_threads": 1},
        elapsed_s=10.0,
    )

    text = report.markdown(built)

    assert "## Scaling" in text
    assert "| spread | 1 process | 400 | 360 | 300 | 2.00 | 0.50 | reference | reference |" in text
    assert (
        "| spread | 2 workers | 380 | 342 | 300 | 2.60 | 0.50 | **not met**: 2.60 vs 2.00 ms = +30.0% "
        "| **not met**: 380 vs 400 req/s = 0.95 x |"
    ) in text
    assert "| spread | 2 nodes | - | - | - | - | - | not evaluated: this run did not complete |" in text
    assert "| service (2 workers) | 380 |" in text
    assert "spread / service (2 nodes) #1 / `no_5xx`: **FAILED**" in text


def test_markdown_without_layouts_has_no_scaling():
    built = report.build(
        machine={},
        runs=[_run("spread", ONE_PROCESS, 400, 2.0)],
        settings={"quick": True, "duration_s": 1.5, "wrk_threads": 1},
        elapsed_s=10.0,
    )

    text = report.markdown(built)

    assert built["scaling"] == []
    assert "## Scaling" not in text
    assert "| service | 400 |" in text
