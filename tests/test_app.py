"""The service object in-process: what its start-up does to the process."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path
from typing import Any

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
            await svc.start()
            frozen = gc.get_freeze_count()
            await svc.stop(timeout=5)
            return before, frozen, gc.get_freeze_count()

        before, frozen, after = asyncio.run(run())
    finally:
        broker.stop()
    assert before == 0
    assert frozen > 10_000  # the loaded libraries' objects, not a handful
    assert after == 0


def test_a_failing_core_loop_is_logged_counted_and_restarted(tmp_path: Path, caplog: Any) -> None:
    """A bug that escapes the batcher must not stop every stream for good: the loop is logged
    with its traceback, counted, and started again, and frames flow once more."""
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        settings = load_settings(None, {
            "instance": "sup", "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}"},
            "detector": {"kind": "fake", "latency_ms": 1}, "http": {"port": 0},
            "streams": [{"id": "pitch", "url": "synthetic://pitch?players=6&fps=25&width=320&height=180"}],
        })  # fmt: skip

        async def run() -> tuple[int, int, float]:
            svc = Service(settings)
            await svc.start()
            assert svc.batcher is not None
            collect = svc.batcher._collect
            calls = 0

            def failing_once(want: int) -> list[Any]:
                nonlocal calls
                calls += 1
                if calls == 3:
                    raise RuntimeError("a bug in the batcher")
                return collect(want)

            svc.batcher._collect = failing_once  # type: ignore[method-assign]
            stream = svc.streams["pitch"]
            t0 = time.monotonic()
            while calls < 3 and time.monotonic() < t0 + 10:
                await asyncio.sleep(0.05)
            at_failure = stream.n_processed
            await asyncio.sleep(3.0)  # the restart waits 0.5-1 s
            after = stream.n_processed
            restarts = svc.metrics.registry.get_sample_value(
                "trackcast_internal_errors_total", {"loop": "batcher"}
            )
            await svc.stop(timeout=5)
            return at_failure, after, restarts or 0.0

        with caplog.at_level(logging.ERROR, logger="service.app"):
            at_failure, after, restarts = asyncio.run(run())
    finally:
        broker.stop()
    assert restarts == 1
    assert after >= at_failure + 25, "frames are processed again after the restart"
    logged = [r for r in caplog.records if "internal error in the batcher loop" in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "a bug in the batcher" in str(logged[0].exc_info[1])


def test_a_replay_held_back_by_a_slow_detector_is_not_a_stall(tmp_path: Path, caplog: Any) -> None:
    """Replay waits for room in its queue as long as the detector needs; that wait is not a
    stalled source: the stream stays online, is not reopened, and every frame is tracked once."""
    import numpy as np

    from service.media.offline import VideoWriter

    frames = 14
    clip = tmp_path / "clip.mp4"
    writer = VideoWriter(clip, 160, 96, 25)
    for i in range(frames):
        writer.write(np.full((96, 160, 3), 10 * i, np.uint8))
    writer.close()
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        settings = load_settings(None, {
            "instance": "slow", "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}"},
            # 0.4 s per frame, one at a time: the source waits that long for each permit once the
            # queue is full, longer than the stall timeout
            "detector": {"kind": "fake", "latency_ms": 400, "max_batch": 1, "max_in_flight": 1},
            "http": {"port": 0},
            "streams": [{"id": "clip", "url": str(clip), "realtime": False, "stall_timeout_s": 0.3}],
        })  # fmt: skip

        async def run() -> tuple[int, list[str], str, str | None]:
            svc = Service(settings)
            await svc.start()
            stream = svc.streams["clip"]
            states: list[str] = []
            t0 = time.monotonic()
            while stream.state != "offline" and time.monotonic() < t0 + 30:
                if not states or states[-1] != stream.state:
                    states.append(stream.state)
                await asyncio.sleep(0.02)
            done = stream.n_processed, states, stream.state, stream.reason
            await svc.stop(timeout=5)
            return done

        with caplog.at_level(logging.WARNING, logger="service.sources"):
            processed, states, state, reason = asyncio.run(run())
    finally:
        broker.stop()
    assert not [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert (state, reason) == ("offline", "end of file")
    assert "reconnecting" not in states
    assert processed == frames
