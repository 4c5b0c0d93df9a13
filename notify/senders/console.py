"""Print each message to a text stream (standard output by default)."""

from __future__ import annotations

import sys
from email.message import EmailMessage
from typing import TextIO

import trio

_SHOWN_HEADERS = ("Message-ID", "Date", "From", "To", "Subject")


class ConsoleSender:
    """A development sender that prints the decoded headers and the plain-text body of each message."""

    def __init__(self, *, mail_from: str, stream: TextIO | None = None) -> None:
        self.mail_from = mail_from
        self._stream = stream

    def __str__(self) -> str:
        return "console://"

    async def send(self, message: EmailMessage) -> None:
        text = format_for_console(message)
        await trio.to_thread.run_sync(self._write, text)

    def _write(self, text: str) -> None:
        # sys.stdout is looked up at send time, so pytest's capture and
        # redirections made after startup still apply.
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(text)
        stream.flush()


def format_for_console(message: EmailMessage) -> str:
    """Return the headers (decoded) and plain-text body of ``message`` as one block of text."""
    lines = ["----- email -----"]
    for name in _SHOWN_HEADERS:
        if message[name] is not None:
            lines.append(f"{name}: {message[name]}")
    lines.append("")
    body = message.get_body(preferencelist=("plain",))
    lines.append(body.get_content().rstrip("\n") if body is not None else "(no plain-text body)")
    lines.append("----- end of email -----")
    return "\n".join(lines) + "\n"
