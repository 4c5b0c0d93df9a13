"""Sample the service with py-spy during a load run (``--profile``) and summarize where CPU time went.

py-spy is not a dependency of the suite: install it with ``pip install py-spy``
into the same environment. It samples 100 times a second without pausing
the target (``--nonblocking``) and leaves out idle samples (a thread
waiting in epoll or on a lock), so the percentages are shares of on-CPU
samples.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .processes import ProcessGroup

log = logging.getLogger(__name__)

RATE = 100
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


@dataclass
class Profiler:
    process: subprocess.Popen
    output: Path
    duration: int
    pid: int


def py_spy_path() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else None


def start(processes: ProcessGroup, pid: int, duration: int, output: Path) -> Profiler | None:
    path = py_spy_path()
    if path is None:
        log.warning("--profile needs py-spy (pip install py-spy); the run goes on without a profile")
        return None
    command = [
        path, "record",
        "--pid", str(pid),
        "--duration", str(duration),
        "--rate", str(RATE),
        "--format", "raw",
        "--nonblocking",
        "--threads",
        "--output", str(output),
    ]
    process = processes.start(command, env={"PATH": "/usr/bin:/bin"}, log_path=output.with_suffix(".log"))
    return Profiler(process, output, duration, pid)


def finish(processes: ProcessGroup, profiler: Profiler) -> dict[str, Any]:
    try:
        profiler.process.wait(timeout=profiler.duration + 30)
    except subprocess.TimeoutExpired:
        log.warning("py-spy pid %d did not finish; stopping it", profiler.process.pid)
    processes.stop(profiler.process)
    if not profiler.output.exists():
        return {"error": f"py-spy wrote no profile; see {profiler.output.with_suffix('.log')}"}
    return summarize(profiler.output, profiler.pid, profiler.duration)


def _short_file(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    for top in ("engine/", "api/", "persistence/", "notify/", "benchmarks/"):
        index = path.find("/" + top)
        if index >= 0:
            return path[index + 1 :]
    return path


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['function']} ({_short_file(match['file'])})"


def summarize(path: Path, pid: int, duration: int, top: int = 15) -> dict[str, Any]:
    """Return sample counts per thread and the functions with most self and inclusive samples."""
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    thread_roles: dict[str, str] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0]
        names = [_frame_name(frame) for frame in frames[1:]]
        total += count
        threads[thread] += count
        if thread not in thread_roles:
            if f"({pid})" in thread or f"(0x{pid:x})" in thread:
                thread_roles[thread] = "main thread (trio, Hypercorn, app)"
            elif any("bridge.py" in name for name in names):
                thread_roles[thread] = "asyncpg bridge thread (uvloop)"
        if names:
            self_samples[names[-1]] += count
        for name in set(names):
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": samples, "percent": round(100 * samples / total, 1)}
            for name, samples in counter.most_common(top)
        ]

    per_thread = defaultdict(int)
    for thread, samples in threads.items():
        per_thread[thread_roles.get(thread, thread)] += samples
    return {
        "raw": str(path),
        "rate_hz": RATE,
        "duration_s": duration,
        "samples": total,
        "threads": {
            name: {"samples": samples, "busy_percent_of_duration": round(100 * samples / (RATE * duration), 1)}
            for name, samples in sorted(per_thread.items(), key=lambda item: -item[1])
        },
        "top_self": share(self_samples),
        "top_inclusive": share(inclusive),
    }
