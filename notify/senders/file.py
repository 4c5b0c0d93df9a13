"""Write each message as an ``.eml`` file in a folder."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import trio

from .base import SendError

log = logging.getLogger(__name__)


class FileSender:
    """A sender that writes one ``.eml`` file per message (RFC 5322, CRLF line endings) into ``folder``.

    The folder is created on first use. A relative folder is resolved
    against the working directory when the sender is created. Each file is
    written to a temporary name, flushed to disk and then renamed, so a
    reader never sees a partial message. Names start with the UTC time
    for sorting and end with a random UUID, so two messages never share a name.
    """

    def __init__(self, folder: Path, *, mail_from: str) -> None:
        self.mail_from = mail_from
        self.folder = Path(folder).absolute()

    def __str__(self) -> str:
        return f"file://{self.folder}"

    async def send(self, message: EmailMessage) -> None:
        try:
            path = await trio.to_thread.run_sync(self._write, message)
        except OSError as error:
            raise SendError(f"cannot write email file in {self.folder}: {type(error).__name__}: {error}") from None
        log.debug("email written to %s", path)

    def _write(self, message: EmailMessage) -> Path:
        data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}.eml"
        descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".eml.tmp")
        try:
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            path = self.folder / name
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        return path
