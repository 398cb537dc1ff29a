"""``trackcast serve``: compose the service with its HTTP API, run until SIGTERM/SIGINT, then shut
down cleanly (exit 0). ``running`` is the composition the demo uses too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator

from service.app import Service
from service.config import Settings
from service.errors import ConfigError
from service.http import HttpServer, start_http
from service.logging_setup import setup_logging
from service.webrtc import configure_ice

log = logging.getLogger("trackcast")


@contextlib.asynccontextmanager
async def running(
    settings: Settings, stop_reason: str = "shutdown"
) -> AsyncIterator[tuple[Service, HttpServer]]:
    """The service started with its HTTP API (and live view); stopped and closed on exit."""
    configure_ice(settings.webrtc.host_addresses)
    svc = Service(settings)
    http: HttpServer | None = None
    reason = "start-up failed"
    try:
        await svc.start()
        http = await start_http(svc)
        reason = stop_reason
        yield svc, http
    finally:
        await svc.stop(reason)
        if http is not None:
            await http.close()


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # a second Ctrl-C or SIGTERM: the shutdown already under way goes on
            log.warning("%s: already shutting down (streams are being stopped, the outbox flushed)", sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
    async with running(settings):
        await stop.wait()


def run_service(settings: Settings) -> int:
    setup_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
        # The loop is closed and its signal handlers with it; what is left (worker threads finishing
        # a connect or an open) must not be cut short by another SIGTERM into a non-zero exit.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
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
