"""Drawing tracks on frames: boxes, IDs and short trails, one stable colour per ID; with analytics,
the zones (occupancy), lines (counts each way, an arrow towards the "in" side) and each track's speed."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from service.rules.analytics import Analytics, Resolved, TrackValues
from tracker import Tracks


@dataclass(frozen=True)
class Overlay:
    """What the analytics look like at one frame: their shapes, occupancy and counts (a snapshot, so
    a frame can be drawn in another thread while the analytics go on)."""

    r: Resolved
    occupancy: tuple[int, ...]
    counts: tuple[tuple[int, int], ...]  # per line: in, out

    @classmethod
    def of(cls, a: Analytics) -> Overlay:
        return cls(a.r, tuple(a.occupancy), tuple((c["in"], c["out"]) for c in a.counts))


ZONE_COLOUR = (0, 200, 255)
LINE_COLOUR = (255, 80, 255)


def colour(tid: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour for a track ID (golden-ratio hue steps)."""
    hue = (tid * 0.618033988749895) % 1.0
    hsv: Any = np.array([[[int(hue * 179), 200, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


class Annotator:
    """Keeps each track's recent centres; ``draw`` returns an annotated copy of the frame."""

    def __init__(self, trail: int = 20, class_names: list[str] | None = None) -> None:
        self.trail = trail
        self.class_names = class_names
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

    def draw(
        self,
        image: npt.NDArray[np.uint8],
        tracks: Tracks,
        analytics: Overlay | None = None,
        values: list[TrackValues] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """Advance the trails and return an annotated copy of ``image`` (with the analytics' shapes,
        counts and speeds when given)."""
        self.update(tracks)
        out: Any = image.copy()
        h, w = out.shape[:2]
        thick = max(1, round(min(h, w) / 360))
        if analytics is not None:
            _draw_analytics(out, analytics, thick)
        if values is not None:
            for (x1, _y1, _x2, y2), v in zip(tracks.xyxy.tolist(), values, strict=True):
                sp = v.get("speed")
                if sp is not None:
                    _label(
                        out,
                        f"{sp * 3.6:.1f} km/h",
                        (int(x1), int(y2) + 4 + 12 * thick),
                        (255, 255, 255),
                        thick,
                    )
        names = self.class_names
        classes = tracks.classes.tolist()
        for k, (tid, (x1, y1, x2, y2)) in enumerate(
            zip(tracks.ids.tolist(), tracks.xyxy.tolist(), strict=True)
        ):
            c = colour(tid)
            trail = self._trails.get(tid)
            if trail is not None and len(trail) > 1:
                cv2.polylines(out, [np.array(trail, dtype=np.int32)], False, c, thick)
            cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), c, thick + 1)
            label = str(tid)
            if names is not None and 0 <= classes[k] < len(names):
                label = f"{tid} {names[classes[k]]}"
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


def _label(out: Any, text: str, org: tuple[int, int], fg: tuple[int, int, int], thick: int) -> None:
    scale = 0.45 * thick
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    cv2.rectangle(out, (x, y - th - 3), (x + tw + 4, y + 3), (0, 0, 0), -1)
    cv2.putText(out, text, (x + 2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, fg, thick, cv2.LINE_AA)


def _draw_analytics(out: Any, a: Overlay, thick: int) -> None:
    """Zones (outline, a light fill, id and occupancy) and lines (with counts and an "in" arrow)."""
    if a.r.zones:
        fill = out.copy()
        for z in a.r.zones:
            cv2.fillPoly(fill, [np.array(z.polygon.vertices, dtype=np.int32)], ZONE_COLOUR)
        cv2.addWeighted(fill, 0.18, out, 0.82, 0, dst=out)
    for i, z in enumerate(a.r.zones):
        pts = np.array(z.polygon.vertices, dtype=np.int32)
        cv2.polylines(out, [pts], True, ZONE_COLOUR, thick + 1, cv2.LINE_AA)
        x, y = pts[:, 0].min(), pts[:, 1].min()
        _label(out, f"{z.id}: {a.occupancy[i]}", (int(x), int(y) - 4), ZONE_COLOUR, thick)
    for i, ln in enumerate(a.r.lines):
        p, q = (int(ln.a[0]), int(ln.a[1])), (int(ln.b[0]), int(ln.b[1]))
        cv2.line(out, p, q, LINE_COLOUR, thick + 1, cv2.LINE_AA)
        mx, my = (ln.a[0] + ln.b[0]) / 2, (ln.a[1] + ln.b[1]) / 2
        dx, dy = (ln.b[0] - ln.a[0]) / ln.length, (ln.b[1] - ln.a[1]) / ln.length
        # the normal towards the "in" side (on the image, cross > 0 is the right-hand side)
        nx, ny = -dy * ln.in_sign, dx * ln.in_sign
        tip = (int(mx + 25 * nx), int(my + 25 * ny))
        cv2.arrowedLine(out, (int(mx), int(my)), tip, LINE_COLOUR, thick + 1, cv2.LINE_AA, tipLength=0.35)
        c_in, c_out = a.counts[i]
        _label(out, f"{ln.id}: in {c_in} / out {c_out}", (int(mx) + 8, int(my) - 8), LINE_COLOUR, thick)
