"""Drive one load run with wrk and collect its tallies, timing and CPU use.

The Lua scripts (``benchmarks/lua``) send requests until ``stop_at``, then
drain: they send nothing more and mark each wrk thread whose requests have
all been answered. Once every thread is drained, or
when the drain limit is reached, wrk is stopped with SIGINT and its
``done()`` hook prints the ``BENCH_RESULT`` JSON line parsed here. Rates are
computed over the sending window (start to ``stop_at``); the few requests
answered during the drain were sent inside it.

Against several nodes, one wrk per node sends its share of the connections,
all with the same ``stop_at``, and ``tallies.merge_tallies`` adds their
tallies up. Each part's own figures stay in ``LoadResult.parts``.
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

from .layouts import split_connections
from .processes import ProcessGroup, machine_busy_seconds, postgres_cpu_seconds, process_tree_cpu_seconds
from .tallies import merge_tallies

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
    """wrk's tallies of one run, with the window they cover and CPU seconds spent meanwhile.

    ``server_cpu_seconds`` counts the server processes and every process
    they started (workers), from just before wrk started until it stopped.
    ``parts`` has one entry per wrk process when the load was split across
    several URLs, and is empty otherwise.
    """

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
    server_processes: int = 1
    parts: list[dict[str, Any]] = field(default_factory=list)

    def rate(self, count: float) -> float:
        return count / self.window_seconds if self.window_seconds > 0 else 0.0


@dataclass
class _WrkProcess:
    """One wrk process of a run, with the files it writes."""

    url: str
    connections: int
    drain_dir: Path
    expect_path: Path
    output_path: Path
    process: Any = None
    interrupted: bool = False


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _read_result(output_path: Path, returncode: int | None) -> dict[str, Any]:
    output = output_path.read_text(errors="replace")
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"wrk printed no {RESULT_PREFIX.strip()} line (exit code {returncode}); see {output_path}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def _plan(spec: LoadSpec, base_urls: list[str], raw_dir: Path, label: str) -> list[_WrkProcess]:
    """Return one wrk process per URL with its share of the connections and its own files."""
    shares = split_connections(spec.connections, len(base_urls))
    if min(shares) < spec.threads:
        raise ValueError(
            f"{spec.connections} connections split over {len(base_urls)} servers give {min(shares)} per wrk, "
            f"fewer than its {spec.threads} threads. Use fewer --threads."
        )
    planned = []
    for index, (url, connections) in enumerate(zip(base_urls, shares), start=1):
        stem = label if len(base_urls) == 1 else f"{label}.node{index}"
        planned.append(
            _WrkProcess(
                url=url,
                connections=connections,
                drain_dir=raw_dir / f"{stem}.drain",
                expect_path=raw_dir / f"{stem}.expect.txt",
                output_path=raw_dir / f"{stem}.wrk.txt",
            )
        )
    return planned


def run_wrk(
    processes: ProcessGroup,
    spec: LoadSpec,
    base_urls: list[str],
    server_pids: list[int],
    postmaster_pid: int | None,
    raw_dir: Path,
    label: str,
) -> LoadResult:
    """Run wrk against ``base_urls`` with the settings in ``spec``; raw output goes to ``raw_dir``.

    With several URLs, one wrk per URL gets an even share of
    ``spec.connections`` (each with ``spec.threads`` threads), and the
    tallies are merged. ``server_pids`` are the server processes whose CPU
    time (with their children's) is measured while wrk runs.
    """
    planned = _plan(spec, base_urls, raw_dir, label)
    for part in planned:
        shutil.rmtree(part.drain_dir, ignore_errors=True)
        part.drain_dir.mkdir(parents=True)
    expect_path = raw_dir / f"{label}.expect.txt"

    start = time.time()
    stop_at = start + spec.duration
    wrk_seconds = int(stop_at - start + spec.max_drain) + 1

    server_cpu_before, _ = process_tree_cpu_seconds(server_pids)
    postgres_before = postgres_cpu_seconds(postmaster_pid)
    machine_before = machine_busy_seconds()
    children_before = _children_cpu_seconds()
    for index, part in enumerate(planned):
        env = dict(os.environ)
        env.update(spec.env)
        env.update(
            {
                "BENCH_LUA_DIR": str(LUA_DIR),
                "BENCH_STOP_AT_MS": str(int(stop_at * 1000)),
                "BENCH_DRAIN_DIR": str(part.drain_dir),
                "BENCH_EXPECT_FILE": str(part.expect_path),
                # Thread ids, and so pass numbers, stay unique across the wrk processes.
                "BENCH_THREAD_OFFSET": str(index * spec.threads),
            }
        )
        command = [
            wrk_path(),
            "-t", str(spec.threads),
            "-c", str(part.connections),
            "-d", f"{wrk_seconds}s",
            "--timeout", "30s",
            "-s", str(LUA_DIR / spec.script),
            part.url,
        ]
        part.process = processes.start(command, env=env, log_path=part.output_path)

    # Each wrk is stopped once all its threads have drained; the run is
    # drained when every wrk was stopped that way.
    drained_at = None
    while any(part.process.poll() is None and not part.interrupted for part in planned):
        if time.time() >= stop_at:
            for part in planned:
                if not part.interrupted and part.process.poll() is None and len(list(part.drain_dir.iterdir())) >= spec.threads:
                    part.interrupted = True
                    part.process.send_signal(signal.SIGINT)
            if all(part.interrupted for part in planned):
                drained_at = time.time()
                break
        time.sleep(0.02)
    try:
        for part in planned:
            part.process.wait(timeout=spec.max_drain + 10)
    finally:
        for part in planned:
            processes.stop(part.process)
    end = time.time()

    server_cpu_after, server_processes = process_tree_cpu_seconds(server_pids)
    server_cpu = max(0.0, server_cpu_after - server_cpu_before)
    postgres_cpu = max(0.0, postgres_cpu_seconds(postmaster_pid) - postgres_before)
    machine_cpu = machine_busy_seconds() - machine_before
    wrk_cpu = _children_cpu_seconds() - children_before

    results = [_read_result(part.output_path, part.process.returncode) for part in planned]
    parts = []
    if len(planned) > 1:
        # The audit reads one file. A ticket confirmed by two wrk processes
        # shows up there as two lines, which the audit flags.
        with expect_path.open("w") as combined:
            for part in planned:
                if part.expect_path.exists():
                    combined.write(part.expect_path.read_text(errors="replace"))
        parts = [
            {
                "url": part.url,
                "connections": part.connections,
                "completed": result.get("received", 0),
                "latency_us": result.get("latency_us", {}),
                "raw_output": str(part.output_path),
            }
            for part, result in zip(planned, results)
        ]
    for part in planned:
        shutil.rmtree(part.drain_dir, ignore_errors=True)
    return LoadResult(
        tallies=merge_tallies(results),
        window_seconds=stop_at - start,
        drain_seconds=((drained_at or end) - stop_at),
        drained=drained_at is not None,
        server_cpu_seconds=server_cpu,
        wrk_cpu_seconds=wrk_cpu,
        postgres_cpu_seconds=postgres_cpu,
        machine_cpu_seconds=machine_cpu,
        load_average=os.getloadavg()[0],
        expect_path=expect_path,
        output_path=planned[0].output_path,
        server_processes=server_processes,
        parts=parts,
    )
