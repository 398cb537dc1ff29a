"""People on a ground plane seen by a fixed camera at an angle: known trajectories, known homography.

The ground truth the analytics are checked against (tests, ``loadtest.bench_analytics``). A
pinhole camera 8 m above the ground, 5 m behind the area's near edge, pitched down 30 degrees,
looks across a 20 m x 30 m area (x to the right, y away from the camera, metres); perspective is clearly visible (a
person near the camera is twice as tall as one at the far end, a metre across is 80 px near
and 30 px far, a metre of depth 60 px near and 8 px far). Each person follows a scripted path of straight runs at constant
speed, arcs, and stops; their box spans the projection of a 0.5 m wide, 1.8 m tall upright
rectangle standing on the ground, so the bottom centre of the box is exactly the image of the
feet and the ground homography maps it back to the true position.

``GroundScene.frame(i)`` gives frame ``i``'s (1-based) ids, boxes and true ground positions;
``render`` draws it (textured ground, grid, people); ``ANALYTICS`` is the scene's analytics
config (a line along x = 10 m, a zone 12-16 x 16-20 m, the calibration from four ground marks).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

# A path: segments of ("line", (x1, y1), (x2, y2), speed) / ("arc", centre, radius, a0_deg, a1_deg, speed)
# / ("stay", seconds), from ``start`` (seconds) on; before its start and after its end a person is absent.
Segment = tuple[Any, ...]


@dataclass(frozen=True)
class Person:
    id: int
    start_s: float
    segments: tuple[Segment, ...]


#: The scripted people: steady runs, a stop, a run back (both directions over the line), a stay in
#: the zone, a turn, a far walker.
PEOPLE = (
    Person(1, 0.0, (("line", (2.0, 8.0), (18.0, 8.0), 5.0), ("stay", 2.0), ("line", (18.0, 8.0), (3.0, 9.0), 4.0))),
    Person(2, 0.4, (("line", (3.0, 21.0), (17.0, 13.0), 3.0), ("stay", 1.0), ("line", (17.0, 13.0), (15.0, 5.0), 3.0))),
    Person(3, 0.0, (("line", (8.0, 18.0), (14.0, 18.0), 1.5), ("stay", 5.0), ("line", (14.0, 18.0), (14.0, 23.0), 1.5))),
    Person(4, 1.0, (("arc", (9.0, 14.0), 6.0, 180.0, 300.0, 4.0), ("line", None, (18.0, 4.0), 4.0))),
    Person(5, 0.2, (("line", (18.0, 27.0), (2.0, 27.0), 2.5),)),
)  # fmt: skip


def _expand(p: Person) -> list[tuple[str, float, float, Any]]:
    """Segments as (kind, t0, t1, params) in absolute seconds; 'line' params: (a, b); 'arc': (c, r, a0, a1)."""
    out: list[tuple[str, float, float, Any]] = []
    t = p.start_s
    pos: tuple[float, float] | None = None
    for seg in p.segments:
        if seg[0] == "line":
            a = seg[1] if seg[1] is not None else pos
            assert a is not None
            b, v = seg[2], seg[3]
            dur = math.dist(a, b) / v
            out.append(("line", t, t + dur, (a, b)))
            pos, t = b, t + dur
        elif seg[0] == "arc":
            c, r, a0, a1, v = seg[1], seg[2], math.radians(seg[3]), math.radians(seg[4]), seg[5]
            dur = abs(a1 - a0) * r / v
            out.append(("arc", t, t + dur, (c, r, a0, a1)))
            pos, t = (c[0] + r * math.cos(a1), c[1] + r * math.sin(a1)), t + dur
        else:
            assert pos is not None
            out.append(("stay", t, t + seg[1], pos))
            t += seg[1]
    return out


def position(segs: list[tuple[str, float, float, Any]], t: float) -> tuple[float, float, float] | None:
    """(x, y, speed) at time ``t``, or None when the person is not in the scene."""
    for kind, t0, t1, par in segs:
        if t0 <= t <= t1:
            s = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            if kind == "line":
                (ax, ay), (bx, by) = par
                return ax + s * (bx - ax), ay + s * (by - ay), math.dist(par[0], par[1]) / (t1 - t0)
            if kind == "arc":
                (cx, cy), r, a0, a1 = par
                ang = a0 + s * (a1 - a0)
                return cx + r * math.cos(ang), cy + r * math.sin(ang), abs(a1 - a0) * r / (t1 - t0)
            return par[0], par[1], 0.0
    return None


@dataclass
class Camera:
    width: int = 1280
    height: int = 720
    focal_px: float = 1000.0
    x_m: float = 10.0
    y_m: float = -5.0
    height_m: float = 8.0
    pitch_deg: float = 30.0
    _p: F64 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s, c = math.sin(math.radians(self.pitch_deg)), math.cos(math.radians(self.pitch_deg))
        rot = np.array([[1.0, 0.0, 0.0], [0.0, -s, -c], [0.0, c, -s]])  # rows: right, down, forward
        k = np.array([[self.focal_px, 0, self.width / 2], [0, self.focal_px, self.height / 2], [0, 0, 1]])
        centre = np.array([self.x_m, self.y_m, self.height_m])
        self._p = k @ np.c_[rot, -rot @ centre]

    def project(self, pts: F64) -> F64:
        """World points (N x 3, metres) to pixels (N x 2)."""
        h = np.c_[pts, np.ones(len(pts))] @ self._p.T
        out: F64 = h[:, :2] / h[:, 2:3]
        return out

    @property
    def ground_to_image(self) -> F64:
        out: F64 = self._p[:, [0, 1, 3]] / self._p[2, 3]
        return out


@dataclass
class GroundScene:
    fps: float = 25.0
    seconds: float = 16.0
    camera: Camera = field(default_factory=Camera)
    people: tuple[Person, ...] = PEOPLE
    _segs: dict[int, list[tuple[str, float, float, Any]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._segs = {p.id: _expand(p) for p in self.people}

    @property
    def frames(self) -> int:
        return round(self.seconds * self.fps)

    def time(self, i: int) -> float:
        return (i - 1) / self.fps

    def truth(self, i: int) -> dict[int, tuple[float, float, float]]:
        """Person id -> (x, y, speed) on the ground at frame ``i``."""
        out = {}
        for pid, segs in self._segs.items():
            p = position(segs, self.time(i))
            if p is not None:
                out[pid] = p
        return out

    def boxes(self, truth: dict[int, tuple[float, float, float]]) -> tuple[list[int], F64]:
        ids = sorted(truth)
        if not ids:
            return [], np.zeros((0, 4))
        pts = []
        for pid in ids:
            x, y, _ = truth[pid]
            pts += [(x - 0.25, y, 0.0), (x + 0.25, y, 0.0), (x, y, 1.8)]
        px = self.camera.project(np.array(pts)).reshape(-1, 3, 2)
        boxes = np.stack([px[:, 0, 0], px[:, 2, 1], px[:, 1, 0], px[:, 0, 1]], axis=1)
        return ids, boxes

    def frame(self, i: int) -> tuple[list[int], F64, dict[int, tuple[float, float, float]]]:
        truth = self.truth(i)
        ids, boxes = self.boxes(truth)
        return ids, boxes, truth

    def ground_points(self) -> list[tuple[float, float]]:
        """Six ground marks (pitch markings one would measure) for the calibration, all in view."""
        return [(3.0, 6.0), (10.0, 6.0), (17.0, 6.0), (17.0, 28.0), (10.0, 28.0), (3.0, 28.0)]

    def image_of(self, ground: list[tuple[float, float]]) -> list[tuple[float, float]]:
        px = self.camera.project(np.array([(x, y, 0.0) for x, y in ground]))
        return [(round(float(u), 3), round(float(v), 3)) for u, v in px]

    def analytics(self) -> dict[str, Any]:
        """The scene's analytics config (image pixels): a line, a zone, the calibration."""
        line = self.image_of([(10.0, 3.0), (10.0, 29.0)])
        zone = self.image_of([(12.0, 16.0), (16.0, 16.0), (16.0, 20.0), (12.0, 20.0)])
        return {
            "lines": [{"id": "halfway", "points": line, "in_side": "left"}],
            "zones": [{"id": "box", "points": zone, "loiter_s": 3.0}],
            "calibration": {"image": self.image_of(self.ground_points()), "ground": self.ground_points()},
        }

    def background(self) -> npt.NDArray[np.uint8]:
        import cv2

        rng = np.random.default_rng(3)
        h, w = self.camera.height, self.camera.width
        img: Any = np.empty((h, w, 3), np.uint8)
        img[:] = (60, 130, 70)
        img = np.clip(img.astype(np.int16) + rng.integers(-8, 9, (h, w, 1)), 0, 255).astype(np.uint8)
        for x in range(0, 21, 2):
            a, b = self.image_of([(float(x), 2.0), (float(x), 30.0)])
            cv2.line(img, (round(a[0]), round(a[1])), (round(b[0]), round(b[1])), (200, 200, 200), 1)
        for y in range(2, 31, 2):
            a, b = self.image_of([(0.0, float(y)), (20.0, float(y))])
            cv2.line(img, (round(a[0]), round(a[1])), (round(b[0]), round(b[1])), (200, 200, 200), 1)
        out: npt.NDArray[np.uint8] = img
        return out

    def render(self, background: npt.NDArray[np.uint8], ids: list[int], boxes: F64) -> npt.NDArray[np.uint8]:
        import cv2

        img: Any = background.copy()
        kits = [(40, 40, 210), (210, 100, 30), (30, 30, 30), (30, 200, 230), (200, 40, 200)]
        for k in np.argsort(boxes[:, 3]) if len(boxes) else []:
            x1, y1, x2, y2 = (round(float(v)) for v in boxes[k])
            hgt = y2 - y1
            cv2.rectangle(img, (x1, y1 + hgt // 6), (x2, y1 + hgt * 3 // 5), kits[ids[k] % len(kits)], -1)
            cv2.rectangle(img, (x1, y1 + hgt * 3 // 5), (x2, y2), (240, 240, 240), -1)
            cv2.ellipse(img, ((x1 + x2) // 2, y1 + hgt // 12), (max(2, (x2 - x1) // 3), max(2, hgt // 12)), 0, 0,
                        360, (120, 160, 210), -1)  # fmt: skip
        out: npt.NDArray[np.uint8] = img
        return out

    # ------------------------------------------------------------------ ground truth
    def crossings(self, x: float = 10.0, y0: float = 3.0, y1: float = 29.0) -> list[tuple[int, int, str]]:
        """(person, frame, direction) of each crossing of the ground line ``x`` (between ``y0`` and
        ``y1``) by a person's feet, at the first frame on the new side: ``in`` towards smaller x
        (the side on the left of the line drawn from its near end to its far end)."""
        out = []
        last: dict[int, bool] = {}  # person -> on the small-x side, at its last frame off the line
        for i in range(1, self.frames + 1):
            for pid, (px, py, _) in self.truth(i).items():
                if px == x:
                    continue
                prev = last.get(pid)
                if prev is not None and prev != (px < x) and y0 <= py <= y1:
                    out.append((pid, i, "in" if px < x else "out"))
                last[pid] = px < x
        return out

    def visits(self, x0: float, x1: float, y0: float, y1: float) -> list[tuple[int, int, int | None]]:
        """(person, first frame inside, first frame outside or None) of each stay in a ground rectangle."""
        out: list[tuple[int, int, int | None]] = []
        open_: dict[int, int] = {}
        for i in range(1, self.frames + 1):
            truth = self.truth(i)
            for pid, (px, py, _) in truth.items():
                inside = x0 <= px <= x1 and y0 <= py <= y1
                if inside and pid not in open_:
                    open_[pid] = i
                elif not inside and pid in open_:
                    out.append((pid, open_.pop(pid), i))
            for pid in [p for p in open_ if p not in truth]:
                out.append((pid, open_.pop(pid), None))
        out += [(pid, f, None) for pid, f in open_.items()]
        return sorted(out)

    def steady(self, pid: int, i: int, settle_s: float) -> bool:
        """Person ``pid`` moves at constant speed at frame ``i`` and has for ``settle_s`` seconds."""
        t = self.time(i)
        for kind, t0, t1, _ in self._segs[pid]:
            if t0 <= t <= t1:
                return kind != "stay" and t - t0 >= settle_s
        return False

    def path_length(self, pid: int, first: int, last: int) -> float:
        """The true distance person ``pid`` covers from frame ``first`` to ``last``."""
        pts = [self.truth(i)[pid][:2] for i in range(first, last + 1) if pid in self.truth(i)]
        return sum(math.dist(a, b) for a, b in itertools.pairwise(pts))

    def write_video(self, path: str | Path, frames: int | None = None) -> Path:
        """Render the scene to an H.264 MP4 (``frames`` of it, default all) at its fps."""
        from service.media.offline import VideoWriter

        bg = self.background()
        writer = VideoWriter(path, self.camera.width, self.camera.height, self.fps)
        try:
            for i in range(1, (frames or self.frames) + 1):
                ids, boxes, _ = self.frame(i)
                writer.write(self.render(bg, ids, boxes))
        finally:
            writer.close()
        return Path(path)

    # ------------------------------------------------------------------ scoring
    def owners(self, tracks: dict[int, list[tuple[int, list[float]]]]) -> dict[int, int | None]:
        """Each track's person: the one whose true box its boxes overlap most often (IoU >= 0.3)."""
        out: dict[int, int | None] = {}
        cache: dict[int, tuple[list[int], F64]] = {}
        for tid, rows in tracks.items():
            votes: dict[int, int] = {}
            for frame, box in rows:
                if frame not in cache:
                    ids, boxes, _ = self.frame(frame)
                    cache[frame] = (ids, boxes)
                ids, boxes = cache[frame]
                if not ids:
                    continue
                b = np.asarray(box)
                iw = np.clip(np.minimum(boxes[:, 2], b[2]) - np.maximum(boxes[:, 0], b[0]), 0, None)
                ih = np.clip(np.minimum(boxes[:, 3], b[3]) - np.maximum(boxes[:, 1], b[1]), 0, None)
                inter = iw * ih
                union = (
                    (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
                    + (b[2] - b[0]) * (b[3] - b[1])
                    - inter
                )
                iou = inter / union
                k = int(np.argmax(iou))
                if iou[k] >= 0.3:
                    votes[ids[k]] = votes.get(ids[k], 0) + 1
            out[tid] = max(votes, key=lambda p: votes[p]) if votes else None
        return out

    def score(
        self, tracks: dict[int, list[tuple[int, list[float], dict[str, Any]]]], events: list[dict[str, Any]],
        zone: tuple[float, float, float, float] = (12.0, 16.0, 16.0, 20.0),
    ) -> dict[str, Any]:  # fmt: skip
        """How analytics output (per track: frame, box, values; and the events) matches the truth:
        speed errors on steady frames (known speed, constant for 1 s), distance error per track
        (against its person's path over the track's frames), line crossings (matched to the true ones
        by person and direction, within 2 frames), and the dwell error of each true stay."""
        owner = self.owners({tid: [(f, b) for f, b, _ in rows] for tid, rows in tracks.items()})
        speed_err: list[float] = []
        dist_err: dict[int, float] = {}
        for tid, rows in tracks.items():
            pid = owner[tid]
            if pid is None:
                continue
            for f, _, v in rows:
                truth = self.truth(f).get(pid)
                if truth and v.get("speed") is not None and self.steady(pid, f, 1.0):
                    speed_err.append(abs(v["speed"] - truth[2]) / truth[2])
            true_d = self.path_length(pid, rows[0][0], rows[-1][0])
            if true_d > 2.0 and rows[-1][2].get("distance") is not None:
                dist_err[tid] = rows[-1][2]["distance"] / true_d - 1
        want = self.crossings()
        got = [
            (owner.get(e["id"]), e["frame"], e["direction"]) for e in events if e["event"] == "line_crossed"
        ]
        unmatched = list(got)
        matched = 0
        for pid, frame, d in want:
            hit = next((g for g in unmatched if g[0] == pid and g[2] == d and abs(g[1] - frame) <= 2), None)
            if hit is not None:
                unmatched.remove(hit)
                matched += 1
        dwell_err = []
        exits = [e for e in events if e["event"] == "zone_exited"]
        for pid, first, after in self.visits(*zone):
            if after is None:
                continue
            mine = [e for e in exits if owner.get(e["id"]) == pid]
            true = (after - first) / self.fps
            dwell_err.append(min((abs(e["dwell_s"] - true) for e in mine), default=true))
        return {
            "owner": owner,
            "speed_err": speed_err,
            "median_speed_err": float(np.median(speed_err)) if speed_err else None,
            "dist_err": dist_err,
            "crossings_true": len(want),
            "crossings_counted": len(got),
            "crossings_matched": matched,
            "dwell_err_s": dwell_err,
        }

    def track_boxes(
        self, jitter: float = 0.0, seed: int = 7
    ) -> tuple[dict[int, list[tuple[int, list[float], dict[str, Any]]]], list[dict[str, Any]]]:
        """The scene's own boxes (a detector that returns what was rendered), jittered by up to
        ``jitter`` px (uniform, seeded), through ByteTrack and the scene's analytics: per track
        (frame, box, values) and the events, ready for ``score``."""
        from service.rules.analytics import Analytics, Resolved, parse_analytics
        from tracker import ByteTracker, TrackerConfig

        cam = self.camera
        engine = Analytics(Resolved.of(parse_analytics(self.analytics()), cam.width, cam.height), "scene", 0.0,
                           1 / self.fps)  # fmt: skip
        tracker = ByteTracker(TrackerConfig(frame_rate=self.fps))
        rng = np.random.default_rng(seed)
        rows: dict[int, list[tuple[int, list[float], dict[str, Any]]]] = {}
        events: list[dict[str, Any]] = []
        for i in range(1, self.frames + 1):
            ids, boxes, _ = self.frame(i)
            noisy = boxes + rng.uniform(-jitter, jitter, boxes.shape) if jitter else boxes
            tr = tracker.update(np.c_[noisy, np.full(len(ids), 0.9)], frame_index=i)
            values, ev, _ = engine.update(i, self.time(i), tr.ids.tolist(), tr.xyxy, tr.classes.tolist(),
                                          tr.ended_ids.tolist(), 0.0)  # fmt: skip
            events += ev
            for tid, box, v in zip(tr.ids.tolist(), tr.xyxy.tolist(), values, strict=True):
                rows.setdefault(tid, []).append((i, box, v))
        events += engine.end_all("end of clip", 0.0)[0]
        return rows, events
