"""The sender protocol and the error that a failed send raises."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol


class SendError(Exception):
    """A failed delivery. The notifier records its text and retries later.

    ``permanent`` is True for an SMTP 5xx reply, such as a rejected
    recipient. The notifier still retries permanent errors up to its attempt
    limit, because a 5xx can come from a misconfigured or briefly broken
    server. ``code`` is the SMTP reply code when there was one.
    """

    def __init__(self, message: str, *, permanent: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class Sender(Protocol):
    """An email transport. ``send`` runs any blocking work off the trio thread."""

    mail_from: str

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` or raise SendError."""
        ...

    def __str__(self) -> str:
        """Describe the destination for logs, without any password."""
        ...
