"""Following one object, as plain code: a single-object tracker's box and the frame's tracks in,
the followed box out (no I/O, no clock).

The single-object tracker (SOT) follows whatever was boxed, frame by frame, even when the detector
has no class for it. When a track of the multi-object tracker overlaps the followed box well
(``acquire_iou``), the follower binds to that track: while the track lives, its box is the
followed box (the detector sees the object: better than any SOT), and the SOT is re-seeded on it
whenever it drifted away (``reseed_iou``). When the track is lost, the SOT carries on alone until
the tracker re-finds that track (under its id) or another track overlaps the SOT's box. With neither for ``lost_after`` frames the object is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Box = tuple[float, float, float, float]  # x1, y1, x2, y2


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True, slots=True)
class FollowConfig:
    acquire_iou: float = 0.5  # a track overlapping the followed box this much takes over
    reseed_iou: float = 0.6  # the SOT is re-seeded on the bound track's box below this overlap
    lost_after: int = 30  # frames with neither a bound track nor an SOT box before "lost"


@dataclass(frozen=True, slots=True)
class FollowStep:
    box: Box | None
    state: Literal["tracking", "searching", "lost"]
    source: Literal["track", "sot"] | None  # where the box came from
    track_id: int | None  # the bound track of the multi-object tracker
    reseed: Box | None  # re-initialise the SOT on this box


class Follower:
    def __init__(self, box: Box, config: FollowConfig | None = None) -> None:
        self.config = config or FollowConfig()
        self.box: Box = box
        self.track_id: int | None = None  # bound this frame
        self.bound: int | None = None  # the last track bound (it may be lost for a while)
        self.missing = 0
        self.frames = {"track": 0, "sot": 0, "none": 0}

    def step(self, sot: Box | None, ids: Sequence[int], boxes: Sequence[Box]) -> FollowStep:
        """One frame: the SOT's box (None: it lost the target) and the frame's tracks."""
        c = self.config
        # The bound track, also when it comes back: the tracker re-finds a lost track under its id.
        if self.bound is not None and self.bound in ids:
            return self._on_track(self.bound, boxes[list(ids).index(self.bound)], sot)
        self.track_id = None
        ref = sot if sot is not None else self.box
        best, best_iou = -1, 0.0
        for k, b in enumerate(boxes):
            o = iou(ref, b)
            if o > best_iou:
                best, best_iou = k, o
        if best >= 0 and best_iou >= c.acquire_iou:
            return self._on_track(ids[best], boxes[best], sot)
        if sot is not None:
            self.box, self.missing = sot, 0
            self.frames["sot"] += 1
            return FollowStep(sot, "tracking", "sot", None, None)
        self.missing += 1
        self.frames["none"] += 1
        state: Literal["searching", "lost"] = "lost" if self.missing > c.lost_after else "searching"
        return FollowStep(None, state, None, None, None)

    def _on_track(self, tid: int, box: Box, sot: Box | None) -> FollowStep:
        self.track_id = self.bound = tid
        self.box, self.missing = box, 0
        self.frames["track"] += 1
        reseed = box if sot is None or iou(sot, box) < self.config.reseed_iou else None
        return FollowStep(box, "tracking", "track", tid, reseed)


def pick_track(
    point: tuple[float, float], ids: Sequence[int], boxes: Sequence[Box]
) -> tuple[int, Box] | None:
    """The track under a click: the smallest box containing the point (the one in front)."""
    x, y = point
    inside = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    best = None
    for k, b in enumerate(boxes):
        if b[0] <= x <= b[2] and b[1] <= y <= b[3] and (best is None or inside[k] < inside[best]):
            best = k
    return None if best is None else (ids[best], boxes[best])
