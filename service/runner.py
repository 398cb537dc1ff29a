"""``trackcast serve``: run the service until SIGTERM/SIGINT, then shut down cleanly (exit 0)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from service.app import Service
from service.config import Settings
from service.errors import ConfigError
from service.logging_setup import setup_logging

log = logging.getLogger("trackcast")


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> Service:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    svc = Service(settings)
    try:
        await svc.start()
    except BaseException:
        await svc.stop("start-up failed")
        raise
    await stop.wait()
    await svc.stop("shutdown")
    return svc


def run_service(settings: Settings) -> int:
    setup_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"trackcast: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"trackcast: error: {exc.strerror or exc} (HTTP {settings.http.host}:{settings.http.port})",
            file=sys.stderr,
        )
        return 2
    return 0
