"""Stream sources: PyAV decode threads for RTSP/RTMP/HTTP/files.

Each source runs one thread that opens the URL (RTSP over TCP by default, open and read timeouts),
demuxes only the video stream (audio and data are ignored), decodes, samples to ``detect_fps``,
converts and letterboxes the frame once for the detector, and hands it to the event loop:

* live streams: ``sink.offer(item)`` via ``call_soon_threadsafe`` (the stream keeps only the
  freshest frame);
* replay (files, every frame): ``sink.put(item)`` waited on from the thread, so decoding never runs
  ahead of the pipeline and nothing is dropped.

Failures (cannot open, read timeout, decode error, no frame for ``stall_timeout``, end of a live
stream) are reported and retried with capped jittered exponential backoff (1 s to 30 s), reset by
the first good frame; a stream that is down at start-up is handled the same way. Files end (or
loop). The thread stops when ``stop()`` sets its Event; nothing joins it on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from detector_client.backoff import Backoff
from detector_client.base import InputSpec, PreparedFrame
from service.config import StreamConfig
from service.errors import SourceError, redact_url
from service.media.video import open_video, prepare_frame, to_bgr
from service.rules.sampling import Sampler

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FrameItem:
    """A decoded frame on its way through the pipeline, with its timing."""

    stream: str
    index: int  # source frame index (1-based, keeps counting across reconnects)
    sample: int  # index among sampled frames: the tracker's frame counter
    pts: float | None  # source presentation time, seconds
    capture_ts: float  # wall clock when decoded
    prepared: PreparedFrame
    image: npt.NDArray[np.uint8] | None  # the BGR frame, kept only when someone watches it
    decode_s: float
    #: perf_counter when it was ready for the detector: made (decoded, prepared), or handed over by
    #: its source thread; a frame left in the inbox while every detector slot is busy stays ready
    #: since then (its wait is the ``queue`` stage, and it counts towards its batch's deadline).
    t_ready: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)


class Demand:
    """What the batcher is waiting for: set on the event loop, read by replay source threads.

    A replay source (every frame, nothing dropped) leaves its frames in its inbox without waking
    the loop while the batcher has no use for them (all detector slots busy); the batcher pulls
    them when it has. While it waits for a first frame every frame wakes it; while it fills a
    batch (``expect(n)``: n more frames, until its deadline) only the frame that completes it does.
    Each wake-up costs the loop a select, a read and a GIL hand-over; at full speed this saves most.
    """

    __slots__ = ("_lock", "_need", "waiting")

    def __init__(self) -> None:
        self.waiting = True
        self._need = 0
        self._lock = threading.Lock()

    def expect(self, n: int) -> None:
        """Loop side: wake for the ``n``-th frame from now (0: for none)."""
        with self._lock:
            self._need = n

    def wants(self) -> bool:
        """Thread side, once per frame put in an inbox: should this frame wake the loop?"""
        if self.waiting:
            return True
        if self._need <= 0:
            return False
        with self._lock:
            self._need -= 1
            return self._need == 0


class ThreadSource:
    """What every source thread shares: its lifecycle and the coalescing handoff to the event loop.

    Frames cross to the loop through an inbox; one loop callback drains a burst, so a busy stream
    costs one wake-up per burst, not one per frame (replay sources given a ``Demand`` wake it only
    when the batcher waits for frames, see ``Demand``). Subclasses implement ``_run`` and hand
    frames to ``_deliver``; ``_sink`` (offer for live streams, put for replay) receives them on the
    loop. Status and info calls (``_call``) hand over the frames before them first, so they keep
    their order.
    """

    def __init__(
        self,
        cfg: StreamConfig,
        spec: InputSpec,
        loop: asyncio.AbstractEventLoop,
        sink: Callable[[FrameItem], None],
        on_status: Callable[[str, str | None], None],
        on_info: Callable[[dict[str, Any]], None],
        keep_image: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg = cfg
        self.spec = spec
        self.loop = loop
        self._sink = sink
        self._on_status = on_status
        self._on_info = on_info
        self._keep_image = keep_image
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source-{cfg.id}", daemon=True)
        self.finished = asyncio.Event()
        self._inbox: deque[FrameItem] = deque()
        self._inbox_lock = threading.Lock()
        self._scheduled = False
        self._demand: Demand | None = None  # set by replay sources: wake the loop only on demand

    def _run(self) -> None:  # pragma: no cover - overridden
        raise TypeError("ThreadSource subclasses implement _run")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop (from the source thread), after the frames before it."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._in_order, fn, args)

    def _in_order(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.pull()
        fn(*args)

    def _deliver(self, item: FrameItem) -> None:
        """Thread side: queue a frame for the loop, waking it only if no drain is pending."""
        item.t_ready = time.perf_counter()
        self._inbox.append(item)
        if self._demand is not None and not self._demand.wants():
            return  # the batcher pulls it when it has room
        with self._inbox_lock:
            if self._scheduled:
                return
            self._scheduled = True
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.pull)

    def pull(self) -> None:
        """Loop side: hand every queued frame to the stream, in order."""
        with self._inbox_lock:
            self._scheduled = False
        while self._inbox:
            self._sink(self._inbox.popleft())

    def _finish(self) -> None:
        self._call(self.finished.set)


class ReplayableSource(ThreadSource):
    """A source that is live (``offer``: freshest frame wins) or replays (``put``: every frame, waiting
    for room in the stream's queue, waking the loop on ``demand``), as its stream's mode says."""

    def __init__(
        self,
        cfg: StreamConfig,
        spec: InputSpec,
        loop: asyncio.AbstractEventLoop,
        offer: Callable[[FrameItem], None],
        put: Callable[[FrameItem], None],
        permits: threading.BoundedSemaphore,
        on_status: Callable[[str, str | None], None],
        on_info: Callable[[dict[str, Any]], None],
        keep_image: Callable[[], bool] = lambda: False,
        demand: Demand | None = None,
    ) -> None:
        self.replay = cfg.effective_mode == "replay"
        super().__init__(cfg, spec, loop, put if self.replay else offer, on_status, on_info, keep_image)
        if self.replay:
            self._demand = demand
        self._permits = permits

    def _room(self) -> bool:
        """Replay: wait for room in the stream's queue (no loop round trip per frame); False once stopped."""
        while not self._permits.acquire(timeout=0.2):
            if self._stop.is_set():
                return False
        return True


class VideoSource(ReplayableSource):
    """One PyAV decode thread feeding one stream."""

    def __init__(
        self,
        cfg: StreamConfig,
        spec: InputSpec,
        loop: asyncio.AbstractEventLoop,
        offer: Callable[[FrameItem], None],
        put: Callable[[FrameItem], None],
        permits: threading.BoundedSemaphore,
        on_status: Callable[[str, str | None], None],
        on_info: Callable[[dict[str, Any]], None],
        on_reconnect: Callable[[], None],
        keep_image: Callable[[], bool] = lambda: False,
        demand: Demand | None = None,
    ) -> None:
        super().__init__(cfg, spec, loop, offer, put, permits, on_status, on_info, keep_image, demand)
        self._on_reconnect = on_reconnect
        self.index = 0
        self.sample = 0
        self.fps: float | None = None

    # ------------------------------------------------------------------ thread side
    def _status(self, state: str, reason: str | None) -> None:
        self._call(self._on_status, state, reason)

    def _url(self) -> str:
        url = self.cfg.url
        return url[len("file://") :] if url.startswith("file://") else url

    def _options(self) -> dict[str, str]:
        if self.cfg.url.startswith("rtsp"):
            return {"rtsp_transport": self.cfg.transport}
        return {}

    def _run(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        sampler = Sampler(self.cfg.detect_fps)
        retrying = False  # after a failure: the status keeps saying why until something better is known
        try:
            self._status("connecting", None)
            while not self._stop.is_set():
                if retrying:
                    self._call(self._on_reconnect)
                try:
                    got_frames = self._session(sampler, backoff)
                except SourceError as exc:
                    got_frames = False
                    reason = exc.reason
                else:
                    if self._stop.is_set():
                        break
                    if self.cfg.is_file:
                        if self.cfg.loop and got_frames:
                            # The next pass of a looping file: not a reconnect, no status change.
                            sampler = Sampler(self.cfg.detect_fps)
                            retrying = False
                            continue
                        self._status("offline", "end of file" if got_frames else "no frames in file")
                        break
                    reason = "stream ended"
                if self.cfg.is_file and not self.cfg.loop and not got_frames:
                    # A file that cannot be opened will not get better: say so once and stop.
                    self._status("offline", reason)
                    break
                delay = backoff.next()
                # Said once per reason: the status stays as it is through the retries that fail alike.
                self._status("reconnecting", f"{reason}; retrying")
                retrying = True
                log.warning(
                    "stream %s (%s): %s; reconnecting in %.1fs",
                    self.cfg.id,
                    redact_url(self.cfg.url),
                    reason,
                    delay,
                )
                if self._stop.wait(delay):
                    break
        except Exception as exc:  # never let one stream's thread die silently
            log.exception("stream %s: source thread failed", self.cfg.id)
            self._status("offline", f"internal error: {type(exc).__name__}")
        finally:
            self._finish()

    def _stall_timeout(self) -> float:
        if self.cfg.stall_timeout_s:
            return self.cfg.stall_timeout_s
        fps = self.fps or 25.0
        return max(2.0, 10.0 / fps) + (self.cfg.read_timeout_s if not self.replay else 0)

    def _session(self, sampler: Sampler, backoff: Backoff) -> bool:
        """One connection: open, decode until the end, stop, stall or error. True if frames came."""
        import av

        url = self._url()
        container = open_video(
            url, self._options(), timeout=(self.cfg.open_timeout_s, self.cfg.read_timeout_s)
        )
        got = False
        try:
            stream = container.streams.video[0]
            # Each stream already decodes in its own thread; frame threading would add latency.
            threading_mode = self.cfg.decode_threading
            if threading_mode == "none":
                stream.thread_count = 1
            else:
                stream.thread_type = threading_mode.upper()
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else None
            ctx = stream.codec_context
            self._call(self._on_info, {"fps": self.fps, "width": ctx.width, "height": ctx.height})
            tb = float(stream.time_base) if stream.time_base else None
            t_open = time.monotonic()
            last_frame = t_open
            pace_start: float | None = None
            pace_pts0 = 0.0
            last_t: float | None = None
            stall = self._stall_timeout()
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return got
                now = time.monotonic()
                if now - last_frame > stall and now - t_open > stall:
                    raise SourceError(self.cfg.url, f"stalled: no frame for {now - last_frame:.1f}s")
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    log.debug("stream %s: undecodable packet skipped (%s)", self.cfg.id, exc)
                    continue
                for frame in frames:
                    t0 = time.perf_counter()
                    self.index += 1
                    last_frame = time.monotonic()
                    pts = frame.pts * tb if (frame.pts is not None and tb) else None
                    if not got:
                        got = True
                        backoff.reset()
                        self._status("online", None)
                    if self.replay and self.cfg.realtime:
                        t = pts if pts is not None else self.index / (self.fps or 25.0)
                        if pace_start is None:
                            pace_start, pace_pts0 = time.monotonic(), t
                        delay = pace_start + (t - pace_pts0) - time.monotonic()
                        if delay > 0 and self._stop.wait(delay):
                            return got
                        t0 = time.perf_counter()  # the decode stage excludes pacing
                    capture_ts = time.time()
                    # Stream time for sampling: the pts, or (missing pts) one frame after the last.
                    sample_t = (
                        pts
                        if pts is not None
                        else (last_t + 1 / (self.fps or 25.0) if last_t is not None else 0.0)
                    )
                    last_t = sample_t
                    if not sampler.keep(sample_t):
                        self._deliver(self._skip(capture_ts))
                        continue
                    self.sample += 1
                    prepared = prepare_frame(frame, self.spec, stream=self.cfg.id, index=self.index)
                    item = FrameItem(
                        self.cfg.id, self.index, self.sample, pts, capture_ts, prepared,
                        to_bgr(frame) if self._keep_image() else None, time.perf_counter() - t0,
                    )  # fmt: skip
                    if self.replay and not self._room():
                        return got
                    self._deliver(item)
                    # Replay waits above for room as long as the pipeline needs: not a stall.
                    last_frame = time.monotonic()
            return got
        except av.error.FFmpegError as exc:
            raise SourceError(self.cfg.url, _ffmpeg_text(exc, self.cfg.url)) from exc
        finally:
            container.close()

    def _skip(self, capture_ts: float) -> FrameItem:
        return skipped(self.cfg.id, self.index, capture_ts)


_EMPTY_FRAME = PreparedFrame(np.zeros((1, 1, 3), np.uint8), 1.0, 1, 1)


def skipped(stream: str, index: int, capture_ts: float) -> FrameItem:
    """A marker for a frame skipped by sampling (counted, not processed)."""
    return FrameItem(stream, index, 0, None, capture_ts, _EMPTY_FRAME, None, 0.0)


def _ffmpeg_text(exc: Exception, url: str) -> str:
    text = str(exc).replace(url, redact_url(url))
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower() or "Immediate exit requested" in text:
        return "timed out"
    return text[:300]
