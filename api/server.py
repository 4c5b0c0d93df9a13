"""Serve the app with Hypercorn's trio worker until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import resource
import signal
from functools import partial
import socket

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from .app import create_app
from .config import Settings
from .runtime import open_runtime

log = logging.getLogger(__name__)


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{settings.host}:{settings.port}"]
    # Hypercorn 0.18 counts a connection as idle until a request's headers
    # are complete, so the keep-alive timeout also closes connections that
    # trickle their headers (slowloris) after this many seconds.
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.read_timeout = settings.read_timeout  # type: ignore[assignment]
    # After SIGTERM or SIGINT: listeners close at once, then in-flight
    # requests get this long before their connections are cancelled.
    config.graceful_timeout = settings.shutdown_grace
    config.backlog = 1024
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def _until_signal(grace: float) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info(
                "received %s; closing listeners and giving in-flight requests up to %.1f s",
                signal.Signals(signum).name,
                grace,
            )
            return


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the new soft limit.

    Each client connection is a file descriptor: with the common soft limit
    of 1,024, a thousand idle or slow connections would make accept() fail
    for everyone else.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.warning("could not raise the open file limit from %d to %d: %s", soft, target, error)
    return soft


def bind_shared_port(host: str, port: int) -> socket.socket:
    """Bind a TCP socket with SO_REUSEPORT, so that sibling worker processes bound alike share the port.

    The kernel spreads incoming connections over the sockets of such a group.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


async def run_server(settings: Settings, *, demo: bool = False, worker: bool = False) -> None:
    """Serve until SIGINT or SIGTERM; a ``worker`` shares its port with its siblings and loads no demo data."""
    open_files = raise_open_file_limit()
    config = hypercorn_config(settings)
    if worker:
        # Hypercorn takes over the descriptor and closes it when it stops.
        config.bind = [f"fd://{bind_shared_port(settings.host, settings.port).detach()}"]
    async with open_runtime(settings, demo=demo, load_demo=not worker) as runtime:
        app = create_app(runtime)
        log.info(
            "serving on http://%s:%d (open file limit %d, at most %d requests at once)",
            settings.host,
            settings.port,
            open_files,
            settings.max_concurrent_requests,
        )
        await serve(app, config, shutdown_trigger=partial(_until_signal, settings.shutdown_grace))
        log.info("HTTP server stopped; flushing flight actors and closing the database pool")
    log.info("server stopped")
