"""Start the server processes of one load run in its layout, and stop them.

One process and ``--workers N`` start one command, ``tickets serve`` and
``tickets serve --workers N``. ``--nodes N`` starts N ``tickets serve``
processes on the run's database. Each node gets its own HTTP port and its
own internal forwarding port (TICKETS_INTERNAL_HOST and TICKETS_INTERNAL_PORT).
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .layouts import NODES, WORKERS, ServiceLayout
from .processes import ProcessGroup, free_port, wait_for_listeners, wait_until_ready
from .scenarios import Implementation

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
STOP_GRACE = 15.0
# `tickets serve --workers` gives its workers request_deadline +
# db_command_timeout + 15 s (30 s by default) to stop before it kills them,
# so its parent gets longer than that before SIGKILL.
WORKERS_STOP_GRACE = 45.0


@dataclass
class Servers:
    """The started server processes of a run, with the base URL of each node."""

    processes: list[subprocess.Popen] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    internal_ports: list[int] = field(default_factory=list)
    stop_grace: float = STOP_GRACE

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]


def distinct_free_ports(count: int) -> list[int]:
    """Return ``count`` different TCP ports on 127.0.0.1 that were free a moment ago."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_servers(
    group: ProcessGroup,
    implementation: Implementation,
    layout: ServiceLayout,
    env: dict[str, str],
    switch_interval: float | None,
    raw_dir: Path,
    label: str,
    servers: Servers,
) -> None:
    """Start ``implementation`` in ``layout`` and wait until every process takes requests.

    The processes are added to ``servers`` as they start, so the caller can
    stop them even when a later one fails to start.
    """
    if layout.mode == NODES:
        _start_nodes(group, implementation, layout.count, env, switch_interval, raw_dir, label, servers)
        return
    port = free_port()
    log_path = raw_dir / f"{label}.server.log"
    log.info("%s: starting %s (%s) on port %d", label, implementation.name, layout.label, port)
    workers = layout.count if layout.mode == WORKERS else 1
    process = group.start(implementation.command(port, switch_interval, workers=workers), env=env, log_path=log_path)
    servers.processes.append(process)
    servers.urls.append(f"http://127.0.0.1:{port}")
    if workers > 1:
        servers.stop_grace = WORKERS_STOP_GRACE
    wait_until_ready(process, f"http://127.0.0.1:{port}/api/v1/flights", READY_TIMEOUT, log_path)
    if workers > 1:
        # The first worker to listen passes the readiness check, so the load
        # waits until all of them listen.
        wait_for_listeners(process, port, workers, READY_TIMEOUT, log_path)


def _start_nodes(
    group: ProcessGroup,
    implementation: Implementation,
    count: int,
    env: dict[str, str],
    switch_interval: float | None,
    raw_dir: Path,
    label: str,
    servers: Servers,
) -> None:
    ports = distinct_free_ports(2 * count)
    log_paths = []
    for index in range(count):
        port, internal_port = ports[2 * index], ports[2 * index + 1]
        node_env = dict(env)
        node_env.update({"TICKETS_INTERNAL_HOST": "127.0.0.1", "TICKETS_INTERNAL_PORT": str(internal_port)})
        log_path = raw_dir / f"{label}.node{index + 1}.server.log"
        log.info("%s: starting node %d on port %d, internal port %d", label, index + 1, port, internal_port)
        process = group.start(implementation.command(port, switch_interval), env=node_env, log_path=log_path)
        servers.processes.append(process)
        servers.urls.append(f"http://127.0.0.1:{port}")
        servers.internal_ports.append(internal_port)
        log_paths.append(log_path)
    # The nodes start side by side, and each must pass its readiness check before the load starts.
    for process, url, log_path in zip(servers.processes, servers.urls, log_paths):
        wait_until_ready(process, f"{url}/api/v1/flights", READY_TIMEOUT, log_path)


def stop_servers(group: ProcessGroup, servers: Servers) -> list[int | None]:
    """Stop every server process of a run by PID; return their exit codes in start order."""
    codes = []
    while servers.processes:
        codes.append(group.stop(servers.processes.pop(0), grace=servers.stop_grace))
    return codes
