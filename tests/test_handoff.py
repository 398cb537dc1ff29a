"""Frame handoff from source threads to the event loop, and the batcher's wake-ups (unit level).

Replay sources leave frames in their inbox while the batcher has no use for them and the batcher
pulls them; nothing may be lost or reordered by that, and a status sent after frames must reach
the loop after them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np

from detector_client.base import InputSpec, PreparedFrame
from detector_client.fake import FakeDetector
from service.config import MqttConfig, StreamConfig, TrackerSettings
from service.metrics import Metrics
from service.mqtt import Publisher
from service.pipeline import Batcher, StreamState, Wake
from service.sources import Demand, FrameItem, ThreadSource

SPEC = InputSpec(64, 64)
IMAGE = np.zeros((48, 64, 3), np.uint8)


class ListSource(ThreadSource):
    """Delivers ``n`` frames from its thread (``gap_s`` apart), then says it is offline."""

    def __init__(
        self,
        n: int,
        *args: Any,
        permits: threading.BoundedSemaphore | None = None,
        gap_s: float = 0.0,
        hold_s: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.n = n
        self.permits = permits  # a replay stream's queue bound, taken per frame as VideoSource does
        self.gap_s = gap_s  # a source slower than the batcher
        self.hold_s = hold_s  # open this long after its last frame (its end hands the inbox over)

    def _run(self) -> None:
        for i in range(1, self.n + 1):
            if self.gap_s:
                time.sleep(self.gap_s)
            prepared = self.spec.prepare(IMAGE, stream=self.cfg.id, index=i)
            if self.permits is not None:
                self.permits.acquire()
            self._deliver(FrameItem(self.cfg.id, i, i, i / 25, time.time(), prepared, None, 0.001))
        time.sleep(self.hold_s)
        self._call(self._on_status, "offline", "end of file")
        self._finish()


def test_wake_returns_at_once_when_already_set() -> None:
    async def main() -> tuple[bool, float]:
        w = Wake()
        w.set()
        t0 = time.perf_counter()
        return await w.wait(5.0), time.perf_counter() - t0

    woken, dt = asyncio.run(main())
    assert woken and dt < 1.0


def test_wake_times_out_and_is_woken_by_set() -> None:
    async def main() -> tuple[bool, bool, bool]:
        w = Wake()
        timed_out = await w.wait(0.02)
        asyncio.get_running_loop().call_later(0.01, w.set)
        woken = await w.wait(5.0)
        w.clear()
        return timed_out, woken, w.is_set()

    timed_out, woken, still_set = asyncio.run(main())
    assert timed_out is False and woken is True and still_set is False


def _run_source(waiting: bool, n: int) -> tuple[list[Any], int]:
    """Frames and statuses in the order the loop saw them, and how often the source woke the loop."""

    async def main() -> tuple[list[Any], int]:
        loop = asyncio.get_running_loop()
        seen: list[Any] = []
        wakes = 0
        orig = loop.call_soon_threadsafe

        def counting(cb: Any, *args: Any) -> Any:
            nonlocal wakes
            if getattr(cb, "__name__", "") == "pull":
                wakes += 1
            return orig(cb, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        demand = Demand()
        demand.waiting = waiting
        cfg = StreamConfig(id="s", url="clip.mp4", mode="replay")
        src = ListSource(
            n, cfg, SPEC, loop, lambda it: seen.append(it.index), lambda s, r: seen.append(s), lambda i: None
        )
        src._demand = demand
        src.start()
        while not src.finished.is_set():
            await asyncio.sleep(0.01)
        src.pull()  # what the batcher does when it has room
        return seen, wakes

    return asyncio.run(main())


def test_replay_frames_wait_for_the_batcher_and_keep_their_order() -> None:
    seen, wakes = _run_source(waiting=False, n=200)
    # The loop was never woken for a frame, yet every frame came before the status sent after them.
    assert wakes == 0
    assert seen == [*range(1, 201), "offline"]


def test_waiting_batcher_is_woken_for_frames() -> None:
    seen, wakes = _run_source(waiting=True, n=50)
    assert wakes >= 1
    assert seen == [*range(1, 51), "offline"]


def _through_batcher(
    n: int,
    max_batch: int,
    max_wait_s: float,
    gap_s: float = 0.0,
    fail_at: tuple[int, ...] = (),
    metrics: Metrics | None = None,
) -> tuple[list[int], list[int], int, float]:
    """A replay source through StreamState and Batcher with a fake detector: frames tracked (in
    the order the tracker saw them), batch sizes, frames processed and seconds taken."""

    async def main() -> tuple[list[int], list[int], int, float]:
        loop = asyncio.get_running_loop()
        m = metrics or Metrics()
        det = FakeDetector(latency_ms=5, boxes=3, spec=SPEC, max_batch=max_batch, max_in_flight=2)
        streams: dict[str, StreamState] = {}
        batcher = Batcher(det, streams, m, max_batch=max_batch, max_wait_s=max_wait_s)
        publisher = Publisher(MqttConfig(url="mqtt://127.0.0.1:1"), "t", m)
        cfg = StreamConfig(id="s", url="clip.mp4", mode="replay")
        state = StreamState(cfg, TrackerSettings(), m, publisher, batcher.wake, 30.0)
        streams["s"] = state
        tracked: list[int] = []

        def listen(st: StreamState, item: FrameItem, tracks: Any) -> None:
            tracked.append(item.index)
            if item.index in fail_at:
                raise RuntimeError(f"a bug on frame {item.index}")

        state.listeners.append(listen)
        sizes: list[int] = []
        orig = batcher._detect

        async def record(batch: list[FrameItem]) -> None:
            sizes.append(len(batch))
            await orig(batch)

        batcher._detect = record  # type: ignore[method-assign]
        src = ListSource(n, cfg, SPEC, loop, state.put, state.set_status, state.set_info,
                         permits=state.permits, gap_s=gap_s)  # fmt: skip
        src._demand = batcher.demand
        state.pull = src.pull
        task = asyncio.create_task(batcher.run())
        t0 = time.monotonic()
        src.start()
        while len(tracked) < n and time.monotonic() < t0 + 60:
            await asyncio.sleep(0.01)
        took = time.monotonic() - t0
        task.cancel()
        return tracked, sizes, state.n_processed, took

    return asyncio.run(main())


def test_batcher_pulls_replay_frames_and_tracks_every_one_in_order() -> None:
    tracked, sizes, processed, _ = _through_batcher(120, max_batch=4, max_wait_s=0.005)
    assert tracked == list(range(1, 121)) and processed == 120
    assert max(sizes) > 1  # frames that waited in the source went out together


def test_full_batches_do_not_wait_for_the_deadline() -> None:
    """The frame that completes a batch wakes the batcher: a long max_wait_ms costs nothing then."""
    # The source is slower than the batcher, so a batch starts with one frame and fills up; with a
    # 20 s deadline, a batcher that slept until it would take 20 s for the first batch alone.
    tracked, sizes, processed, took = _through_batcher(40, max_batch=4, max_wait_s=20.0, gap_s=0.005)
    assert tracked == list(range(1, 41)) and processed == 40
    assert sizes == [4] * 10
    assert took < 10, took


def test_a_bug_in_one_frames_processing_is_counted_logged_once_and_the_stream_goes_on(caplog: Any) -> None:
    """A frame whose processing raises (here a listener, the live view's hook) does not stop its
    stream: the frames after it are tracked in order, each fault is counted, the first logged with
    its traceback and the stream id, and nothing escapes into the batcher's tasks."""
    import logging

    metrics = Metrics()
    with caplog.at_level(logging.DEBUG, logger="service.pipeline"):
        tracked, _, processed, _ = _through_batcher(80, 4, 0.005, fail_at=(20, 50), metrics=metrics)
    assert processed == 80  # tracked and published; only the hook after it failed
    assert tracked == list(range(1, 81))
    assert metrics.registry.get_sample_value("trackcast_stream_errors_total", {"stream": "s"}) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "stream s: frame 20" in errors[0].getMessage() and errors[0].exc_info
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_fake_detector_boxes_per_frame_inside_the_frame_and_moving() -> None:
    det = FakeDetector(boxes=10)
    frames = [
        PreparedFrame(IMAGE, 1.0, w, h, "s", i) for i, (w, h) in enumerate([(1280, 720), (720, 1280)] * 3, 1)
    ]
    out = det.detect_sync(frames)
    assert len(out) == 6
    for f, d in zip(frames, out, strict=True):
        assert len(d) == 10 and d.scores.shape == (10,) and d.classes.dtype == np.int64
        b = d.xyxy
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= f.src_width).all() and (b[:, 2] > b[:, 0]).all()
        assert (b[:, 1] >= 0).all() and (b[:, 3] <= f.src_height).all() and (b[:, 3] > b[:, 1]).all()
    assert not np.array_equal(out[0].rows, out[2].rows)  # same size, later frame: the boxes drifted
    assert len(FakeDetector(boxes=0).detect_sync(frames[:2])[0]) == 0


