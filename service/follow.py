"""Following one object on a live stream: ``POST /streams/{id}/follow`` (a box, or a click on a track).

A ``FollowSession`` listens to its stream's processed frames (``StreamState.listeners``: the
stream then keeps each frame's image), hands each frame and its tracks to its own thread, where the
single-object tracker (``service.media.sot``) and the follow rule (``service.rules.follow``) run,
and publishes ``<stream>/follow`` (``FollowMessage``) per frame from the event loop. The thread
keeps at most a few frames waiting: when the tracker falls behind, the oldest wait is dropped and
counted (the multi-object tracker's re-acquisition does not depend on every frame). A stream has at
most one followed object; a new POST replaces it, DELETE stops it, and removing the stream ends it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from typing import Any

import numpy as np

from service.media import sot as sots
from service.messages import SCHEMA_VERSION, FollowMessage, dumps
from service.pipeline import StreamState
from service.rules.follow import Box, Follower, FollowStep, pick_track
from service.sources import FrameItem
from tracker import Tracks

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_STOP = object()


class FollowSession:
    def __init__(self, state: StreamState, box: Box, loop: asyncio.AbstractEventLoop, sot: str = "kcf",
                 track_id: int | None = None) -> None:  # fmt: skip
        self.id = next(_ids)
        self.state = state
        self.loop = loop
        self.initial = box
        self.tracker = sots.create(sot)  # ValueError for an unknown one, before anything starts
        self.follower = Follower(box)
        if track_id is not None:
            self.follower.bound = track_id
        self.last: FollowStep | None = None
        self.last_frame = 0
        self.dropped = 0
        self.started = False
        self._q: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, name=f"follow-{state.id}", daemon=True)

    def start(self) -> None:
        self.state.listeners.append(self.on_frame)
        self._thread.start()

    def stop(self) -> None:
        if self.on_frame in self.state.listeners:
            self.state.listeners.remove(self.on_frame)
        self._put(_STOP)

    def _put(self, job: Any) -> None:
        while True:
            try:
                self._q.put_nowait(job)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()  # the oldest waiting frame goes
                    self.dropped += 1
                except queue.Empty:
                    pass

    # ------------------------------------------------------------------ loop side
    def on_frame(self, state: StreamState, item: FrameItem, tracks: Tracks) -> None:
        if item.image is None:  # prepared before this session asked for images
            return
        boxes = [(b[0], b[1], b[2], b[3]) for b in tracks.xyxy.tolist()]
        self._put((item.index, item.capture_ts, item.image, tracks.ids.tolist(), boxes))

    def _publish(self, body: FollowMessage) -> None:
        if not self.state.removed:
            self.state.publisher.publish_follow(self.state.id, dumps(body))

    # ------------------------------------------------------------------ thread side
    def _run(self) -> None:
        try:
            while True:
                job = self._q.get()
                if job is _STOP:
                    return
                frame, capture_ts, image, ids, boxes = job
                self._step(frame, capture_ts, image, ids, boxes)
        except Exception:  # one follow's fault never reaches the stream
            log.exception("stream %s: follow %d failed", self.state.id, self.id)

    def _step(
        self, frame: int, capture_ts: float, image: np.ndarray, ids: list[int], boxes: list[Box]
    ) -> None:
        t0 = time.perf_counter()
        if not self.started:
            self.tracker.init(image, self.initial)
            self.started = True
            sot_box: Box | None = self.initial
        else:
            r = self.tracker.update(image)
            sot_box = None if r is None else r[0]
        step = self.follower.step(sot_box, ids, boxes)
        if step.reseed is not None:
            self.tracker.init(image, step.reseed)
        self.last, self.last_frame = step, frame
        body: FollowMessage = {
            "v": SCHEMA_VERSION, "stream": self.state.id, "follow": self.id, "frame": frame,
            "capture_ts": round(capture_ts, 4),
            "box": None if step.box is None else [round(v, 2) for v in step.box],
            "state": step.state, "source": step.source, "track_id": step.track_id,
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
        }  # fmt: skip
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._publish, body)

    def view(self) -> dict[str, Any]:
        s = self.last
        return {"follow": self.id, "stream": self.state.id, "initial_box": list(self.initial), "frame": self.last_frame,
                "state": "starting" if s is None else s.state, "box": None if s is None or s.box is None else list(s.box),
                "source": None if s is None else s.source, "track_id": self.follower.bound if s is None else s.track_id,
                "frames": dict(self.follower.frames), "dropped": self.dropped}  # fmt: skip


def box_from_request(state: StreamState, raw: Any) -> tuple[Box, int | None]:
    """``{"box": [x, y, w, h]}`` or ``{"point": [x, y]}`` (the track under a click) -> (x1, y1, x2, y2), track id.

    ``ValueError`` with what is wrong."""
    if not isinstance(raw, dict) or ("box" in raw) == ("point" in raw):
        raise ValueError('body must be {"box": [x, y, w, h]} or {"point": [x, y]} (source pixels)')
    size = state.frame_size()
    if "box" in raw:
        b = raw["box"]
        if not (
            isinstance(b, list)
            and len(b) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in b)
        ):
            raise ValueError(f"box must be 4 numbers [x, y, w, h], got {b!r}")
        x, y, w, h = (float(v) for v in b)
        if w <= 0 or h <= 0 or not all(np.isfinite([x, y, w, h])):
            raise ValueError(f"box {b}: width and height must be positive numbers")
        if size is not None and not (0 <= x < size[0] and 0 <= y < size[1]):
            raise ValueError(f"box {b} starts outside the {size[0]}x{size[1]} frame")
        return (x, y, x + w, y + h), None
    p = raw["point"]
    if not (
        isinstance(p, list)
        and len(p) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
    ):
        raise ValueError(f"point must be 2 numbers [x, y], got {p!r}")
    tracks = state.last_tracks
    if tracks is None:
        raise ValueError("no frame processed yet: nothing to click on")
    boxes = [(b[0], b[1], b[2], b[3]) for b in tracks.xyxy.tolist()]
    hit = pick_track((float(p[0]), float(p[1])), tracks.ids.tolist(), boxes)
    if hit is None:
        raise ValueError(
            f"no track under ({p[0]}, {p[1]}) in frame {state.last_item.index if state.last_item else '?'}"
        )
    return hit[1], hit[0]
