"""``tickets serve --workers N``: N server processes on one port, each its own flight registry.

The parent prepares the database once (starts the embedded server if no URL
is configured, applies migrations, loads demo data), then starts N workers
that bind the same port with SO_REUSEPORT. Each worker owns the flights it
takes leases on and forwards the rest, exactly as separate nodes on several
machines do. The parent restarts a worker that dies, and on SIGINT or
SIGTERM stops them all.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import trio

from .config import Settings

log = logging.getLogger(__name__)

# A worker that exits this soon after its start counts as failing to
# start. After this many such exits in a row the parent gives up.
_QUICK_EXIT_SECONDS = 10.0
_MAX_QUICK_EXITS = 5
_RESTART_DELAY = 1.0
_POLL_SECONDS = 0.2


async def _prepare(settings: Settings, demo: bool) -> None:
    from persistence.migrations import migrate
    from persistence.seed import seed_demo

    from .runtime import open_database

    async with open_database(settings) as database:
        await migrate(database)
        if demo:
            await seed_demo(database)


class _Worker:
    def __init__(self, index: int, command: list[str], environment: dict[str, str]) -> None:
        self.index = index
        self.command = command
        self.environment = environment
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.quick_exits = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        # A session of its own: a Ctrl-C in the terminal reaches only the
        # parent, which then stops each worker once.
        self.process = subprocess.Popen(self.command, env=self.environment, start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("worker %d started (pid %d)", self.index, self.process.pid)


def run_workers(settings: Settings, count: int, *, demo: bool) -> int:
    """Run ``count`` worker processes until SIGINT or SIGTERM; return the exit status."""
    embedded = None
    environment = dict(os.environ)
    try:
        if settings.database_url is None:
            from persistence.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(settings.pgdata)
            settings = settings.model_copy(update={"database_url": embedded.start()})
        assert settings.database_url is not None
        environment["TICKETS_DATABASE_URL"] = settings.database_url
        trio.run(_prepare, settings, demo)
        return _supervise(settings, count, demo, environment)
    finally:
        if embedded is not None:
            embedded.stop()


def _supervise(settings: Settings, count: int, demo: bool, environment: dict[str, str]) -> int:
    workers = []
    for index in range(count):
        command = [sys.executable, "-m", "api.cli", "serve", "--worker", "--host", settings.host, "--port", str(settings.port)]
        if demo:
            command.append("--demo")
        worker_environment = dict(environment)
        if settings.internal_port:
            worker_environment["TICKETS_INTERNAL_PORT"] = str(settings.internal_port + index)
        workers.append(_Worker(index, command, worker_environment))

    stop_signal: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_signal.append(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        log.info("starting %d workers on http://%s:%d", count, settings.host, settings.port)
        for worker in workers:
            worker.start()
        while not stop_signal:
            time.sleep(_POLL_SECONDS)
            if not _watch(workers):
                status = 1
                break
        if stop_signal:
            log.info("received %s; stopping %d workers", signal.Signals(stop_signal[0]).name, count)
    finally:
        _stop(workers, settings.request_deadline + settings.db_command_timeout + 15.0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("all workers stopped")
    return status


def _watch(workers: list[_Worker]) -> bool:
    """Restart workers that exited; return False when one keeps failing to start."""
    now = time.monotonic()
    for worker in workers:
        process = worker.process
        if worker.restart_at is not None:
            if now >= worker.restart_at:
                worker.start()
            continue
        if process is None or process.poll() is None:
            continue

        quick = now - worker.started_at < _QUICK_EXIT_SECONDS
        worker.quick_exits = worker.quick_exits + 1 if quick else 0
        if worker.quick_exits >= _MAX_QUICK_EXITS:
            log.error(
                "worker %d (pid %d) exited with status %s %d times within %.0f s of starting; stopping",
                worker.index, process.pid, process.returncode, worker.quick_exits, _QUICK_EXIT_SECONDS,
            )
            return False
        log.error(
            "worker %d (pid %d) exited with status %s; starting a new one in %.0f s",
            worker.index, process.pid, process.returncode, _RESTART_DELAY,
        )
        worker.restart_at = now + _RESTART_DELAY
    return True


def _stop(workers: list[_Worker], timeout: float) -> None:
    running = [worker.process for worker in workers if worker.process is not None and worker.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker pid %d did not stop within %.0f s; killing it", process.pid, timeout)
            process.kill()
            process.wait()