def _one_replay_stream(det: FakeDetector, max_wait_s: float) -> tuple[Batcher, StreamState, StreamConfig]:
    """A batcher for ``det`` (its max_batch) serving one replay stream ``s``."""
    metrics = Metrics()
    streams: dict[str, StreamState] = {}
    batcher = Batcher(det, streams, metrics, max_batch=det.max_batch, max_wait_s=max_wait_s)
    publisher = Publisher(MqttConfig(url="mqtt://127.0.0.1:1"), "t", metrics)
    cfg = StreamConfig(id="s", url="clip.mp4", mode="replay")
    streams["s"] = state = StreamState(cfg, TrackerSettings(), metrics, publisher, batcher.wake, 30.0)
    return batcher, state, cfg


def test_next_batch_goes_to_the_detector_before_the_last_one_is_tracked() -> None:
    """Pipelining: when a batch comes back and frames are waiting, the detector gets the next batch
    before the returned one is tracked and published, so it never idles while the loop tracks."""

    async def main() -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        det = FakeDetector(latency_ms=5, boxes=3, spec=SPEC, max_batch=2, max_in_flight=1)
        batcher, state, cfg = _one_replay_stream(det, max_wait_s=0.005)
        order: list[tuple[str, int]] = []
        state.listeners.append(lambda st, item, tracks: order.append(("tracked", item.index)))
        orig = det.detect

        async def detect(frames: Any) -> Any:
            order.append(("detect", frames[0].index))
            return await orig(frames)

        det.detect = detect  # type: ignore[method-assign]
        src = ListSource(
            8, cfg, SPEC, loop, state.put, state.set_status, state.set_info, permits=state.permits
        )
        state.pull = src.pull
        src.start()
        t0 = time.monotonic()
        while len(state.queue) < 8 and time.monotonic() < t0 + 10:  # every frame waits before we start
            await asyncio.sleep(0.01)
        task = asyncio.create_task(batcher.run())
        while len(order) < 12 and time.monotonic() < t0 + 20:
            await asyncio.sleep(0.01)
        task.cancel()
        return order

    order = asyncio.run(main())
    assert [i for kind, i in order if kind == "tracked"] == list(range(1, 9))
    assert [i for kind, i in order if kind == "detect"] == [1, 3, 5, 7]
    # Batch (first, first + 1) went to the detector before batch (first - 2, first - 1) was tracked.
    for first in (3, 5, 7):
        assert order.index(("detect", first)) < order.index(("tracked", first - 2)), order


