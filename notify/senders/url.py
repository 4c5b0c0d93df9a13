"""Parse the mail URL that selects a sender.

Accepted forms:

- ``smtp://[user:password@]host[:port][?timeout=SECONDS]``: plain SMTP, port 25 by default
- ``smtps://[user:password@]host[:port][?timeout=SECONDS]``: SMTP over implicit TLS, port 465 by default
- ``file://FOLDER``: one ``.eml`` file per message; ``file://var/mail`` is ./var/mail,
  ``file:///var/mail`` is /var/mail
- ``console://``: messages printed to standard output

User names and passwords with reserved characters (``@ : / ? #``) must be
percent-encoded. Error messages never contain the user name or password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

SCHEMES = ("smtp", "smtps", "file", "console")
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
DEFAULT_SMTP_TIMEOUT = 30.0

_EXPECTED = "expected smtp://host:port, smtps://host:port, file://FOLDER or console://"


@dataclass(frozen=True, slots=True)
class MailUrl:
    """A parsed mail URL. Fields that a scheme does not use are None."""

    scheme: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    folder: Path | None = None
    timeout: float = DEFAULT_SMTP_TIMEOUT


def redact_mail_url(url: str) -> str:
    """Return ``url`` with any user name and password replaced by ``***``."""
    scheme, separator, rest = url.partition("://")
    if separator and "@" in rest:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def parse_mail_url(url: str) -> MailUrl:
    """Parse a mail URL, or raise ValueError that names the problem and shows the URL without credentials."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError(f"invalid mail URL {redact_mail_url(url)!r}: missing scheme, {_EXPECTED}")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported mail URL scheme {scheme!r}: {_EXPECTED}")

    if scheme == "console":
        if rest:
            raise ValueError(f"invalid mail URL {url!r}: console:// takes no host or path")
        return MailUrl("console")
    if scheme == "file":
        if not rest:
            raise ValueError(f"invalid mail URL {url!r}: file:// needs a folder, e.g. file://var/mail")
        return MailUrl("file", folder=Path(unquote(rest)))
    return _parse_smtp_url(scheme, url)


def _parse_smtp_url(scheme: str, url: str) -> MailUrl:
    shown = redact_mail_url(url)
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"invalid mail URL {shown!r}: {scheme}:// needs a host, e.g. {scheme}://mail.example.com:587")
    try:
        port = parts.port
    except ValueError:
        # urlsplit's own message is not shown: with an unencoded "/" in the
        # password, the text it calls the port is part of the password.
        raise ValueError(
            f"invalid mail URL {shown!r}: invalid port, expected a number 1-65535 "
            "(percent-encode @ : / ? # in the user name and password)"
        ) from None
    if port == 0:
        raise ValueError(f"invalid mail URL {shown!r}: port must be 1-65535")
    if parts.path not in ("", "/"):
        raise ValueError(f"invalid mail URL {shown!r}: {scheme}:// takes no path")
    if parts.fragment:
        raise ValueError(f"invalid mail URL {shown!r}: {scheme}:// takes no fragment")
    if parts.password is not None and parts.username in (None, ""):
        raise ValueError(f"invalid mail URL {shown!r}: a password needs a user name")

    timeout = DEFAULT_SMTP_TIMEOUT
    try:
        options = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"invalid mail URL {shown!r}: invalid query string") from None
    for name, value in options:
        if name != "timeout":
            raise ValueError(f"invalid mail URL {shown!r}: unknown option {name!r}, the only option is timeout")
        try:
            timeout = float(value)
        except ValueError:
            timeout = float("nan")
        if not 0 < timeout < float("inf"):
            raise ValueError(f"invalid mail URL {shown!r}: timeout must be a positive number of seconds, got {value!r}")

    return MailUrl(
        scheme,
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
    )
