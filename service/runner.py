"""``trackcast serve``: compose the service with its HTTP API, run until SIGTERM/SIGINT, then shut
down cleanly (exit 0). ``running`` is the composition the demo uses too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable

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


def on_stop_signals(callback: Callable[[signal.Signals], None]) -> None:
    """SIGTERM and SIGINT call ``callback`` on the running loop, for as long as it runs; after the
    loop is closed they do nothing.

    Installed with ``signal.signal``, not ``loop.add_signal_handler``: closing a loop removes its
    handlers and puts the default action back, so a second SIGTERM arriving just as the shutdown
    finished (a supervisor repeating itself) would kill the process (exit -15) instead of letting it
    exit 0. A no-op outside the main thread (signals are the main thread's)."""
    loop = asyncio.get_running_loop()

    def handler(signum: int, _frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the shutdown is done
            loop.call_soon_threadsafe(callback, signal.Signals(signum))

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):
            signal.signal(sig, handler)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # a second Ctrl-C or SIGTERM: the shutdown already under way goes on
            log.warning("%s: already shutting down (streams are being stopped, the outbox flushed)", sig.name)
        stop.set()

    on_stop_signals(on_signal)
    async with running(settings):
        await stop.wait()


def run_service(settings: Settings) -> int:
    setup_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
        # What is left (worker threads finishing a connect or an open) is not cut short by another
        # SIGTERM: on_stop_signals' handlers do nothing once the loop is closed, and from here on the
        # signals are ignored outright (no Python handler to run at all).
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
