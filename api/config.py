"""Settings, read from environment variables with the TICKETS_ prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The key shown in the API documentation; accepted only in demo mode.
DEMO_CALLBACK_SECRET = "a1b2c3d4e5f6a1b2c3d4e5f6"


def _setting(default: Any, description: str, unit: str, **constraints: Any) -> Any:
    """Declare a setting: its default, what it sets, and the unit or form of its value."""
    return Field(default, description=description, json_schema_extra={"unit": unit}, **constraints)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_MAIL_SCHEMES = ("smtp", "smtps", "file", "console")


class Settings(BaseSettings):
    """Every setting of the service, each with a working local default."""

    # An empty variable (TICKETS_X=) counts as unset, so it takes the default.
    model_config = SettingsConfigDict(env_prefix="TICKETS_", extra="ignore", env_ignore_empty=True)

    database_url: str | None = _setting(
        None, "PostgreSQL URL; unset starts an embedded server in TICKETS_PGDATA.", "postgresql:// URL"
    )
    pgdata: Path = _setting(Path("var/pgdata"), "Data folder of the embedded PostgreSQL server.", "path")
    host: str = _setting("127.0.0.1", "Address the HTTP server listens on.", "IP address or host name", min_length=1)
    port: int = _setting(8000, "TCP port the HTTP server listens on; 0 picks a free one.", "port", ge=0, le=65535)
    booking_ttl: int = _setting(900, "How long a booking holds a seat.", "seconds", ge=1, le=7 * 24 * 3600)
    max_body_bytes: int = _setting(
        16384, "Largest accepted request body; larger ones get 413.", "bytes", ge=256, le=16 * 1024 * 1024
    )
    request_deadline: float = _setting(
        5.0, "How long a request waits for its flight's reply before 503.", "seconds", gt=0, le=120
    )
    mailbox_size: int = _setting(1024, "Pending commands per flight before 503.", "commands", ge=1, le=1_000_000)
    batch_cap: int = _setting(256, "Maximum commands committed in one transaction.", "commands", ge=1, le=100_000)
    actor_idle_timeout: float = _setting(300.0, "Idle time after which a flight's actor is stopped.", "seconds", gt=0)
    pool_min_size: int = _setting(2, "Database connections kept open.", "connections", ge=0, le=1000)
    pool_max_size: int = _setting(10, "Maximum database connections at once.", "connections", ge=1, le=1000)
    pool_acquire_timeout: float = _setting(
        2.0, "Maximum wait for a free database connection before 503.", "seconds", gt=0, le=60
    )
    db_command_timeout: float = _setting(10.0, "Longest database statement.", "seconds", gt=0)
    idempotency_ttl: int = _setting(
        24 * 3600, "How long a response is replayed for its Idempotency-Key.", "seconds", ge=60, le=30 * 24 * 3600
    )
    max_concurrent_requests: int = _setting(
        1024, "Requests handled at once by one process before 503.", "requests", ge=1, le=1_000_000
    )
    keep_alive_timeout: float = _setting(
        5.0, "Time an idle connection, or one still sending request headers, stays open.", "seconds", gt=0, le=3600
    )
    read_timeout: float = _setting(10.0, "Maximum wait for the next bytes of a request body.", "seconds", gt=0, le=3600)
    shutdown_grace: float = _setting(
        10.0, "Time in-flight requests get to finish after SIGTERM or SIGINT.", "seconds", ge=0, le=3600
    )
    callback_secret: SecretStr | None = _setting(
        None, "Shared secret of the airline webhook; required unless serving with --demo.", "text (secret)"
    )
    mail_url: str = _setting(
        "file://var/mail", "Email sender: smtp://host:port, smtps://user:password@host:port, file://folder or console://.", "URL"
    )
    mail_from: str = _setting("Tickets <no-reply@tickets.example>", "From address of passenger emails.", "email address")
    mail_locale: str = _setting("ru", "Language of passenger emails.", "ru or en", pattern="^(ru|en)$")
    mail_concurrency: int = _setting(8, "Emails sent at once by one server process.", "emails", ge=1, le=1000)
    mail_max_attempts: int = _setting(8, "Send attempts per email before it is marked failed.", "attempts", ge=1, le=100)
    mail_claim_timeout: float = _setting(
        60.0,
        "How long a claimed email may take to send before another notifier may send it again.",
        "seconds",
        gt=0,
        le=3600,
    )
    log_level: str = _setting("INFO", "Lowest level of log lines written.", "DEBUG, INFO, WARNING, ERROR or CRITICAL")
    log_format: str = _setting("text", "Log line format; json writes one JSON object per line.", "text or json", pattern="^(text|json)$")
    lease_ttl: float = _setting(
        5.0,
        "How long a flight's owner keeps it without renewing; a dead owner's flights move to another process after at most this long.",
        "seconds",
        ge=0.5,
        le=300,
    )
    internal_host: str = _setting(
        "127.0.0.1",
        "Address of the internal port that other processes forward commands to; it has no authentication, so keep it on loopback or a private network.",
        "IP address or host name",
    )
    internal_port: int = _setting(
        0, "TCP port of the internal listener; 0 picks a free one (with --workers N, port + i).", "port", ge=0, le=65535
    )
    internal_advertise_host: str | None = _setting(
        None,
        "Host name or address other processes use to reach the internal port; unset means TICKETS_INTERNAL_HOST, or this machine's host name when that is a wildcard.",
        "host name",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value

    @field_validator("mail_url")
    @classmethod
    def _mail_scheme(cls, value: str) -> str:
        scheme, separator, _ = value.partition("://")
        if not separator or scheme not in _MAIL_SCHEMES:
            raise ValueError(f"must start with one of {', '.join(name + '://' for name in _MAIL_SCHEMES)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return value.upper()

    @model_validator(mode="after")
    def _pool_sizes(self) -> Settings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"TICKETS_POOL_MIN_SIZE ({self.pool_min_size}) must not exceed TICKETS_POOL_MAX_SIZE ({self.pool_max_size})"
            )
        return self
