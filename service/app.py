"""The service: streams, detector, batcher, MQTT publisher and WHIP ingest on one event loop.

``Service.start()`` loads the detector (in a thread), connects MQTT (in the background: a broker
that is down does not stop tracking, messages wait in the outbox) and starts every configured
stream. ``Service.stop()`` stops intake, lets in-flight frames finish, ends open tracks, publishes
offline statuses, flushes MQTT and closes everything. The HTTP API and the live view are adapters
on top (``service.http``, ``service.liveview``); ``service.runner`` composes them with the service.
Adapters follow the streams through ``stream_added`` / ``stream_removed``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from detector_client import create_detector
from detector_client.backoff import Backoff
from detector_client.base import Detector
from detector_client.errors import DetectorError
from service.config import Settings, StreamConfig
from service.errors import ConfigError, NotOwned, StreamExists, UnknownStream
from service.follow import FollowSession, box_from_request
from service.media.bag import is_bag
from service.metrics import Metrics
from service.mqtt import Publisher
from service.pipeline import Batcher, StreamState
from service.rules.analytics import load_kernels as load_analytics_kernels
from service.rules.sharding import owner
from service.sources import ThreadSource, VideoSource
from service.webrtc import WhipIngest
from tracker import ByteTracker

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005
HOUSEKEEPING_S = 0.25


def load_kernels() -> None:
    """Compile the tracker's and the analytics' kernels, or load them from numba's cache
    (``NUMBA_CACHE_DIR``; the container image is built with them in it)."""
    ByteTracker().update(np.empty((0, 5)))
    load_analytics_kernels()


class Service:
    def __init__(
        self, settings: Settings, registry: CollectorRegistry | None = None, detector: Detector | None = None
    ) -> None:
        self.settings = settings
        self.metrics = Metrics(registry)
        self.publisher = Publisher(settings.mqtt, settings.instance, self.metrics)
        self.streams: dict[str, StreamState] = {}
        self.sources: dict[str, ThreadSource] = {}
        self.follows: dict[str, FollowSession] = {}  # at most one followed object per stream
        self.detector: Detector | None = detector
        self.whip = WhipIngest(self, settings.webrtc.ice_servers)
        self.batcher: Batcher | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self.started_at = time.time()
        # Sharding (service.rules.sharding): this instance serves the streams its shard owns.
        self.shards = settings.cluster.shards
        self.shard = settings.cluster.resolve(socket.gethostname())
        self.elsewhere: dict[str, int] = {}  # configured streams another shard serves -> its shard
        self.stream_added: list[Callable[[StreamState], None]] = []
        self.stream_removed: list[Callable[[str], None]] = []

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.detector is None:
            try:
                self.detector = await asyncio.to_thread(create_detector, self.settings.detector)
            except (DetectorError, ValueError) as exc:
                raise ConfigError(f"detector: {exc}") from exc
        det = self.detector
        # Load the compiled kernels (tracker, analytics) now, off the loop: compiled on the first
        # frame that needs them they would hold the loop for seconds and stall every stream.
        await asyncio.to_thread(load_kernels)
        # Decode threads and the event loop hand the GIL back and forth many times per frame; a
        # thread that waits for it is let in after at most this long (Python's default is 5 ms).
        # With 4 replay streams on 2 cores, 0.5 ms gave 3-6% more frames/s than 2 ms.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        max_batch = self.settings.batcher.max_batch or det.max_batch
        self.batcher = Batcher(
            det, self.streams, self.metrics, max_batch, self.settings.batcher.max_wait_ms / 1000
        )

        def publish() -> Awaitable[None]:
            return self.publisher.run(lambda: sorted(self.streams), self._republish_statuses)

        self._tasks.append(asyncio.create_task(self._keep_running("mqtt", publish), name="mqtt"))
        self._tasks.append(
            asyncio.create_task(self._keep_running("batcher", self.batcher.run), name="batcher")
        )
        self._tasks.append(asyncio.create_task(self._keep_running("housekeeping", self._housekeeping),
                                               name="housekeeping"))  # fmt: skip
        # Everything loaded so far (modules, the detector, compiled kernels) lives as
        # long as the process: take it out of the cyclic GC's sight. Otherwise every full
        # collection walks it all on the event loop: 30-60 ms pauses measured with 4 streams
        # (about 1 ms after this), each one a stall of every stream's tracks.
        gc.collect()
        gc.freeze()
        for cfg in self.settings.streams:
            shard = owner(cfg.id, self.shards)
            if shard == self.shard:
                await self.add_stream(cfg)
            else:
                self.elsewhere[cfg.id] = shard
        self.ready.set()
        log.info("service %s ready: %d streams, detector %s (batch %d)", self.settings.instance, len(self.streams),
                 det.name, max_batch)  # fmt: skip

    async def _keep_running(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run a core loop (the batcher, the MQTT publisher) for the service's life: one that fails
        from a bug is logged with its traceback, counted, and started again (1 s to 30 s backoff),
        so no stream's odd frame or message stops every stream for good."""
        backoff = Backoff(1.0, 30.0)
        while True:
            try:
                await run()
                return
            except Exception:
                delay = backoff.next()
                self.metrics.internal_errors.labels(name).inc()
                log.exception("internal error in the %s loop; restarting it in %.1fs", name, delay)
                await asyncio.sleep(delay)

    def _republish_statuses(self) -> None:
        for s in list(self.streams.values()):
            s.republish_status()

    async def _housekeeping(self) -> None:
        """Every quarter second: the tracks of live sources that went down end once lost."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            now = time.monotonic()
            for s in list(self.streams.values()):
                s.end_lost_tracks(now)

    async def add_stream(self, cfg: StreamConfig) -> StreamState:
        if cfg.id in self.streams:
            raise StreamExists(f"stream {cfg.id!r} already exists")
        if cfg.id == "service":
            raise ConfigError("stream id 'service' is reserved (service status topic)")
        shard = owner(cfg.id, self.shards)
        if shard != self.shard:
            raise NotOwned(f"stream {cfg.id!r} belongs to shard {shard} of {self.shards}, not this instance's "
                           f"({self.shard}): add it there", shard)  # fmt: skip
        assert self.batcher is not None and self.detector is not None
        state = StreamState(cfg, self.settings.tracker, self.metrics, self.publisher, self.batcher.wake,
                            self.settings.batcher.result_timeout_s, self.detector.class_names)  # fmt: skip
        self.streams[cfg.id] = state
        for added in self.stream_added:
            added(state)
        if cfg.url.startswith("synthetic://"):
            from service.synthetic_source import SyntheticSource

            syn = SyntheticSource(cfg, self.detector.spec, asyncio.get_running_loop(), state.offer, state.set_status,
                                  state.set_info, lambda: bool(state.listeners))  # fmt: skip
            self.sources[cfg.id] = syn
            syn.start()
        elif cfg.is_file and is_bag(cfg.url):
            from service.bag_source import BagSource

            bag = BagSource(cfg, self.detector.spec, asyncio.get_running_loop(), state.offer, state.put, state.permits,
                            state.set_status, state.set_info, lambda: bool(state.listeners), self.batcher.demand)  # fmt: skip
            state.pull = bag.pull
            self.sources[cfg.id] = bag
            bag.start()
        elif not cfg.is_whip:

            def reconnect() -> None:
                if not state.removed:  # a removed stream's series are gone and stay gone
                    self.metrics.reconnects.labels(cfg.id).inc()

            src = VideoSource(
                cfg, self.detector.spec, asyncio.get_running_loop(), state.offer, state.put, state.permits, state.set_status,
                state.set_info, reconnect, lambda: bool(state.listeners),
                self.batcher.demand,
            )  # fmt: skip
            state.pull = src.pull
            self.sources[cfg.id] = src
            src.start()
        else:
            state.set_status("offline", "waiting for a WHIP publisher")
        log.info("stream %s added (%s, %s)", cfg.id, cfg.safe_url(), cfg.effective_mode)
        return state

    async def remove_stream(self, stream_id: str, reason: str = "stream removed") -> None:
        state = self.streams.get(stream_id)
        if state is None:
            raise UnknownStream(f"no stream {stream_id!r}")
        state.accepting = False
        self.unfollow(stream_id)
        src = self.sources.pop(stream_id, None)
        # From here on nothing the source still says (a hanging open that times out later, a retry)
        # reaches MQTT or the metrics: the status is cleared and the series removed below, for good.
        if src is not None:
            src.stop()
        await self.whip.end(stream_id, reason)
        state.end_all_tracks(reason)
        del self.streams[stream_id]
        state.removed = True
        for removed in self.stream_removed:
            removed(stream_id)
        self.publisher.clear_status(stream_id)
        self.metrics.remove_stream(stream_id)
        forget = getattr(self.detector, "forget", None)
        if forget is not None:
            forget(stream_id)
        log.info("stream %s removed", stream_id)

    async def stop(self, reason: str = "shutdown", timeout: float = 10.0) -> None:
        """Stop intake, finish in-flight frames, publish offline statuses, flush MQTT."""
        if self.stopped.is_set():
            return
        for sid in list(self.follows):
            self.unfollow(sid)
        log.info("stopping (%s)", reason)
        for src in self.sources.values():
            src.stop()
        for s in self.streams.values():
            s.accepting = False  # no new frames; the ones already decoded are finished below
            s.pull()  # frames a replay source held back are counted as dropped
        await self.whip.end_all(reason)
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(s.drained() for s in self.streams.values()):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("shutdown: frames still queued after %.0fs; dropping them", timeout)
                break
            await asyncio.sleep(0.02)
        if self.batcher is not None:
            await self.batcher.drain(timeout)
        for s in self.streams.values():
            s.end_all_tracks(reason)
            s.set_status("offline", reason)
        self.publisher.stop(reason)
        mqtt_task = self._tasks[0] if self._tasks else None
        if mqtt_task is not None:
            done, _ = await asyncio.wait([mqtt_task], timeout=timeout)
            if not done:
                log.warning("MQTT: %d messages not delivered at shutdown", self.publisher.depth)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.detector is not None:
            self.detector.close()
        gc.unfreeze()  # a process that runs several services in turn (tests) collects them again
        self.stopped.set()

    # ------------------------------------------------------------------ views
    def follow(self, stream_id: str, raw: Any, sot: str = "kcf") -> FollowSession:
        """Start following the object a request names (``service.follow.box_from_request``) on a stream."""
        state = self.streams.get(stream_id)
        if state is None:
            raise UnknownStream(f"no stream {stream_id!r}")
        try:
            box, track_id = box_from_request(state, raw)
            session = FollowSession(state, box, asyncio.get_running_loop(), sot, track_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.unfollow(stream_id)
        self.follows[stream_id] = session
        session.start()
        log.info("stream %s: following %s (session %d)", stream_id, [round(v) for v in box], session.id)
        return session

    def unfollow(self, stream_id: str) -> bool:
        session = self.follows.pop(stream_id, None)
        if session is not None:
            session.stop()
        return session is not None

    def stream_view(self, s: StreamState) -> dict[str, Any]:
        return {
            "id": s.id,
            "url": s.cfg.safe_url(),
            "mode": s.cfg.effective_mode,
            "state": s.state,
            "reason": s.reason,
            "source_fps": s.info.get("fps"),
            "size": [s.info["width"], s.info["height"]] if "width" in s.info else None,
            "fps": round(s.fps(), 2),
            "frames_processed": s.n_processed,
            "active_tracks": 0 if s.last_tracks is None else len(s.last_tracks),
            "latency": s.latency_quantiles(),
            "shard": self.shard,
            "analytics": None
            if s.analytics_spec is None
            else {"zones": len(s.analytics_spec.zones), "lines": len(s.analytics_spec.lines),
                  "calibrated": s.analytics_spec.calibration is not None, "error": s.analytics_error},
        }  # fmt: skip
