"""Serve the app with Hypercorn's trio worker until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
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
    config.keep_alive_timeout = 15
    config.read_timeout = 30
    config.graceful_timeout = 10
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def _until_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s; shutting down", signal.Signals(signum).name)
            return


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
    config = hypercorn_config(settings)
    if worker:
        # Hypercorn takes over the descriptor and closes it when it stops.
        config.bind = [f"fd://{bind_shared_port(settings.host, settings.port).detach()}"]
    async with open_runtime(settings, demo=demo, load_demo=not worker) as runtime:
        app = create_app(runtime)
        log.info("serving on http://%s:%d", settings.host, settings.port)
        await serve(app, config, shutdown_trigger=_until_signal)
    log.info("server stopped")
