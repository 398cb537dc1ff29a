"""Drawing tracks on frames: boxes, IDs and short trails, one stable colour per ID."""

from __future__ import annotations

from collections import deque
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from tracker import Tracks


def colour(tid: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour for a track ID (golden-ratio hue steps)."""
    hue = (tid * 0.618033988749895) % 1.0
    hsv: Any = np.array([[[int(hue * 179), 200, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


class Annotator:
    """Keeps each track's recent centres; ``draw`` returns an annotated copy of the frame."""

    def __init__(self, trail: int = 20) -> None:
        self.trail = trail
        self._trails: dict[int, deque[tuple[int, int]]] = {}

    def update(self, tracks: Tracks) -> None:
        """Advance the trails by one frame without drawing (for frames nobody sees)."""
        for tid in tracks.ended_ids.tolist():
            self._trails.pop(tid, None)
        seen = set()
        for tid, (x1, _y1, x2, y2) in zip(tracks.ids.tolist(), tracks.xyxy.tolist(), strict=True):
            seen.add(tid)
            self._trails.setdefault(tid, deque(maxlen=self.trail)).append((int((x1 + x2) / 2), int(y2)))
        if len(self._trails) > 4 * max(1, len(seen)) + 64:  # tracks that vanished without an end
            for tid in [t for t in self._trails if t not in seen]:
                del self._trails[tid]

    draw_state_only = update

    def draw(self, image: npt.NDArray[np.uint8], tracks: Tracks) -> npt.NDArray[np.uint8]:
        """Advance the trails and return an annotated copy of ``image``."""
        self.update(tracks)
        out: Any = image.copy()
        h, w = out.shape[:2]
        thick = max(1, round(min(h, w) / 360))
        for tid, (x1, y1, x2, y2) in zip(tracks.ids.tolist(), tracks.xyxy.tolist(), strict=True):
            c = colour(tid)
            trail = self._trails.get(tid)
            if trail is not None and len(trail) > 1:
                cv2.polylines(out, [np.array(trail, dtype=np.int32)], False, c, thick)
            cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), c, thick + 1)
            label = str(tid)
            scale = 0.5 * thick
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            ty = max(int(y1), th + 4)
            cv2.rectangle(out, (int(x1), ty - th - 4), (int(x1) + tw + 4, ty), c, -1)
            cv2.putText(
                out,
                label,
                (int(x1) + 2, ty - 3),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (0, 0, 0),
                thick,
                cv2.LINE_AA,
            )
        result: npt.NDArray[np.uint8] = out
        return result
