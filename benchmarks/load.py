"""Drive one load run with wrk and collect its tallies, timing and CPU use.

The Lua scripts (``benchmarks/lua``) send requests until ``stop_at``, then
drain: they send nothing more and mark each wrk thread whose requests have
all been answered. Once every thread is drained, or
when the drain limit is reached, wrk is stopped with SIGINT and its
``done()`` hook prints the ``BENCH_RESULT`` JSON line parsed here. Rates are
computed over the sending window (start to ``stop_at``); the few requests
answered during the drain were sent inside it.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .processes import ProcessGroup, machine_busy_seconds, postgres_cpu_seconds, process_cpu_seconds

log = logging.getLogger(__name__)

LUA_DIR = Path(__file__).parent / "lua"
RESULT_PREFIX = "BENCH_RESULT "


class WrkMissing(RuntimeError):
    pass


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing("wrk is not installed; install it with: apt-get update && apt-get install -y wrk")
    return path


def wrk_version() -> str:
    completed = subprocess.run([wrk_path(), "--version"], capture_output=True, text=True, check=False)
    return (completed.stdout or completed.stderr).splitlines()[0].strip()


@dataclass
class LoadSpec:
    script: str
    connections: int
    threads: int
    duration: float
    max_drain: float
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    """wrk's tallies of one run, with the window they cover and CPU seconds spent meanwhile."""

    tallies: dict[str, Any]
    window_seconds: float
    drain_seconds: float
    drained: bool
    server_cpu_seconds: float
    wrk_cpu_seconds: float
    postgres_cpu_seconds: float
    machine_cpu_seconds: float
    load_average: float
    expect_path: Path
    output_path: Path

    def rate(self, count: float) -> float:
        return count / self.window_seconds if self.window_seconds > 0 else 0.0


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    processes: ProcessGroup,
    spec: LoadSpec,
    base_url: str,
    server_pid: int | None,
    postmaster_pid: int | None,
    raw_dir: Path,
    label: str,
) -> LoadResult:
    """Run wrk against ``base_url`` with the settings in ``spec``; raw output goes to ``raw_dir``."""
    drain_dir = raw_dir / f"{label}.drain"
    shutil.rmtree(drain_dir, ignore_errors=True)
    drain_dir.mkdir(parents=True)
    expect_path = raw_dir / f"{label}.expect.txt"
    output_path = raw_dir / f"{label}.wrk.txt"

    start = time.time()
    stop_at = start + spec.duration
    env = dict(os.environ)
    env.update(spec.env)
    env.update(
        {
            "BENCH_LUA_DIR": str(LUA_DIR),
            "BENCH_STOP_AT_MS": str(int(stop_at * 1000)),
            "BENCH_DRAIN_DIR": str(drain_dir),
            "BENCH_EXPECT_FILE": str(expect_path),
        }
    )
    wrk_seconds = int(stop_at - start + spec.max_drain) + 1
    command = [
        wrk_path(),
        "-t", str(spec.threads),
        "-c", str(spec.connections),
        "-d", f"{wrk_seconds}s",
        "--timeout", "30s",
        "-s", str(LUA_DIR / spec.script),
        base_url,
    ]

    server_cpu_before = process_cpu_seconds(server_pid) if server_pid else 0.0
    postgres_before = postgres_cpu_seconds(postmaster_pid)
    machine_before = machine_busy_seconds()
    children_before = _children_cpu_seconds()
    process = processes.start(command, env=env, log_path=output_path)

    drained = False
    drained_at = None
    while process.poll() is None:
        if time.time() >= stop_at and len(list(drain_dir.iterdir())) >= spec.threads:
            drained = True
            drained_at = time.time()
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    try:
        process.wait(timeout=spec.max_drain + 10)
    finally:
        processes.stop(process)
    end = time.time()

    server_cpu = (process_cpu_seconds(server_pid) - server_cpu_before) if server_pid else 0.0
    postgres_cpu = max(0.0, postgres_cpu_seconds(postmaster_pid) - postgres_before)
    machine_cpu = machine_busy_seconds() - machine_before
    wrk_cpu = _children_cpu_seconds() - children_before

    output = output_path.read_text(errors="replace")
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"wrk printed no {RESULT_PREFIX.strip()} line (exit code {process.returncode}); see {output_path}")
    tallies = json.loads(lines[-1][len(RESULT_PREFIX):])
    shutil.rmtree(drain_dir, ignore_errors=True)
    return LoadResult(
        tallies=tallies,
        window_seconds=stop_at - start,
        drain_seconds=((drained_at or end) - stop_at),
        drained=drained,
        server_cpu_seconds=server_cpu,
        wrk_cpu_seconds=wrk_cpu,
        postgres_cpu_seconds=postgres_cpu,
        machine_cpu_seconds=machine_cpu,
        load_average=os.getloadavg()[0],
        expect_path=expect_path,
        output_path=output_path,
    )
