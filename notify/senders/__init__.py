"""Email senders, selected by a mail URL: SMTP, SMTP over TLS, ``.eml`` files, console."""

from __future__ import annotations

from email.utils import parseaddr

from .base import Sender, SendError
from .console import ConsoleSender
from .file import FileSender
from .smtp import SmtpSender
from .url import MailUrl, parse_mail_url, redact_mail_url

__all__ = [
    "ConsoleSender",
    "FileSender",
    "MailUrl",
    "SendError",
    "Sender",
    "SmtpSender",
    "parse_mail_url",
    "redact_mail_url",
    "sender_from_url",
    "validate_mail_from",
]


def validate_mail_from(mail_from: str) -> str:
    """Return ``mail_from`` if it contains an email address, otherwise raise ValueError."""
    _name, address = parseaddr(mail_from)
    local, at, domain = address.rpartition("@")
    if not (local and at and domain):
        raise ValueError(f"invalid From address {mail_from!r}: expected e.g. 'Tickets <no-reply@example.com>'")
    return mail_from


def sender_from_url(url: str, mail_from: str) -> Sender:
    """Create the sender that ``url`` selects. Raise ValueError for an invalid URL or From address.

    See ``notify.senders.url`` for the accepted URL forms.
    """
    validate_mail_from(mail_from)
    parsed = parse_mail_url(url)
    if parsed.scheme == "console":
        return ConsoleSender(mail_from=mail_from)
    if parsed.scheme == "file":
        assert parsed.folder is not None
        return FileSender(parsed.folder, mail_from=mail_from)
    assert parsed.host is not None and parsed.port is not None
    return SmtpSender(
        parsed.host,
        parsed.port,
        mail_from=mail_from,
        implicit_tls=parsed.scheme == "smtps",
        username=parsed.username,
        password=parsed.password,
        timeout=parsed.timeout,
    )
