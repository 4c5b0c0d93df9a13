"""Start, watch and stop the processes of a benchmark run, each by its PID.

Every process the runner starts is registered in a ``ProcessGroup``, and
``ProcessGroup.stop_all`` (called from a ``finally``) ends them: SIGTERM,
then SIGKILL after a grace period. Nothing is ever ended by name.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Servers run from here, so `python -m api.cli` and the baselines import the working tree.
REPO_ROOT = Path(__file__).resolve().parent.parent


class ProcessGroup:
    """The processes started by this run, stopped in reverse start order."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen] = []

    def start(self, command: list[str], *, env: dict[str, str], log_path: Path, cwd: Path = REPO_ROOT) -> subprocess.Popen:
        log_file = open(log_path, "wb")
        try:
            process = subprocess.Popen(
                command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        finally:
            log_file.close()
        self._processes.append(process)
        log.debug("started pid %d: %s", process.pid, " ".join(command))
        return process

    def stop(self, process: subprocess.Popen, grace: float = 15.0) -> int | None:
        """Stop one process by PID: SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
        if process in self._processes:
            self._processes.remove(process)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop within %.0f s of SIGTERM; sending SIGKILL", process.pid, grace)
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for process in reversed(list(self._processes)):
            self.stop(process)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(process: subprocess.Popen, url: str, timeout: float, log_path: Path) -> None:
    """Poll ``url`` until it returns 200; raise if the process exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server pid {process.pid} exited with code {process.returncode} before it was ready; see {log_path}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
                last_error = f"status {response.status}"
        except (urllib.error.URLError, OSError) as error:
            last_error = str(error)
        time.sleep(0.05)
    raise RuntimeError(f"server pid {process.pid} was not ready at {url} within {timeout:.0f} s ({last_error}); see {log_path}")


def process_cpu_seconds(pid: int) -> float:
    """Return user+system CPU time of a process and all its threads, in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the parenthesised command name; utime and stime are
    # fields 14 and 15 of proc(5), so 11 and 12 after the name.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """Return CPU time spent by every process on the machine (all cores, all non-idle states), in seconds."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(field) for field in fields[:8]]
    # user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS


def wait_for_quiet_machine(threshold_percent: float, max_wait: float) -> tuple[float, float]:
    """Wait until the machine's busy CPU over one second is below ``threshold_percent`` of one core.

    Returns (seconds waited, last busy %). Gives up after ``max_wait``
    seconds, because other sessions' load may never stop.
    """
    started = time.monotonic()
    while True:
        before = machine_busy_seconds()
        time.sleep(1.0)
        busy_percent = 100 * (machine_busy_seconds() - before)
        waited = time.monotonic() - started
        if busy_percent < threshold_percent or waited >= max_wait:
            return waited, busy_percent


def parent_pid(pid: int) -> int | None:
    """Return the parent PID of a local process, or None if it is not visible in /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def postgres_cpu_seconds(postmaster_pid: int | None) -> float:
    """Return CPU time of one PostgreSQL server: the postmaster and its children, including exited backends.

    Backends exit when their connection closes, and the kernel then adds
    their time to the postmaster's cutime/cstime, so those fields are summed
    too. Only the difference between two calls means anything. Returns 0
    when the server is not a local process.
    """
    if postmaster_pid is None:
        return 0.0
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(entry.name) == postmaster_pid:
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        elif int(fields[1]) == postmaster_pid:
            total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS
