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
        """Stop one process by PID: SIGTERM, wait up to ``grace`` seconds, then SIGKILL.

        The process stops its own children, as ``tickets serve --workers``
        stops its workers. A child that still runs after the process exited,
        because the process was killed first, gets SIGKILL by PID.
        """
        if process in self._processes:
            self._processes.remove(process)
        descendants = _descendants(process.pid) if process.poll() is None else []
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop within %.0f s of SIGTERM; sending SIGKILL", process.pid, grace)
                process.kill()
                process.wait()
        for pid, started in descendants:
            if _start_time(pid) == started:
                log.warning("pid %d, started by pid %d, outlived it; sending SIGKILL", pid, process.pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return process.returncode

    def stop_all(self) -> None:
        for process in reversed(list(self._processes)):
            self.stop(process)


def _start_time(pid: int) -> int | None:
    """Return a process's start time in clock ticks since boot (field 22 of proc(5)), or None if it is gone.

    A PID and its start time name one process even after the PID is reused.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _descendants(root: int) -> list[tuple[int, int]]:
    """Return (PID, start time) of every running descendant of ``root``."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in _read_process_table().items():
        children.setdefault(parent, []).append(pid)
    found = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        started = _start_time(pid)
        if started is not None:
            found.append((pid, started))
        pending += children.get(pid, [])
    return found


def listening_socket_count(port: int) -> int:
    """Return how many TCP sockets on this machine listen on ``port`` (IPv4 and IPv6).

    Each worker of ``tickets serve --workers N`` listens on a socket of its
    own with SO_REUSEPORT, and only once its database pool is open, so N
    sockets mean every worker takes connections.
    """
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXADDRESS:HEXPORT; state 0A is LISTEN.
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                count += 1
    return count


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


def wait_for_listeners(process: subprocess.Popen, port: int, count: int, timeout: float, log_path: Path) -> None:
    """Wait until ``count`` sockets listen on ``port``; raise if ``process`` exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while (listening := listening_socket_count(port)) < count:
        if process.poll() is not None:
            raise RuntimeError(f"server pid {process.pid} exited with code {process.returncode}; see {log_path}")
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"only {listening} of {count} workers of pid {process.pid} listened on port {port} "
                f"within {timeout:.0f} s; see {log_path}"
            )
        time.sleep(0.05)


def _read_process_table() -> dict[int, tuple[int, int]]:
    """Return every visible process as PID -> (parent PID, CPU ticks).

    The ticks are utime + stime + cutime + cstime (fields 14 to 17 of
    proc(5)): a process's own time plus that of its children that exited
    and were reaped.
    """
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), sum(int(field) for field in fields[11:15]))
    return table


def tree_cpu_ticks(table: dict[int, tuple[int, int]], roots: list[int]) -> tuple[int, int]:
    """Return (CPU ticks, process count) of the ``roots`` and all their descendants in ``table``.

    ``table`` maps PID -> (parent PID, ticks) as ``_read_process_table``
    returns it. A descendant that exits is reaped by its parent, which adds
    its time to its own cutime/cstime, so the difference between two calls
    keeps counting it. Roots missing from the table count as 0.
    """
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    seen: set[int] = set()
    pending = [pid for pid in roots if pid in table]
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        pending += children.get(pid, [])
    return sum(table[pid][1] for pid in seen), len(seen)


def process_tree_cpu_seconds(roots: list[int]) -> tuple[float, int]:
    """Return (CPU seconds, process count) of the processes ``roots`` and every process they started.

    The kernel's per-process accounting is summed over the tree: the parent
    and workers of ``tickets serve --workers N``, or several nodes (one root
    each). Only the difference between two calls means anything, because
    reaped children's time counts too.
    """
    ticks, count = tree_cpu_ticks(_read_process_table(), roots)
    return ticks / _CLOCK_TICKS, count


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
    ticks, _ = tree_cpu_ticks(_read_process_table(), [postmaster_pid])
    return ticks / _CLOCK_TICKS
