"""A real SMTP server (aiosmtpd) on a free loopback port that records what it receives.

aiosmtpd's Controller runs the server on its own asyncio loop and thread,
so trio tests can talk to it over TCP like to any other mail server.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller

# Maximum time a held DATA command waits for release(), in seconds.
HOLD_TIMEOUT = 10.0


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted message: the SMTP envelope and the parsed content."""

    mail_from: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes


class RecordingHandler:
    """An aiosmtpd handler that records accepted messages, rejects chosen recipients and can hold DATA.

    Handler methods run on the server's thread, so every shared field is
    guarded by a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._rcpt_attempts: Counter[str] = Counter()
        self._data_started = 0
        self.rejected: dict[str, str] = {}
        self._hold = threading.Event()
        self._released = threading.Event()

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def data_started(self) -> int:
        with self._lock:
            return self._data_started

    def rcpt_attempts(self, address: str) -> int:
        with self._lock:
            return self._rcpt_attempts[address]

    def reject(self, address: str, reply: str = "550 mailbox unavailable") -> None:
        """Reply to RCPT TO for ``address`` with ``reply``."""
        self.rejected[address] = reply

    def hold(self) -> None:
        """Make each DATA command wait until release() (at most HOLD_TIMEOUT seconds)."""
        self._released.clear()
        self._hold.set()

    def release(self) -> None:
        self._hold.clear()
        self._released.set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        with self._lock:
            self._rcpt_attempts[address] += 1
        if address in self.rejected:
            return self.rejected[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self._data_started += 1
        if self._hold.is_set():
            deadline = time.monotonic() + HOLD_TIMEOUT
            while not self._released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        raw = envelope.original_content or envelope.content
        message = BytesParser(policy=policy.default).parsebytes(raw)
        with self._lock:
            self._messages.append(ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), message, raw))
        return "250 Message accepted for delivery"


class _LoopbackController(Controller):
    """A Controller on a port chosen by the OS, bound before the server starts (no race)."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self._socket.getsockname()[1], **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._socket, ssl=self.ssl_context)


@dataclass(frozen=True)
class SmtpServer:
    handler: RecordingHandler
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


@contextmanager
def running_smtp_server(
    handler: RecordingHandler | None = None, *, ssl_context: ssl.SSLContext | None = None, **smtp_options: Any
) -> Iterator[SmtpServer]:
    """Run an SMTP server on 127.0.0.1 for the duration of the block.

    ``ssl_context`` makes it an implicit-TLS (smtps) server. ``smtp_options``
    go to aiosmtpd's SMTP class, e.g. an authenticator.
    """
    handler = handler or RecordingHandler()
    controller = _LoopbackController(handler, ssl_context=ssl_context, ready_timeout=10, **smtp_options)
    controller.start()
    try:
        yield SmtpServer(handler, "127.0.0.1", controller.port)
    finally:
        handler.release()
        controller.stop()
