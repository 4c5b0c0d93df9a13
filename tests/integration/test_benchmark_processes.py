"""The benchmark suite's process accounting on this machine's /proc: CPU of a process tree, listeners, stopping a tree."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.processes import ProcessGroup, listening_socket_count, process_tree_cpu_seconds

# A child that burns CPU_SECONDS of CPU and exits, then its parent writes
# the marker file and sleeps until it is stopped.
CPU_SECONDS = 0.3
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    burn = "import time\\nend = time.process_time() + {seconds}\\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    open(sys.argv[1], "w").close()
    time.sleep(60)
    """
).format(seconds=CPU_SECONDS)


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)


def test_tree_cpu_counts_exited_child(tmp_path):
    marker = tmp_path / "child-done"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(marker)])
    try:
        before, count_before = process_tree_cpu_seconds([parent.pid])
        _wait_for(marker)
        after, count_after = process_tree_cpu_seconds([parent.pid])
    finally:
        parent.kill()
        parent.wait()

    # The child was reaped, so its time is in the parent's cutime/cstime.
    assert after - before >= CPU_SECONDS - 0.05
    assert count_after == 1
    assert count_before in (1, 2)


def test_tree_cpu_of_missing_process():
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait()

    assert process_tree_cpu_seconds([gone.pid]) == (0.0, 0)


def test_listening_sockets_counted_per_reuseport_socket():
    sockets = []
    try:
        for _ in range(3):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", sockets[0].getsockname()[1] if sockets else 0))
            sockets.append(sock)
        port = sockets[0].getsockname()[1]
        sockets[0].listen()
        sockets[1].listen()

        # The third socket is bound but not listening, as a worker is before Hypercorn starts.
        assert listening_socket_count(port) == 2
    finally:
        for sock in sockets:
            sock.close()


# A parent that ignores SIGTERM, with a child in a session of its own that
# ignores it too: the way a `tickets serve --workers` worker would be left
# behind if its parent were killed.
STUBBORN = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
        start_new_session=True,
    )
    print(child.pid, flush=True)
    time.sleep(60)
    """
)


def test_stop_kills_descendants_left_behind(tmp_path):
    group = ProcessGroup()
    log_path = tmp_path / "stubborn.log"
    parent = group.start([sys.executable, "-c", STUBBORN], env=dict(os.environ), log_path=log_path)
    deadline = time.monotonic() + 20
    while not log_path.read_text().strip():
        assert time.monotonic() < deadline, "the child's PID was not printed"
        time.sleep(0.02)
    child = int(log_path.read_text().split()[0])

    try:
        group.stop(parent, grace=0.5)

        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and _state(child) != "Z":
            assert time.monotonic() < deadline, f"child {child} still runs"
            time.sleep(0.02)
    finally:
        if Path(f"/proc/{child}").exists() and _state(child) != "Z":
            os.kill(child, signal.SIGKILL)
    assert parent.returncode == -signal.SIGKILL


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.parametrize("roots", [[], [0]])
def test_tree_cpu_without_roots(roots):
    assert process_tree_cpu_seconds(roots) == (0.0, 0)
