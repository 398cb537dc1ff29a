"""A ROS bag's image topic as a stream: ``url: /data/drive.bag`` (or a ROS 2 bag folder), ``topic: /cam``.

One thread reads the topic's messages in the bag's timestamp order (``service.media.bag``), paced
by their record timestamps when ``realtime`` (like the camera that recorded them), letterboxes each
frame once and hands it over exactly like a replayed video file: every frame in order, waiting for
room in the stream's queue (``mode: live`` makes it freshest-frame-wins instead). ``loop`` replays
it again from the start. A bag that cannot be read, has no such topic or a damaged message ends the
stream with a status that says what and where; the other streams go on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from service.errors import SourceError
from service.media.bag import Bag
from service.rules.sampling import Sampler
from service.sources import FrameItem, ReplayableSource, skipped

log = logging.getLogger(__name__)


class BagSource(ReplayableSource):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index = 0
        self.sample = 0

    def _status(self, state: str, reason: str | None) -> None:
        self._call(self._on_status, state, reason)

    def _run(self) -> None:
        try:
            self._status("connecting", None)
            while not self._stop.is_set():
                got = self._pass()
                if self._stop.is_set():
                    break
                if not (self.cfg.loop and got):
                    self._status("offline", "end of bag" if got else "no frames in bag")
                    break
        except SourceError as exc:
            log.warning("stream %s: %s", self.cfg.id, exc)
            self._status("offline", exc.reason)
        except Exception as exc:  # never let one stream's thread die silently
            log.exception("stream %s: bag source thread failed", self.cfg.id)
            self._status("offline", f"internal error: {type(exc).__name__}")
        finally:
            self._finish()

    def _pass(self) -> bool:
        """One pass over the topic. True if frames came."""
        sampler = Sampler(self.cfg.detect_fps)
        got = False
        with Bag(self.cfg.url) as bag:
            info = bag.image_topic(self.cfg.topic)
            t0_ns: int | None = None
            pace_start = 0.0
            for f in bag.frames(info.topic):
                if self._stop.is_set():
                    return got
                t_read = time.perf_counter()
                if t0_ns is None:
                    t0_ns, pace_start = f.t_ns, time.monotonic()
                    h, w = f.image.shape[:2]
                    self._call(self._on_info, {"fps": info.rate_hz, "width": w, "height": h})
                    self._status("online", None)
                got = True
                self.index += 1
                pts = (f.t_ns - t0_ns) / 1e9
                if self.replay and self.cfg.realtime:
                    delay = pace_start + pts - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return got
                    t_read = time.perf_counter()  # the decode stage excludes pacing
                capture_ts = time.time()
                if not sampler.keep(pts):
                    self._deliver(skipped(self.cfg.id, self.index, capture_ts))
                    continue
                self.sample += 1
                prepared = self.spec.prepare(f.image, stream=self.cfg.id, index=self.index)
                item = FrameItem(self.cfg.id, self.index, self.sample, pts, capture_ts, prepared,
                                 f.image if self._keep_image() else None, time.perf_counter() - t_read)  # fmt: skip
                if self.replay and not self._room():
                    return got
                self._deliver(item)
        return got