def test_a_frame_that_waited_for_the_detector_does_not_wait_a_fill_window_more() -> None:
    """A batch's deadline runs from when its oldest frame was ready, waits for a busy detector
    included: frame 2 arrives while frame 1's batch is in the detector (one slot), and when the
    slot frees it is already past its deadline, so it goes at once; its queue stage says how long
    it waited. (It used to count from when the batcher pulled it: a whole fill window more.)"""

    async def main() -> tuple[list[float], list[float], list[float]]:
        loop = asyncio.get_running_loop()
        det = FakeDetector(latency_ms=300, boxes=3, spec=SPEC, max_batch=8, max_in_flight=1)
        batcher, state, cfg = _one_replay_stream(det, max_wait_s=0.2)
        sent: list[float] = []
        back: list[float] = []
        queued: list[float] = []
        orig = det.detect

        async def detect(frames: Any) -> Any:
            sent.append(time.monotonic())
            try:
                return await orig(frames)
            finally:
                back.append(time.monotonic())

        det.detect = detect  # type: ignore[method-assign]
        state.listeners.append(lambda st, item, tracks: queued.append(item.timings["queue"]))
        src = ListSource(2, cfg, SPEC, loop, state.put, state.set_status, state.set_info,
                         permits=state.permits, gap_s=0.25, hold_s=1.0)  # fmt: skip
        src._demand = batcher.demand
        state.pull = src.pull
        task = asyncio.create_task(batcher.run())
        src.start()
        t0 = time.monotonic()
        while len(queued) < 2 and time.monotonic() < t0 + 20:
            await asyncio.sleep(0.01)
        task.cancel()
        return sent, back, queued

    sent, back, queued = asyncio.run(main())
    assert len(sent) == 2, sent  # two batches of one frame: frame 2 came after frame 1 had gone
    assert sent[1] - back[0] < 0.1, (sent, back)  # the free slot took it at once, not 0.2 s later
    assert queued[0] < 0.1 and 0.15 < queued[1] < 0.5, queued  # frame 2 waited ~0.25 s for the slot
