"""Start and stop what the app runs on: database, migrations, flight registry."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import trio

from engine.actor import ActorSettings
from engine.ownership import Ownership
from engine.registry import Registry
from persistence.database import Database
from persistence.embedded import EmbeddedPostgres
from persistence.errors import DatabaseError
from persistence.flight_store import PostgresFlightStore
from persistence.idempotency_store import purge_expired
from persistence.leases import PostgresLeaseStore
from persistence.migrations import migrate
from persistence.seed import seed_demo
from notify import Notifier, sender_from_url

from .config import DEMO_CALLBACK_SECRET, Settings
from .metrics import Metrics
from .forwarding import ConnectionForwarder, ForwardingServer

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The running parts an app instance uses."""

    settings: Settings
    database: Database
    registry: Registry
    # None disables the webhook (503) because no secret was configured.
    callback_secret: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    ownership: Ownership | None = None


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """Connect to the configured database, starting the embedded one if none is configured."""
    embedded = None
    dsn = settings.database_url
    if dsn is None:
        embedded = EmbeddedPostgres(settings.pgdata)
        dsn = await trio.to_thread.run_sync(embedded.start)
    try:
        database = await Database.open(
            dsn,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            acquire_timeout=settings.pool_acquire_timeout,
            command_timeout=settings.db_command_timeout,
            # A frozen owner's open transaction would hold its lease row
            # locked and block the takeover past the lease's expiry.
            idle_in_transaction_timeout=settings.lease_ttl,
        )
        try:
            yield database
        finally:
            await database.close()
    finally:
        if embedded is not None:
            await trio.to_thread.run_sync(embedded.stop)


def resolve_callback_secret(settings: Settings, *, demo: bool) -> str | None:
    """Return the webhook secret: the configured one, the documented example key in demo mode, or None."""
    if settings.callback_secret is not None:
        return settings.callback_secret.get_secret_value()
    if demo:
        log.warning(
            "TICKETS_CALLBACK_SECRET is not set: demo mode accepts the example webhook key from the API "
            "documentation; never run like this in production"
        )
        return DEMO_CALLBACK_SECRET
    log.warning("TICKETS_CALLBACK_SECRET is not set: the airline webhook responds with 503 until it is configured")
    return None


def actor_settings(settings: Settings) -> ActorSettings:
    return ActorSettings(
        mailbox_size=settings.mailbox_size,
        batch_cap=settings.batch_cap,
        hold=timedelta(seconds=settings.booking_ttl),
        idle_timeout=settings.actor_idle_timeout,
    )


def build_notifier(settings: Settings, database: Database) -> Notifier:
    sender = sender_from_url(settings.mail_url, settings.mail_from)
    return Notifier(
        database,
        sender,
        locale=settings.mail_locale,
        concurrency=settings.mail_concurrency,
        max_attempts=settings.mail_max_attempts,
        claim_timeout=settings.mail_claim_timeout,
    )
PURGE_INTERVAL = 3600.0


async def purge_expired_responses(database: Database, interval: float = PURGE_INTERVAL) -> None:
    """Delete expired Idempotency-Key responses now and then every ``interval`` seconds."""
    while True:
        try:
            deleted = await purge_expired(database)
        except DatabaseError as error:
            log.warning("purging expired idempotency responses failed; retrying in %.0f s: %s", interval, error)
        else:
            if deleted:
                log.info("purged %d expired idempotency responses", deleted)
        await trio.sleep(interval)



def new_node_id() -> str:
    """Return a name for this process in the lease table, unique across machines and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def advertised_address(settings: Settings, port: int) -> str:
    """Return host:port at which other processes reach this process's internal listener."""
    host = settings.internal_advertise_host
    if host is None:
        wildcard = settings.internal_host in ("", "0.0.0.0", "::")
        host = socket.gethostname() if wildcard else settings.internal_host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@asynccontextmanager
async def open_runtime(settings: Settings, *, demo: bool = False, load_demo: bool = True) -> AsyncIterator[Runtime]:
    """Open the database, apply migrations, optionally load demo data, run the registry and the notifier.

    The registry owns flights through leases and forwards commands for
    flights that other processes own; an internal listener takes the
    commands they forward here. ``demo`` accepts the documented webhook key
    when no secret is set, and with ``load_demo`` also loads the demo flights.

    On exit the registry drains its actors first, so emails their last
    batches owe are in the outbox; then the notifier is cancelled (it
    finishes the message it is sending) and the pool closes.
    """
    async with open_database(settings) as database:
        await migrate(database)
        if demo and load_demo:
            await seed_demo(database)
        notifier = build_notifier(settings, database)
        metrics = Metrics()

        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(settings.internal_port, host=settings.internal_host)
            address = advertised_address(settings, listeners[0].socket.getsockname()[1])
            ownership = Ownership(PostgresLeaseStore(database), new_node_id(), address, settings.lease_ttl)
            forwarder = ConnectionForwarder(
                nursery, reply_grace=settings.db_command_timeout + 1.0, stall_timeout=settings.lease_ttl
            )
            store = PostgresFlightStore(
                database, idempotency_ttl=settings.idempotency_ttl, lease_ttl=settings.lease_ttl
            )
            registry = Registry(
                store, actor_settings(settings), observer=metrics, ownership=ownership, forwarder=forwarder
            )
            metrics.watch(registry, database, store.committer)
            await nursery.start(registry.run)
            await nursery.start(ownership.run, registry.revoke)
            await nursery.start(notifier.run)
            nursery.start_soon(purge_expired_responses, database)
            nursery.start_soon(trio.serve_listeners, ForwardingServer(registry).handle_connection, listeners)
            log.info("node %s takes forwarded commands at %s", ownership.node_id, address)
            try:
                yield Runtime(
                    settings,
                    database,
                    registry,
                    resolve_callback_secret(settings, demo=demo),
                    metrics=metrics,
                    ownership=ownership,
                )
                with trio.move_on_after(settings.request_deadline + settings.db_command_timeout):
                    await registry.close()
            finally:
                nursery.cancel_scope.cancel()
