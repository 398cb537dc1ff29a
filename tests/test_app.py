"""The service object in-process: what its start-up does to the process."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from service.app import Service
from service.config import load_settings
from tests.infra import Mosquitto


def test_start_freezes_what_was_loaded_and_stop_releases_it(tmp_path: Path) -> None:
    """Full collections would walk every module, compiled kernel and model object on the event
    loop (tens of ms each time); after start-up they sit in the permanent generation instead."""
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        settings = load_settings(None, {
            "instance": "gc", "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}"},
            "detector": {"kind": "fake", "latency_ms": 1}, "http": {"port": 0}, "streams": [],
        })  # fmt: skip

        async def run() -> tuple[int, int, int]:
            before = gc.get_freeze_count()
            svc = Service(settings)
            await svc.start(http=False)
            frozen = gc.get_freeze_count()
            await svc.stop(timeout=5)
            return before, frozen, gc.get_freeze_count()

        before, frozen, after = asyncio.run(run())
    finally:
        broker.stop()
    assert before == 0
    assert frozen > 10_000  # the loaded libraries' objects, not a handful
    assert after == 0
