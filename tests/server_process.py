"""Run ``tickets serve`` as a child process on a loopback port, for crash and shutdown tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from tests.conftest import CALLBACK_SECRET

_RUNNING = re.compile(rb"Running on (http://127\.0\.0\.1:\d+)")


def tickets_command() -> list[str]:
    script = Path(sys.executable).parent / "tickets"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "api.cli", "serve"]


class ServerProcess:
    """One ``tickets serve`` child; its log goes to ``log_path``, its port is the one Hypercorn reports."""

    def __init__(self, database_url: str, log_path: Path, **settings: object) -> None:
        self.log_path = log_path
        self.env = dict(os.environ)
        self.env.update(
            {
                "TICKETS_DATABASE_URL": database_url,
                "TICKETS_HOST": "127.0.0.1",
                "TICKETS_PORT": "0",
                "TICKETS_CALLBACK_SECRET": CALLBACK_SECRET,
                "TICKETS_MAIL_URL": "console://",
                "TICKETS_LOG_LEVEL": "INFO",
            }
        )
        self.env.update({f"TICKETS_{name.upper()}": str(value) for name, value in settings.items()})
        self.process: trio.Process | None = None
        self.base_url = ""
        self._log_offset = 0

    async def start(self, timeout: float = 60) -> str:
        """Start the server and wait until /readyz returns 200; return its base URL."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        try:
            self.process = await trio.lowlevel.open_process(
                tickets_command(), env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        finally:
            log.close()
        with trio.fail_after(timeout):
            while not self.base_url:
                if self.process.poll() is not None:
                    raise RuntimeError(f"tickets serve exited with {self.process.returncode}: {self.new_log()[-2000:]}")
                match = _RUNNING.search(self.new_log().encode())
                if match:
                    self.base_url = match.group(1).decode()
                else:
                    await trio.sleep(0.05)
            async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
                while (await client.get("/readyz")).status_code != 200:
                    await trio.sleep(0.05)
        return self.base_url

    def new_log(self) -> str:
        """The log lines written since the last start."""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_offset)
            return log.read().decode("utf-8", "replace")

    def send_signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, timeout: float = 30) -> int:
        """Wait for the process to exit; return its exit code."""
        assert self.process is not None
        with trio.fail_after(timeout):
            code = await self.process.wait()
        self.base_url = ""
        return code

    async def kill(self) -> None:
        """SIGKILL the process (if still running) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            await self.wait()
