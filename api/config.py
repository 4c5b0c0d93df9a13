"""Settings, read from environment variables with the TICKETS_ prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The key shown in the API documentation; accepted only in demo mode.
DEMO_CALLBACK_SECRET = "a1b2c3d4e5f6a1b2c3d4e5f6"


class Settings(BaseSettings):
    """Every setting of the service, each with a working local default."""

    model_config = SettingsConfigDict(env_prefix="TICKETS_", extra="ignore")

    database_url: str | None = Field(
        None, description="PostgreSQL URL; unset means an embedded server in `pgdata`."
    )
    pgdata: Path = Field(Path("var/pgdata"), description="Data folder of the embedded PostgreSQL server.")
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port the HTTP server listens on.")
    booking_ttl: int = Field(900, ge=1, le=7 * 24 * 3600, description="How long a booking holds a seat, in seconds.")
    max_body_bytes: int = Field(16384, ge=256, le=16 * 1024 * 1024, description="Largest accepted request body, in bytes.")
    request_deadline: float = Field(
        5.0, gt=0, le=120, description="Time a request may wait for its flight's reply, in seconds."
    )
    mailbox_size: int = Field(1024, ge=1, le=1_000_000, description="Pending commands per flight before 503, in commands.")
    batch_cap: int = Field(256, ge=1, le=100_000, description="Most commands committed in one transaction.")
    actor_idle_timeout: float = Field(
        300.0, gt=0, description="Idle time after which a flight's actor is stopped, in seconds."
    )
    pool_min_size: int = Field(2, ge=0, le=1000, description="Database connections kept open.")
    pool_max_size: int = Field(10, ge=1, le=1000, description="Most database connections at once.")
    db_command_timeout: float = Field(10.0, gt=0, description="Longest database statement, in seconds.")
    callback_secret: SecretStr | None = Field(
        None, description="Shared secret of the airline webhook; required unless serving with --demo."
    )
    mail_url: str = Field("file://var/mail", description="Email sender: smtp://host:port, smtps://, file://folder or console://.")
    mail_from: str = Field("Tickets <no-reply@tickets.example>", description="From address of passenger emails.")
    mail_locale: str = Field("ru", pattern="^(ru|en)$", description="Language of passenger emails: ru or en.")
    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING or ERROR.")
    lease_ttl: float = Field(
        5.0,
        ge=0.5,
        le=300,
        description="How long a flight's owner keeps it without renewing, in seconds; "
        "a dead owner's flights move to another process after at most this long.",
    )
    internal_host: str = Field(
        "127.0.0.1",
        description="Address of the internal port that other processes forward commands to; "
        "it has no authentication, so keep it on loopback or a private network.",
    )
    internal_port: int = Field(
        0, ge=0, le=65535, description="TCP port of the internal listener; 0 picks a free one (with --workers N, port + i)."
    )
    internal_advertise_host: str | None = Field(
        None,
        description="Host name or address other processes use to reach the internal port; "
        "unset means internal_host, or this machine's host name when that is a wildcard.",
    )
