"""Serve the app with Hypercorn's trio worker until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal

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


async def run_server(settings: Settings, *, demo: bool = False) -> None:
    async with open_runtime(settings, demo=demo) as runtime:
        app = create_app(runtime)
        config = hypercorn_config(settings)
        log.info("serving on http://%s:%d", settings.host, settings.port)
        await serve(app, config, shutdown_trigger=_until_signal)
    log.info("server stopped")
