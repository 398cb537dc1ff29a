"""Per-stream state and the cross-stream batcher: the asyncio adapters around the service's rules.

Flow: a source hands frames to its ``StreamState`` (live: one slot, the freshest frame wins and
the replaced one is counted as ``superseded``; replay: a short FIFO the source waits on). The one
``Batcher`` takes a free detector slot, asks the batch policy (``service.rules.batching``) which
streams' ready frames form the batch and until when it may wait, and runs the detector (bounded in
flight). Results go back to their stream, whose frame sequencer (``service.rules.sequencer``)
releases them to its tracker strictly in frame order (gaps and late results counted), and whose
track lifecycle (``service.rules.lifecycle``) turns each frame's tracks into started/ended events.
The tracker's frame counter is the stream's sample counter, so frames skipped by ``detect_fps``
are not gaps, dropped frames are.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np

from detector_client.base import Detections, Detector
from service.config import StreamConfig, TrackerSettings
from service.errors import ConfigError
from service.messages import SCHEMA_VERSION, Event, StreamStatus, TracksMessage, dumps
from service.metrics import Metrics
from service.mqtt import Publisher
from service.rules.analytics import Analytics, AnalyticsSpec, Resolved, TrackValues
from service.rules.batching import BatchPolicy
from service.rules.lifecycle import TrackLifecycle
from service.rules.sequencer import LATE, FrameSequencer, Gap, Late, Ready
from service.sources import Demand, FrameItem
from tracker import ByteTracker, TrackerConfig, Tracks

log = logging.getLogger(__name__)

REPLAY_QUEUE = 8
WINDOW_S = 5.0


class StreamState:
    """Everything the service holds for one stream on the event loop."""

    def __init__(
        self,
        cfg: StreamConfig,
        tracker_cfg: TrackerSettings,
        metrics: Metrics,
        publisher: Publisher,
        wake: Wake,
        result_timeout_s: float,
        class_names: list[str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.class_names = class_names
        self.id = cfg.id
        self.tracker_cfg = tracker_cfg
        self.metrics = metrics
        self.publisher = publisher
        self._wake = wake
        self.result_timeout_s = result_timeout_s
        self.live = cfg.effective_mode == "live"
        self.state = "connecting"
        self.reason: str | None = None
        self.info: dict[str, Any] = {}
        self.slot: FrameItem | None = None
        self.queue: deque[FrameItem] = deque()
        # Replay backpressure without a loop round trip per frame: the source thread takes a
        # permit before handing a frame over; the pipeline gives it back when it takes the frame.
        self.permits = threading.BoundedSemaphore(REPLAY_QUEUE)
        # Detector results back into frame order (perf_counter time).
        self.sequencer: FrameSequencer[tuple[FrameItem, Detections]] = FrameSequencer(result_timeout_s)
        self.tracker: ByteTracker | None = None
        self.last_sample = 0
        self.lifecycle = TrackLifecycle(cfg.id)
        self.processed_times: deque[float] = deque()
        self.latencies: deque[tuple[float, float]] = deque(maxlen=2000)
        self.n_processed = 0
        self.n_faults = 0
        # Frame numbers handed out by the stream's sources (a WHIP session continues where the
        # previous one ended, so the tracker and subscribers see indices that keep increasing).
        self.next_index = 1
        self.next_sample = 1
        self.last_tracks: Tracks | None = None
        self.last_values: list[TrackValues] | None = None  # the analytics' per-track values of that frame
        self.last_item: FrameItem | None = None
        self.accepting = True
        self.removed = False  # set once the stream is removed: a late word from its source is ignored
        self.last_applied_at: float | None = None  # monotonic time the last frame was tracked
        self._deferred_status: tuple[str, str | None] | None = None
        self.pull: Callable[[], None] = _nothing  # hands over frames its source holds back (replay)
        self.listeners: list[Callable[[StreamState, FrameItem, Tracks], None]] = []
        self.event_listeners: list[Callable[[Mapping[str, object]], None]] = []
        # Analytics (service.rules.analytics): built at the first frame, when the frame size is known.
        self.analytics_spec: AnalyticsSpec | None = cfg.analytics
        self.analytics: Analytics | None = None
        self.analytics_error: str | None = None
        self._analytics_size: tuple[int, int] | None = None
        self._analytics_since = time.time()
        metrics.add_stream(cfg.id)
        self._m = metrics.children(cfg.id)

    # ------------------------------------------------------------------ status
    def set_status(self, state: str, reason: str | None) -> None:
        if self.removed:  # its source thread finished an open or a retry after the removal
            return
        if state == "offline" and not self.drained():
            # Frames of this stream are still queued or being detected: say offline once they are done.
            self._deferred_status = (state, reason)
            return
        self._deferred_status = None
        if (state, reason) == (self.state, self.reason):
            return
        self.state, self.reason = state, reason
        self.metrics.stream_up.labels(self.id).set(1 if state == "online" else 0)
        self._send_status()
        log.info("stream %s: %s%s", self.id, state, f" ({reason})" if reason else "")

    def republish_status(self) -> None:
        """Queue the current status again (a new MQTT connection: the broker may have lost it)."""
        if not self.removed:
            self._send_status()
            if self.analytics is not None:
                self._send_analytics(self.analytics)

    def _send_status(self) -> None:
        state, reason = self.state, self.reason
        body: StreamStatus = {"v": SCHEMA_VERSION, "stream": self.id, "state": state, "reason": reason,  # type: ignore[typeddict-item]
                              "ts": time.time(), "url": self.cfg.safe_url(), "instance": self.publisher.instance}  # fmt: skip
        self.publisher.publish_status(self.id, dumps(body))

    def set_info(self, info: dict[str, Any]) -> None:
        if not self.removed:
            self.info.update(info)

    def end_lost_tracks(self, now: float) -> bool:
        """A live source that is down (nothing tracked, nothing queued or being detected) for longer
        than the track buffer: its open tracks end as ``lost``, as the tracker would end them if
        frames kept coming without detections (ByteTrack keeps a lost track ``track_buffer``
        frames at 30 frames/s, ``track_buffer / 30`` seconds at any rate). True if it ended any."""
        t = self.tracker
        if not self.live or t is None or not t.live_tracks or self.last_applied_at is None:
            return False
        if now - self.last_applied_at <= self.tracker_cfg.track_buffer / 30.0 or not self.drained():
            return False
        t.reset()  # IDs keep counting: a track found after the outage gets a new one
        self.end_all_tracks("lost")
        log.info(
            "stream %s: no frames for %.1fs; its tracks ended as lost", self.id, now - self.last_applied_at
        )
        return True

    # ------------------------------------------------------------------ intake (event loop)
    def offer(self, item: FrameItem) -> None:
        """A live frame (or a sampling marker). The freshest unprocessed frame wins."""
        if not self.accepting:
            return
        self._m.received.inc()
        if item.sample == 0:
            self._m.sampling.inc()
            return
        self._m.decode.observe(item.decode_s)
        if self.slot is not None:
            self._m.superseded.inc()
        self.slot = item
        self._wake.set()

    def put(self, item: FrameItem) -> None:
        """A replay frame; its source thread holds a permit for it (at most ``REPLAY_QUEUE`` queued)."""
        self._m.received.inc()
        if item.sample == 0:
            self._m.sampling.inc()
            return
        if not self.accepting:
            self._drop("shutdown")
            self.permits.release()
            return
        self._m.decode.observe(item.decode_s)
        self.queue.append(item)
        self._wake.set()

    def has_ready(self) -> bool:
        return self.slot is not None or bool(self.queue)

    def ready_count(self) -> int:
        return len(self.queue) + (self.slot is not None)

    def drained(self) -> bool:
        """Nothing of this stream is queued or waiting for the detector."""
        return self.slot is None and not self.queue and not self.sequencer.waiting

    def take(self) -> FrameItem | None:
        if self.slot is not None:
            item, self.slot = self.slot, None
        elif self.queue:
            item = self.queue.popleft()
            self.permits.release()
        else:
            return None
        now = time.perf_counter()
        item.timings["queue"] = now - item.t_ready
        self.sequencer.submit(item.sample, now)
        return item

    def _drop(self, cause: str) -> None:
        self.metrics.frames_dropped.labels(self.id, cause).inc()

    # ------------------------------------------------------------------ results (event loop)
    def on_result(self, item: FrameItem, dets: Detections | None, cause: str = "") -> None:
        """The detector's answer for ``item`` (``dets`` None: it failed, for ``cause``)."""
        seq = self.sequencer
        self._settle(seq.result(item.sample, (item, dets)) if dets is not None else
                     seq.fail(item.sample, cause or "detector_error"))  # fmt: skip

    def expire(self, now: float) -> None:
        """Give up on the oldest frames whose detection takes longer than ``result_timeout_s``."""
        self._settle(self.sequencer.expire(now))

    def _settle(
        self, settled: list[Ready[tuple[FrameItem, Detections]] | Gap] | Late[tuple[FrameItem, Detections]]
    ) -> None:
        if isinstance(settled, Late):
            self._drop(LATE)  # gave up on it already; never applied out of order
            return
        for s in settled:
            if isinstance(s, Ready):
                try:
                    self._apply(*s.value)
                except Exception as exc:  # a bug in this stream's processing: contained to this stream
                    self._fault(s.sample, exc)
            else:
                if s.cause == LATE:
                    log.warning("stream %s: detection of sample %d took over %.0fs; skipped", self.id, s.sample,
                                self.result_timeout_s)  # fmt: skip
                self._drop(s.cause)
        if self._deferred_status is not None and self.drained():
            self.set_status(*self._deferred_status)

    def _fault(self, sample: int, exc: Exception) -> None:
        """A frame this stream could not process (a bug, not bad input): count it, say it once
        with its traceback, end the open tracks and start the tracker afresh with the next frame."""
        self.n_faults += 1
        self.metrics.stream_errors.labels(self.id).inc()
        if self.n_faults == 1:
            log.exception("stream %s: frame %d could not be processed; its tracker restarts (counted in "
                          "trackcast_stream_errors_total, logged once)", self.id, sample)  # fmt: skip
        else:
            log.debug("stream %s: frame %d could not be processed (%s)", self.id, sample, exc)
        try:
            if self.tracker is not None:
                self.tracker.reset()  # IDs keep counting
        except Exception:
            self.tracker = None
        try:
            self.end_all_tracks("error")
        except Exception:
            log.debug("stream %s: could not end its tracks", self.id, exc_info=True)
            self.lifecycle = TrackLifecycle(self.id)

    def _frame_rate(self) -> float:
        if self.cfg.detect_fps:
            return self.cfg.detect_fps
        fps = self.info.get("fps")
        return float(fps) if fps and math.isfinite(fps) and fps > 0 else 30.0

    def _apply(self, item: FrameItem, dets: Detections) -> None:
        if self.tracker is None:
            t = self.tracker_cfg
            self.tracker = ByteTracker(
                TrackerConfig(
                    t.track_thresh, t.track_buffer, t.match_thresh, t.mot20, self._frame_rate(), t.per_class
                )
            )
        t0 = time.perf_counter()
        tracks = self.tracker.update(dets.rows, frame_index=item.sample)
        t1 = time.perf_counter()
        item.timings["track"] = t1 - t0
        self.last_sample = item.sample
        self.last_applied_at = time.monotonic()
        self.n_processed += 1
        self._m.processed.inc()
        self._m.active.set(len(tracks))
        self._m.track.observe(item.timings["track"])
        # Round once, as plain lists, for both the events and the tracks message.
        rows = list(zip(tracks.ids.tolist(), np.round(tracks.xyxy, 2).tolist(), np.round(tracks.scores, 4).tolist(),
                        tracks.classes.tolist(), strict=True))  # fmt: skip
        events: list[Event] = list(
            self.lifecycle.update(item.index, item.capture_ts, rows, tracks.ended_ids.tolist(), time.time())
        )
        values = None
        if self.analytics_spec is not None:
            out = self._run_analytics(item, tracks)
            if out is not None:
                values, found = out
                # Track starts first, then what the analytics saw, then the ends (a zone exit of a
                # lost track comes before its track_ended).
                started = [e for e in events if e["event"] == "track_started"]
                events = [*started, *found, *(e for e in events if e["event"] != "track_started")]
        for event in events:
            self._emit(event)
        self._publish(item, rows, values)
        if self.analytics is not None and self.analytics.changed:
            self._send_analytics(self.analytics)
        now = time.monotonic()
        self.processed_times.append(now)
        while self.processed_times and now - self.processed_times[0] > WINDOW_S:
            self.processed_times.popleft()
        self.last_tracks, self.last_item, self.last_values = tracks, item, values
        for listener in self.listeners:
            listener(self, item, tracks)

    # ------------------------------------------------------------------ events and payloads
    def _emit(self, event: Event) -> None:
        names = self.class_names
        if names is not None and 0 <= event["class"] < len(names):
            event["label"] = names[event["class"]]
        self.publisher.publish_event(self.id, dumps(event))
        self.metrics.track_events.labels(self.id, event["event"]).inc()
        if event["event"] == "line_crossed":
            self.metrics.line_crossings.labels(self.id, event["line"], event["direction"]).inc()
        elif event["event"] == "zone_exited":
            self.metrics.zone_dwell.labels(self.id, event["zone"]).observe(event["dwell_s"])
        for listener in self.event_listeners:
            listener(event)

    def end_all_tracks(self, reason: str) -> None:
        if self.analytics is not None:  # the tracks' open visits end; the counts since ``since`` stay
            self._end_visits(self.analytics, reason)
        for event in self.lifecycle.end_all(reason, time.time()):
            self._emit(event)

    # ------------------------------------------------------------------ analytics
    def frame_size(self) -> tuple[int, int] | None:
        if self.last_item is not None:
            return self.last_item.prepared.src_width, self.last_item.prepared.src_height
        if "width" in self.info and "height" in self.info:
            return int(self.info["width"]), int(self.info["height"])
        return None

    def set_analytics(self, spec: AnalyticsSpec | None) -> None:
        """New analytics at run time (``PUT``). ``ConfigError`` if they do not fit the stream's frame
        size; then the old ones keep running. Open zone visits of the old ones exit (reason
        ``analytics changed``); counts start again (``since`` says when)."""
        if spec is not None and not (spec.zones or spec.lines or spec.calibration):
            spec = None
        size = self.frame_size()
        if spec is not None and size is not None:
            Resolved.of(spec, *size)  # raises ConfigError naming the key
        self._close_analytics("analytics changed")
        self.analytics_spec, self.analytics_error, self._analytics_since = spec, None, time.time()
        self.cfg = self.cfg.model_copy(update={"analytics": spec})
        self.metrics.remove_analytics(self.id)
        if spec is None:
            self.publisher.clear_analytics(self.id)

    def _close_analytics(self, reason: str) -> None:
        """The analytics are replaced (a PUT, a new frame size): their open visits end with ``reason``."""
        a, self.analytics, self._analytics_size = self.analytics, None, None
        if a is not None:
            self._end_visits(a, reason)

    def _end_visits(self, a: Analytics, reason: str) -> None:
        events, _ = a.end_all(reason, time.time())
        for e in events:
            self._emit(cast(Event, e))
        self._send_analytics(a)

    def _run_analytics(self, item: FrameItem, tracks: Tracks) -> tuple[list[TrackValues], list[Any]] | None:
        spec = self.analytics_spec
        assert spec is not None
        size = (item.prepared.src_width, item.prepared.src_height)
        a = self.analytics
        if a is None or self._analytics_size != size:
            if a is not None:
                self._close_analytics("frame size changed")
            elif self.analytics_error is not None and self._analytics_size == size:
                return None  # does not fit this frame size: off until replaced
            self._analytics_size = size
            try:
                resolved = Resolved.of(spec, *size)
            except ConfigError as exc:
                self.analytics_error = str(exc)
                log.error("stream %s: %s; its analytics are off until replaced (PUT /streams/%s/analytics)",
                          self.id, exc, self.id)  # fmt: skip
                return None
            self.analytics_error = None
            a = self.analytics = Analytics(resolved, self.id, self._analytics_since, 1.0 / self._frame_rate())
            self._analytics_size = size
            self.metrics.set_analytics(
                self.id, [z.id for z in resolved.zones], [ln.id for ln in resolved.lines]
            )
        t = item.pts if item.pts is not None else item.capture_ts
        try:
            values, events, _ = a.update(item.index, t, tracks.ids.tolist(), tracks.xyxy, tracks.classes.tolist(),
                                         tracks.ended_ids.tolist(), time.time())  # fmt: skip
        except Exception as exc:  # a bug in the analytics: they stop, the tracks go on
            self.analytics, self.analytics_error = None, f"analytics failed at frame {item.index}: {exc}"
            self.metrics.stream_errors.labels(self.id).inc()
            log.exception(
                "stream %s: analytics failed at frame %d; they are off until replaced", self.id, item.index
            )
            return None
        return values, events

    def _send_analytics(self, a: Analytics) -> None:
        state = a.state(time.time())
        for zone, z in state["zones"].items():
            self.metrics.zone_occupancy.labels(self.id, zone).set(z["occupancy"])
        self.publisher.publish_analytics(self.id, dumps(state))

    def analytics_view(self) -> dict[str, Any]:
        a = self.analytics
        return {
            "config": None if self.analytics_spec is None else self.analytics_spec.model_dump(mode="json"),
            "state": None if a is None else {**a.state(time.time()), "frame_size": [a.r.width, a.r.height]},
            "error": self.analytics_error,
        }

    def _publish(
        self,
        item: FrameItem,
        rows: list[tuple[int, list[float], float, int]],
        values: list[TrackValues] | None,
    ) -> None:
        lat = {k: round(v * 1000, 3) for k, v in (("decode", item.decode_s), *item.timings.items())}
        lat["pipeline"] = round((time.time() - item.capture_ts) * 1000, 3)
        body: TracksMessage = {
            "v": SCHEMA_VERSION,
            "stream": self.id,
            "frame": item.index,
            "pts": None if item.pts is None else round(item.pts, 4),
            "capture_ts": round(item.capture_ts, 4),
            "size": [item.prepared.src_width, item.prepared.src_height],
            "latency_ms": lat,
            "tracks": [{"id": tid, "box": box, "score": sc, "class": c} for tid, box, sc, c in rows]
            if values is None
            else [{"id": tid, "box": box, "score": sc, "class": c, **v}  # type: ignore[typeddict-item]
                  for (tid, box, sc, c), v in zip(rows, values, strict=True)],
        }  # fmt: skip
        enqueued = time.perf_counter()
        m, capture = self._m, item.capture_ts

        def sent(ts: float) -> None:
            m.publish.observe(time.perf_counter() - enqueued)
            e2e = ts - capture
            m.e2e.observe(e2e)
            self.latencies.append((time.monotonic(), e2e))

        self.publisher.publish_tracks(self.id, dumps(body), on_sent=sent)

    # ------------------------------------------------------------------ views
    def fps(self) -> float:
        t = self.processed_times
        if len(t) < 2:
            return 0.0
        return (len(t) - 1) / max(t[-1] - t[0], 1e-6)

    def latency_quantiles(self) -> dict[str, float | None]:
        now = time.monotonic()
        vals = sorted(v for t, v in self.latencies if now - t <= 30)
        if not vals:
            return {"p50_ms": None, "p99_ms": None}
        return {
            "p50_ms": round(1000 * vals[len(vals) // 2], 1),
            "p99_ms": round(1000 * vals[min(len(vals) - 1, int(len(vals) * 0.99))], 1),
        }


def _nothing() -> None:
    pass


class Wake:
    """The batcher's wake-up flag: ``set`` from the streams, ``wait(timeout)`` in the batcher.

    Like ``asyncio.Event`` with ``asyncio.wait_for``, without a task and a timer wrapper per wait
    (the batcher waits several times per batch, the streams set it for every frame).
    """

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, timeout: float) -> bool:
        """True once set, False when ``timeout`` seconds pass first."""
        if self._flag:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiter = fut
        timer = loop.call_later(timeout, _expire, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiter = None
        return self._flag


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Batcher:
    """Collects ready frames across streams into detector batches; bounded in flight."""

    def __init__(self, detector: Detector, streams: dict[str, StreamState], metrics: Metrics, max_batch: int,
                 max_wait_s: float) -> None:  # fmt: skip
        self.detector = detector
        self.streams = streams
        self.metrics = metrics
        self.max_batch = max_batch
        self.policy: BatchPolicy[int] = BatchPolicy(max_batch, max_wait_s)
        self.wake = Wake()
        self.demand = Demand()  # tells replay sources whether to wake the loop for a frame
        self._sem = asyncio.Semaphore(detector.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self.inflight = 0
        self._starting = 0  # batches handed to a task that has not called the detector yet
        self._last_expire = time.monotonic()  # when waiting streams last gave up on slow results

    def _collect(self, want: int) -> list[FrameItem]:
        """Up to ``want`` frames, as the batch policy picks them (round-robin over streams)."""
        streams = list(self.streams.values())
        plan = self.policy.plan([(i, s.ready_count()) for i, s in enumerate(streams)], want)
        out: list[FrameItem] = []
        for i in plan:
            item = streams[i].take()
            if item is not None:
                out.append(item)
        return out

    def _pull(self) -> None:
        for s in list(self.streams.values()):
            s.pull()

    async def run(self) -> None:
        while True:
            self.demand.waiting = False  # frames wait in the sources until a detector slot is free
            await self._sem.acquire()
            batch: list[FrameItem] = []
            try:
                await self._fill(batch)
                self._send(batch)
            except BaseException as exc:
                self._sem.release()  # nothing went to the detector: the slot stays free
                if not isinstance(exc, asyncio.CancelledError):
                    for it in batch:  # taken from their streams: each stream moves on without them
                        s = self.streams.get(it.stream)
                        if s is not None:
                            s.on_result(it, None, "internal_error")
                raise

    async def _fill(self, batch: list[FrameItem]) -> None:
        """With a detector slot taken: wait for frames, then fill ``batch`` up to the deadline."""
        self.demand.waiting = True
        self._pull()
        batch += self._collect(self.max_batch)
        while not batch:
            await self.wake.wait(1.0)
            self.wake.clear()
            now = time.monotonic()
            if now - self._last_expire > 1.0:
                self._last_expire = now
                for s in list(self.streams.values()):
                    s.expire(time.perf_counter())
            batch += self._collect(self.max_batch)
        # Filling up to the deadline: replay sources wake the batcher only with the frame
        # that completes the batch; live frames wake it as they come.
        self.demand.waiting = False
        policy = self.policy
        deadline = policy.deadline(min(it.t_ready for it in batch))  # the oldest's, waits counted
        while len(batch) < policy.max_batch:
            remaining = deadline - time.perf_counter()
            woken = False
            if remaining > 0:
                self.demand.expect(self.max_batch - len(batch))
                self.wake.clear()
                woken = await self.wake.wait(remaining)
                self.demand.expect(0)
            self._pull()
            batch += self._collect(self.max_batch - len(batch))
            if not woken:
                break

    def _send(self, batch: list[FrameItem]) -> None:
        """Hand a batch to a detect task. Anything left over keeps the wake flag up for the next round."""
        if any(s.has_ready() for s in self.streams.values()):
            self.wake.set()
        self._starting += 1
        task = asyncio.create_task(self._detect(batch), name="detect")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _detect(self, batch: list[FrameItem]) -> None:
        self._starting -= 1
        self.inflight += 1
        self.metrics.detector_inflight.set(self.inflight)
        self.metrics.batch_size.observe(len(batch))
        t0 = time.perf_counter()
        try:
            dets = await self.detector.detect([it.prepared for it in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.metrics.detector_errors.labels(type(exc).__name__).inc()
            log.error("detector failed on a batch of %d frames (%s): %s", len(batch),
                      ", ".join(sorted({it.stream for it in batch})), exc)  # fmt: skip
            for it in batch:
                s = self.streams.get(it.stream)
                if s is not None:
                    s.on_result(it, None, "detector_error")
            return
        finally:
            self.inflight -= 1
            self.metrics.detector_inflight.set(self.inflight)
            self._sem.release()
        dt = time.perf_counter() - t0
        # The detector gets the next batch before these are tracked, so it works meanwhile: one
        # loop turn for the batcher to take the slot just freed, and one more if it made a task
        # for a batch (a task takes its first step, the detector call, one turn after it is made).
        # Bounded: a task cancelled before its first step never counts itself off.
        await asyncio.sleep(0)
        for _ in range(2):
            if not self._starting:
                break
            await asyncio.sleep(0)
        for it, d in zip(batch, dets, strict=True):
            it.timings["detect"] = dt
            s = self.streams.get(it.stream)
            if s is None:
                continue  # the stream was removed meanwhile
            s._m.queue.observe(it.timings["queue"])
            s._m.detect.observe(dt)
            s.on_result(it, d)

    async def drain(self, timeout: float) -> None:
        """Wait for the batches in flight (shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
