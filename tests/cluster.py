"""Several `tickets serve` processes on loopback ports sharing the test database.

Each node is a real subprocess (``python -m api.cli serve``) with its log in
a file, stopped by its PID when the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from tests.conftest import CALLBACK_SECRET

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Node:
    """One server process; ``url`` is its HTTP base URL."""

    def __init__(self, name: str, port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.port = port
        self.process = process
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def owns(self, lease_owner: str) -> bool:
        """Return whether a lease's owner id (host-pid-suffix) names this process."""
        return lease_owner.rsplit("-", 2)[-2] == str(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)


class Cluster:
    """Starts nodes on one database and stops every one of them at teardown."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.database_url = database_url
        self.folder = folder
        self.nodes: list[Node] = []

    async def start(self, count: int, *, arguments: tuple[str, ...] = (), **settings: str) -> list[Node]:
        """Start ``count`` nodes with extra `serve` arguments and TICKETS_* settings; return when /readyz of each returns 200."""
        started = [self._spawn(arguments, settings) for _ in range(count)]
        async with httpx.AsyncClient(timeout=2) as client:
            for node in started:
                await _wait_ready(client, node)
        return started

    def _spawn(self, arguments: tuple[str, ...], settings: dict[str, str]) -> Node:
        name = f"node{len(self.nodes) + 1}"
        port = free_port()
        environment = dict(os.environ)
        environment.update(
            {
                "TICKETS_DATABASE_URL": self.database_url,
                "TICKETS_CALLBACK_SECRET": CALLBACK_SECRET,
                "TICKETS_MAIL_URL": "console://",
                "TICKETS_LOG_LEVEL": "INFO",
            }
        )
        environment.update({f"TICKETS_{key.upper()}": value for key, value in settings.items()})
        log_path = self.folder / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(port), *arguments],
                cwd=ROOT,
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        node = Node(name, port, process, log_path)
        self.nodes.append(node)
        return node

    def stop_all(self) -> None:
        for node in self.nodes:
            node.stop()


async def _wait_ready(client: httpx.AsyncClient, node: Node) -> None:
    with trio.move_on_after(START_TIMEOUT):
        while True:
            if node.process.poll() is not None:
                raise AssertionError(f"{node.name} exited with status {node.process.returncode}:\n{node.log()}")
            try:
                response = await client.get(f"{node.url}/readyz")
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return
            await trio.sleep(0.1)
    raise AssertionError(f"{node.name} did not become ready within {START_TIMEOUT:.0f} s:\n{node.log()}")
