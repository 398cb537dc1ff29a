"""Analytics on one stream's tracks: zones, counting lines, dwell, ground position, speed, distance.

A rule like the others: fed each processed frame's tracks with the frame's time passed in, it
returns per-track values and events; no I/O, no clock. The service (``StreamState``) and the
offline loop (``track_video``) run the same code on the same inputs, so their numbers are equal.

Config (``AnalyticsSpec``, a stream's ``analytics:`` section, ``PUT /streams/{id}/analytics``, or
``trackcast track --analytics FILE``)::

    anchor: bottom_center          # the point of a box that stands for the track (the feet)
    anchors: {car: center}         # per class (COCO name or id)
    speed_window_s: 1.0            # trailing least-squares window of the speed (service.rules.kinematics)
    zones:
      - {id: door, points: [[100, 400], [300, 400], [300, 700], [100, 700]], classes: [person], loiter_s: 30}
    lines:
      - {id: gate, points: [[0, 500], [1280, 500]], in_side: left, hysteresis_px: 4}
    calibration:                   # >= 4 image <-> ground (metres) pairs on one plane
      image: [[..], ..]
      ground: [[..], ..]
      max_error_m: 0.5

Coordinates are source pixels, or fractions of the frame's width and height with ``relative:
true`` on that zone, line or calibration. Exact semantics (the README's Analytics section
repeats them for users):

- **Anchor**: ``bottom_center`` ((x1+x2)/2, y2), ``center`` or ``top_center`` of the box.
- **Time**: the frame's presentation time (pts). The analytics clock follows the latest pts seen:
  a pts more than 1 s behind it (a file looping, a camera reconnecting) restarts the timeline and
  the clock advances one frame period; a pts behind it by less (timestamps out of order, as some
  files carry) advances it 1 ms; a missing pts counts as one frame period. So dwell, speed and
  distance never see negative or doubled time.
- **In a zone**: the anchor inside the polygon or on its border. A track *enters* at the first
  processed frame its anchor is in (``zone_entered``), *exits* at the first processed frame it is
  seen out of it (``zone_exited``, reason ``left``, ``dwell_s`` = exit time - entry time). A track
  that is not seen (occluded, missed) stays where it was last seen; if the tracker ends it while
  inside, ``zone_exited`` comes with reason ``lost`` and ``dwell_s`` up to the last frame it was
  seen. When the stream stops or the analytics are replaced, open visits exit with that reason.
- **Loitering**: once per visit, at the first frame its dwell exceeds the zone's ``loiter_s``.
- **Line crossing**: the anchor's path between processed frames meets the line segment (its
  endpoints included) and the track goes from one side to the other. A side only counts once the
  anchor is more than ``hysteresis_px`` from the line (perpendicular), so jitter on the line
  never counts twice, and a track that touches the line and turns back (grazing) counts nothing.
  The path is taken from the last point the track was clearly on its old side, so a frame gap or
  a track re-found after an occlusion counts if the line lies between where it was and where it
  is. ``in_side`` names the side, seen on the image from the first point towards the second,
  that an ``in`` crossing ends on. The event's ``point`` is where the path meets the line.
- **Ground, speed, distance** (with a calibration): the anchor mapped through the homography;
  speed and distance from ``GroundMotion`` (``Kinematics``' rules for all tracks at once; 1 s trailing least-squares window by
  default; why in ``Kinematics``' docstring). A point on or beyond the calibration's horizon has no ground position.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detector_client.formats import COCO_CLASSES
from service.errors import ConfigError
from service.rules.geometry import GeometryError, Homography, Polygon, segments_intersect
from service.rules.kinematics import GroundMotion

F64 = npt.NDArray[np.float64]
Point = tuple[float, float]
Anchor = Literal["bottom_center", "center", "top_center"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def class_id(v: object) -> int:
    """A class given as an id or a COCO name (``traffic light`` or ``traffic_light``)."""
    if isinstance(v, bool):
        raise ValueError(f"unknown class {v!r}")
    if isinstance(v, int):
        if not 0 <= v < 10_000:
            raise ValueError(f"class id {v} is out of range (0-9999)")
        return v
    if isinstance(v, str):
        name = v.strip().lower().replace(" ", "_")
        if name.isdigit():
            return class_id(int(name))
        if name in COCO_CLASSES:
            return COCO_CLASSES.index(name)
        raise ValueError(f"unknown class {v!r}: give a class id (0 = person) or a COCO class name "
                         "(person, car, truck, bicycle, sports_ball, ...)")  # fmt: skip
    raise ValueError(f"unknown class {v!r}: give a class id or a COCO class name")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _check_id(v: str) -> str:
    if not _ID.fullmatch(v):
        raise ValueError("must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return v


def _check_relative(points: Sequence[Point], relative: bool) -> None:
    if relative:
        for i, (x, y) in enumerate(points):
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError(f"point {i} ({x}, {y}) is not within 0-1 (relative: true)")


class _Shape(_Spec):
    id: str = Field(..., description="zone or line id (letters, digits, _ . -), in events and metrics")
    relative: bool = Field(False, description="points are fractions (0-1) of the frame's width and height")
    classes: list[int] | None = Field(None, description="class ids or COCO names it applies to (default all)")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_id(v)

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, list) or not v:
            raise ValueError("must be a non-empty list of class ids or COCO names")
        return [class_id(c) for c in v]


class ZoneSpec(_Shape):
    points: list[Point] = Field(..., min_length=3, max_length=100, description="polygon vertices")
    loiter_s: float | None = Field(None, gt=0, le=86400, description="a loitering event after this dwell")

    @model_validator(mode="after")
    def _shape(self) -> ZoneSpec:
        _check_relative(self.points, self.relative)
        try:
            Polygon(tuple(self.points))
        except GeometryError as exc:
            raise ValueError(str(exc)) from None
        return self


class LineSpec(_Shape):
    points: tuple[Point, Point] = Field(..., description="the line segment's two points")
    in_side: Literal["left", "right"] = Field(
        "left", description="side an 'in' crossing ends on, seen from the first point to the second"
    )
    hysteresis_px: float = Field(
        4.0, ge=0, le=1000, description="a side counts only this far (pixels) beyond the line"
    )

    @model_validator(mode="after")
    def _shape(self) -> LineSpec:
        _check_relative(self.points, self.relative)
        (ax, ay), (bx, by) = self.points
        if ax == bx and ay == by:
            raise ValueError("a line needs two distinct points")
        return self


class CalibrationSpec(_Spec):
    image: list[Point] = Field(..., min_length=4, max_length=100, description="image points (pixels)")
    ground: list[Point] = Field(..., min_length=4, max_length=100, description="their ground points (metres)")
    relative: bool = Field(False, description="image points are fractions (0-1) of the frame size")
    max_error_m: float = Field(
        0.5, gt=0, le=100, description="reject a fit whose reprojection error is larger"
    )

    @model_validator(mode="after")
    def _fit(self) -> CalibrationSpec:
        if len(self.image) != len(self.ground):
            raise ValueError(f"{len(self.image)} image points but {len(self.ground)} ground points")
        _check_relative(self.image, self.relative)
        fit_homography(self, 1, 1)  # shape and degeneracy now; the error bound once the frame size is known
        return self


def fit_homography(cal: CalibrationSpec, width: int, height: int) -> Homography:
    img = [(x * width, y * height) for x, y in cal.image] if cal.relative else list(cal.image)
    try:
        return Homography.fit(img, cal.ground)
    except GeometryError as exc:
        raise ValueError(str(exc)) from None


class AnalyticsSpec(_Spec):
    zones: list[ZoneSpec] = Field(default_factory=list, max_length=64)
    lines: list[LineSpec] = Field(default_factory=list, max_length=64)
    calibration: CalibrationSpec | None = Field(None, description="image <-> ground (metres) pairs")
    anchor: Anchor = Field("bottom_center", description="the box point that stands for a track")
    anchors: dict[int, Anchor] = Field(default_factory=dict, description="anchor per class (id or COCO name)")
    speed_window_s: float = Field(1.0, ge=0.2, le=10, description="speed: trailing least-squares window")

    @field_validator("anchors", mode="before")
    @classmethod
    def _anchor_classes(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {class_id(k): a for k, a in v.items()}
        return v

    @model_validator(mode="after")
    def _unique(self) -> AnalyticsSpec:
        for kind, items in (("zone", self.zones), ("line", self.lines)):
            seen: set[str] = set()
            for it in items:
                if it.id in seen:
                    raise ValueError(f"duplicate {kind} id {it.id!r}")
                seen.add(it.id)
        return self


def _format(exc: ValidationError, origin: str) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc or '(top level)'}: {msg}")
    return f"invalid analytics ({origin}): " + "; ".join(parts)


def parse_analytics(raw: Any, origin: str = "analytics") -> AnalyticsSpec:
    """An analytics section from YAML or JSON; ``ConfigError`` names the bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid analytics ({origin}): must be a mapping (zones:, lines:, calibration:)")
    try:
        return AnalyticsSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(exc, origin)) from exc


# ---------------------------------------------------------------------------------------- resolved


@dataclass(frozen=True)
class _Zone:
    id: str
    polygon: Polygon
    classes: frozenset[int] | None
    loiter_s: float | None


@dataclass(frozen=True)
class _Line:
    id: str
    a: Point
    b: Point
    classes: frozenset[int] | None
    in_sign: int  # the sign of cross(b - a, p - a), image coordinates, on the "in" side
    band: float
    length: float


def _scale(points: Sequence[Point], relative: bool, w: int, h: int) -> list[Point]:
    return [(x * w, y * h) for x, y in points] if relative else [(float(x), float(y)) for x, y in points]


def _inside_frame(key: str, points: Sequence[Point], w: int, h: int) -> None:
    for i, (x, y) in enumerate(points):
        if not (-0.5 <= x <= w + 0.5 and -0.5 <= y <= h + 0.5):
            raise ConfigError(f"invalid analytics: {key}.points.{i}: ({x:g}, {y:g}) is outside the "
                              f"{w}x{h} frame")  # fmt: skip


@dataclass(frozen=True)
class Resolved:
    """An ``AnalyticsSpec`` in one frame size's pixels, checked against it."""

    spec: AnalyticsSpec
    width: int
    height: int
    zones: tuple[_Zone, ...]
    lines: tuple[_Line, ...]
    homography: Homography | None
    horizon_sign: float = 1.0  # sign of the homography's w on the calibrated side of the horizon

    @classmethod
    def of(cls, spec: AnalyticsSpec, width: int, height: int) -> Resolved:
        """Raises ``ConfigError`` naming the key: a shape outside the frame, a calibration too far off."""
        zones = []
        for i, z in enumerate(spec.zones):
            pts = _scale(z.points, z.relative, width, height)
            _inside_frame(f"zones.{i} ({z.id})", pts, width, height)
            zones.append(_Zone(z.id, Polygon(tuple(pts)), None if z.classes is None else frozenset(z.classes),
                               z.loiter_s))  # fmt: skip
        lines = []
        for i, ln in enumerate(spec.lines):
            (a, b) = _scale(ln.points, ln.relative, width, height)
            _inside_frame(f"lines.{i} ({ln.id})", (a, b), width, height)
            # On the image (y down), seen from a towards b, the right-hand side has cross > 0.
            sign = 1 if ln.in_side == "right" else -1
            lines.append(_Line(ln.id, a, b, None if ln.classes is None else frozenset(ln.classes), sign,
                               ln.hysteresis_px, math.hypot(b[0] - a[0], b[1] - a[1])))  # fmt: skip
        hom = None
        if spec.calibration is not None:
            cal = spec.calibration
            img = _scale(cal.image, cal.relative, width, height)
            _inside_frame("calibration.image", img, width, height)
            try:
                hom = Homography.fit(img, cal.ground)
            except GeometryError as exc:
                raise ConfigError(f"invalid analytics: calibration: {exc}") from None
            if hom.reprojection_error_m > cal.max_error_m:
                raise ConfigError(
                    f"invalid analytics: calibration: reprojection error {hom.reprojection_error_m:.3f} m is "
                    f"above max_error_m {cal.max_error_m:g} (a point pair is wrong, or the points are not on one plane)"
                )
        hsign = 1.0
        if hom is not None:
            w = np.c_[np.asarray(img), np.ones(len(img))] @ hom.matrix[2]
            hsign = 1.0 if float(np.median(w)) > 0 else -1.0
        return cls(spec, width, height, tuple(zones), tuple(lines), hom, hsign)


# ---------------------------------------------------------------------------------------- engine


@dataclass(slots=True)
class _Visit:
    t_enter: float
    frame_enter: int
    loitered: bool = False


@dataclass(slots=True)
class _TrackState:
    cls: int
    first_t: float
    last_t: float  # the last time it was seen (a visit of a track that ends inside lasts until then)
    slot: int  # its GroundMotion slot (-1: no calibration)
    inside: list[bool]  # per zone, at its last frame (class filters applied)
    codes: list[int]  # per line, at its last frame: +1 / -1 beyond the band on that side, 0 in it
    sides: list[int]  # per line: the last side it was clearly on (0: not yet)
    clear: list[Point | None]  # per line: the last point clearly on its side, kept while in the band
    prev: Sequence[float] = (0.0, 0.0)  # its anchor at its last frame
    names: list[str] = field(default_factory=list)  # the ids of the zones it is in
    visits: dict[int, _Visit] = field(default_factory=dict)  # zone index -> open visit
    zone_s: dict[str, float] = field(default_factory=dict)  # closed visits' seconds per zone


@dataclass(frozen=True, slots=True)
class TrackTotals:
    """A track's analytics once it ends (the offline summary's ``tracks`` list)."""

    id: int
    cls: int
    seconds: float
    distance_m: float | None
    max_speed_mps: float | None
    mean_speed_mps: float | None
    zones: dict[str, float]


#: Per track per frame: ``ground`` [x, y] m (calibration only), ``speed`` m/s or None, ``distance``
#: m, ``zones`` ids. Plain dicts, merged into the tracks message's rows.
TrackValues = dict[str, Any]


#: A source time more than this far behind the latest is a restart of its timeline.
RESTART_S = 1.0
#: How far the clock moves for a frame whose time is behind the latest (but by less than RESTART_S).
OUT_OF_ORDER_S = 1e-3


class Analytics:
    """One stream's analytics state: ``update`` per processed frame, in frame order."""

    def __init__(self, resolved: Resolved, stream: str, since: float, frame_period_s: float = 1 / 30) -> None:
        self.r = resolved
        self.stream = stream
        self.since = since
        self.period = frame_period_s if frame_period_s > 0 else 1 / 30
        self.tracks: dict[int, _TrackState] = {}
        self.occupancy = [0] * len(resolved.zones)
        self.entered = [0] * len(resolved.zones)
        self.counts = [{"in": 0, "out": 0} for _ in resolved.lines]
        self.frame = 0
        self._t: float | None = None  # last frame's source time
        self.clock = 0.0  # analytics time: increases by the source's time steps (or a frame period)
        self.changed = True  # the state (occupancy, counts) changed since ``state()`` was last read
        z = resolved.zones
        self._geo = _geometry_tables(resolved)
        self._zone_ids: dict[tuple[bool, ...], list[str]] = {}  # which zones a row of flags names
        self._loiter = any(zn.loiter_s is not None for zn in z)
        window = resolved.spec.speed_window_s
        self.motion = (
            GroundMotion(window, max(1.0, window), capacity=max(8, 2 * math.ceil(window / self.period) + 4))
            if resolved.homography is not None
            else None
        )

    # ------------------------------------------------------------------ per frame
    def update(
        self,
        frame: int,
        t: float | None,
        ids: Sequence[int],
        boxes: F64,
        classes: Sequence[int],
        ended: Sequence[int],
        ts: float,
    ) -> tuple[list[TrackValues], list[dict[str, Any]], list[TrackTotals]]:
        """One processed frame: its source time ``t`` (None: one frame period after the last), the
        active tracks (ids, boxes N x 4 in source pixels, classes), the ids the tracker ended at
        this frame, and the wall clock ``ts`` for the events. Returns each active track's values
        (in the order given), the events, and the totals of the tracks that ended."""
        self.frame = frame
        self._advance(t)
        now = self.clock
        events: list[dict[str, Any]] = []
        r = self.r
        boxes = np.ascontiguousarray(boxes, dtype=np.float64).reshape(-1, 4)
        n = len(ids)
        cls = np.asarray(classes, dtype=np.int64).reshape(-1)
        get = self.tracks.get
        states = [get(tid) or self._state(tid, c, now) for tid, c in zip(ids, cls.tolist(), strict=True)]
        # anchors, zone flags, line codes (+1/-1 beyond the band, 0 in it), ground points: one pass
        g = self._geo
        pts, inside, codes, gr, ok = _frame_geometry(boxes, cls, *g)
        inside_l = inside.tolist()
        codes_l: list[list[int]] | None = codes.tolist() if r.lines else None
        # ground, speed, distance: every calibrated track in one pass
        ground_l: list[list[float] | None] | None = None
        if self.motion is not None:
            ground_l = [None] * n
            speed_l: list[float | None] = [None] * n
            dist_l = [0.0] * n
            every = bool(ok.all())  # the usual case: every track has a ground point
            idx = np.arange(n) if every else np.flatnonzero(ok)
            if len(idx):
                slots = np.array([st.slot for st in states] if every else [states[i].slot for i in idx.tolist()],
                                 dtype=np.intp)  # fmt: skip
                gx, gy = (gr[:, 0], gr[:, 1]) if every else (gr[idx, 0], gr[idx, 1])
                mx, my, msp, md = np.round(self.motion.update(now, slots, gx, gy), 3).tolist()
                msp = [None if sp != sp else sp for sp in msp]  # NaN: not known yet
                if every:
                    ground_l, speed_l, dist_l = [[a, b] for a, b in zip(mx, my, strict=True)], msp, md
                else:
                    for j, i in enumerate(idx.tolist()):
                        ground_l[i], speed_l[i], dist_l[i] = [mx[j], my[j]], msp[j], md[j]
            if len(idx) < n:
                for i in np.flatnonzero(~ok).tolist():
                    dist_l[i] = round(float(self.motion.distance[states[i].slot]), 3)
        pts_l = pts.tolist()
        values: list[TrackValues] = []
        zone_ids = self._zone_ids
        loiter = self._loiter
        for i, st in enumerate(states):
            p = pts_l[i]
            row = inside_l[i]
            if row != st.inside:
                self._zones(
                    ids[i], st, row, p, None if ground_l is None else ground_l[i], now, frame, ts, events
                )
                key = tuple(row)
                names = zone_ids.get(key)
                if names is None:
                    names = zone_ids[key] = [zn.id for zn, f in zip(r.zones, row, strict=True) if f]
                st.names = names
            if loiter and st.visits:
                self._loitering(ids[i], st, now, ts, events)
            if ground_l is None:
                v: TrackValues = {"zones": st.names}
            else:
                v = {"zones": st.names, "ground": ground_l[i], "speed": speed_l[i], "distance": dist_l[i]}
            if codes_l is not None and codes_l[i] != st.codes:
                self._lines(ids[i], st, codes_l[i], (p[0], p[1]), ts, v, events)
            st.prev = p
            st.last_t = now
            values.append(v)
        totals = [self._end(tid, "lost", ts, events) for tid in ended if tid in self.tracks]
        return values, events, totals

    def _state(self, tid: int, c: int, now: float) -> _TrackState:
        st = self.tracks.get(tid)
        if st is None:
            nz, nl = len(self.r.zones), len(self.r.lines)
            slot = self.motion.allocate() if self.motion is not None else -1
            st = self.tracks[tid] = _TrackState(
                c, now, now, slot, [False] * nz, [0] * nl, [0] * nl, [None] * nl
            )
        return st

    def _zones(self, tid: int, st: _TrackState, row: list[bool], p: Sequence[float], ground: list[float] | None,
               now: float, frame: int, ts: float, events: list[dict[str, Any]]) -> None:  # fmt: skip
        """A track's zone flags changed: it entered some zones, left others."""
        for zi, (now_in, was_in) in enumerate(zip(row, st.inside, strict=True)):
            if now_in and not was_in:
                st.visits[zi] = _Visit(now, frame)
                self.occupancy[zi] += 1
                self.entered[zi] += 1
                self.changed = True
                events.append(self._event("zone_entered", tid, st.cls, ts, zone=self.r.zones[zi].id, point=_r2(p),
                                          ground=ground))  # fmt: skip
            elif was_in and not now_in and zi in st.visits:
                events.append(self._exit(tid, st, zi, now, "left", ts))
        st.inside = row

    def _loitering(
        self, tid: int, st: _TrackState, now: float, ts: float, events: list[dict[str, Any]]
    ) -> None:
        for zi, visit in st.visits.items():
            lim = self.r.zones[zi].loiter_s
            if lim is not None and not visit.loitered and now - visit.t_enter > lim:
                visit.loitered = True
                events.append(self._event("loitering", tid, st.cls, ts, zone=self.r.zones[zi].id,
                                          dwell_s=round(now - visit.t_enter, 3)))  # fmt: skip

    def _lines(self, tid: int, st: _TrackState, crow: list[int], p: Point, ts: float, v: TrackValues,
               events: list[dict[str, Any]]) -> None:  # fmt: skip
        """A track's line codes changed: remember where it entered a band, count side changes."""
        for li, (c, was) in enumerate(zip(crow, st.codes, strict=True)):
            if c == was:
                continue
            if c == 0:
                if was != 0:
                    st.clear[li] = (st.prev[0], st.prev[1])  # entering the band: its last clear point
                continue
            start = (st.prev[0], st.prev[1]) if was != 0 else st.clear[li]
            side, st.sides[li] = st.sides[li], c
            if side == 0 or side == c or start is None:
                continue
            line = self.r.lines[li]
            if not segments_intersect(start, p, line.a, line.b):
                continue  # went round the end of the line
            direction = "in" if c == line.in_sign else "out"
            self.counts[li][direction] += 1
            self.changed = True
            hit = _intersection(start, p, line.a, line.b)
            events.append(self._event("line_crossed", tid, st.cls, ts, line=line.id, direction=direction,
                                      point=_r2(hit), ground=self._ground_of(hit), speed_mps=v.get("speed")))  # fmt: skip
        st.codes = crow

    def end_all(self, reason: str, ts: float) -> tuple[list[dict[str, Any]], list[TrackTotals]]:
        """Every track ends (the stream stops, the tracker restarts, the analytics are replaced)."""
        events: list[dict[str, Any]] = []
        totals = [self._end(tid, reason, ts, events) for tid in list(self.tracks)]
        return events, totals

    # ------------------------------------------------------------------ helpers
    def _advance(self, t: float | None) -> None:
        """The analytics clock follows the source's latest time (``_t``, the highest seen)."""
        hw = self._t
        if hw is None:
            self.clock, self._t = 0.0, (0.0 if t is None else t)
            return
        if t is None:
            t = hw + self.period
        if t > hw:
            self.clock += t - hw
            self._t = t
        elif t < hw - RESTART_S:  # the source's time restarted (a file loops, a camera reconnects)
            self.clock += self.period
            self._t = t
        else:  # a timestamp out of order (reordered or damaged pts): time barely moves
            self.clock += OUT_OF_ORDER_S

    def _event(self, kind: str, tid: int, cls: int, ts: float, **kw: Any) -> dict[str, Any]:
        return {"v": 1, "stream": self.stream, "event": kind, "id": tid, "class": cls, "frame": self.frame,
                "ts": ts, **kw}  # fmt: skip

    def _exit(
        self, tid: int, st: _TrackState, zi: int, until: float, reason: str, ts: float
    ) -> dict[str, Any]:
        visit = st.visits.pop(zi)
        zone = self.r.zones[zi]
        dwell = max(0.0, until - visit.t_enter)
        st.zone_s[zone.id] = st.zone_s.get(zone.id, 0.0) + dwell
        self.occupancy[zi] -= 1
        self.changed = True
        return self._event("zone_exited", tid, st.cls, ts, zone=zone.id, reason=reason, dwell_s=round(dwell, 3),
                           entered_frame=visit.frame_enter)  # fmt: skip

    def _end(self, tid: int, reason: str, ts: float, events: list[dict[str, Any]]) -> TrackTotals:
        st = self.tracks.pop(tid)
        for zi in sorted(st.visits):
            events.append(self._exit(tid, st, zi, st.last_t, reason, ts))
        secs = st.last_t - st.first_t
        dist = top = None
        if self.motion is not None:
            dist, top = float(self.motion.distance[st.slot]), float(self.motion.max_speed[st.slot])
            self.motion.release(st.slot)
        mean = None if dist is None or secs <= 0 else dist / secs
        return TrackTotals(tid, st.cls, secs, dist, top, mean, dict(st.zone_s))

    def _ground_of(self, p: Point) -> list[float] | None:
        h = self.r.homography
        if h is None:
            return None
        g = _to_ground(h.matrix, np.array([p]), self.r.horizon_sign)[0]
        return None if g is None else [round(g[0], 3), round(g[1], 3)]

    def state(self, ts: float) -> dict[str, Any]:
        """The retained ``<stream>/analytics`` payload: occupancy and line counts since ``since``."""
        self.changed = False
        h = self.r.homography
        return {
            "v": 1,
            "stream": self.stream,
            "since": round(self.since, 3),
            "ts": round(ts, 3),
            "frame": self.frame,
            "zones": {
                z.id: {"occupancy": self.occupancy[i], "entered": self.entered[i]}
                for i, z in enumerate(self.r.zones)
            },
            "lines": {ln.id: dict(self.counts[i]) for i, ln in enumerate(self.r.lines)},
            "calibration": None if h is None else {"reprojection_error_m": round(h.reprojection_error_m, 4)},
        }


_ANCHORS = {"bottom_center": 0, "center": 1, "top_center": 2}


def _geometry_tables(r: Resolved) -> tuple[Any, ...]:
    """The arrays ``_frame_geometry`` reads: anchors per class, zone edges, lines, class filters, the
    homography. A class beyond the tables takes their last column (the default anchor; a shape with
    a class filter does not apply to it)."""
    spec = r.spec
    shapes: list[_Zone | _Line] = [*r.zones, *r.lines]
    classes = {*spec.anchors, *(c for sh in shapes for c in (sh.classes or ()))}
    ncls = max(classes, default=-1) + 2
    anchor_of = np.full(ncls, _ANCHORS[spec.anchor], dtype=np.int64)
    for c, a in spec.anchors.items():
        anchor_of[c] = _ANCHORS[a]

    def allowed(group: Sequence[_Zone | _Line]) -> npt.NDArray[np.bool_]:
        ok = np.ones((len(group), ncls), dtype=bool)
        for i, sh in enumerate(group):
            if sh.classes is not None:
                ok[i] = False
                ok[i, sorted(sh.classes)] = True
        return ok

    verts = [zn.polygon.vertices for zn in r.zones]
    ea = np.array([v[i] for v in verts for i in range(len(v))], dtype=np.float64).reshape(-1, 2)
    eb = np.array([v[(i + 1) % len(v)] for v in verts for i in range(len(v))], dtype=np.float64).reshape(
        -1, 2
    )
    bounds = np.array([0, *np.cumsum([len(v) for v in verts])], dtype=np.int64)
    la = np.array([ln.a for ln in r.lines], dtype=np.float64).reshape(-1, 2)
    lb = np.array([ln.b for ln in r.lines], dtype=np.float64).reshape(-1, 2)
    band = np.array([ln.band for ln in r.lines], dtype=np.float64)
    h = r.homography.matrix if r.homography is not None else np.eye(3)
    return (anchor_of, ea, eb, bounds, allowed(r.zones), la, lb - la, band, allowed(r.lines),
            np.ascontiguousarray(h, dtype=np.float64), float(r.horizon_sign), r.homography is not None)  # fmt: skip


@njit(cache=True, nogil=True)
def _frame_geometry(  # pragma: no cover - compiled
    boxes: np.ndarray,
    cls: np.ndarray,
    anchor_of: np.ndarray,
    ea: np.ndarray,
    eb: np.ndarray,
    bounds: np.ndarray,
    zone_ok: np.ndarray,
    la: np.ndarray,
    ld: np.ndarray,
    band: np.ndarray,
    line_ok: np.ndarray,
    h: np.ndarray,
    hsign: float,
    calibrated: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per track: its anchor, in which zones it is (inside or on the border; class filters applied),
    on which side of each line beyond its band (+1 right, -1 left, seen on the image from the line's
    first point; 0 within the band or not its class), its ground point and whether it has one."""
    n, nz, nl, ncls = boxes.shape[0], len(bounds) - 1, la.shape[0], anchor_of.shape[0]
    pts = np.empty((n, 2))
    inside = np.zeros((n, nz), dtype=np.bool_)
    codes = np.zeros((n, nl), dtype=np.int64)
    ground = np.zeros((n, 2))
    ok = np.zeros(n, dtype=np.bool_)
    eps = 1e-9
    for i in range(n):
        c = min(max(cls[i], 0), ncls - 1)
        mode = anchor_of[c]
        px = 0.5 * (boxes[i, 0] + boxes[i, 2])
        py = boxes[i, 3] if mode == 0 else (0.5 * (boxes[i, 1] + boxes[i, 3]) if mode == 1 else boxes[i, 1])
        pts[i, 0], pts[i, 1] = px, py
        for z in range(nz):
            if not zone_ok[z, c]:
                continue
            odd = False
            border = False
            for e in range(bounds[z], bounds[z + 1]):
                ax, ay, bx, by = ea[e, 0], ea[e, 1], eb[e, 0], eb[e, 1]
                cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
                if (abs(cross) <= eps * max(1.0, abs(bx - ax) + abs(by - ay)) and min(ax, bx) - eps <= px <= max(ax, bx) + eps
                        and min(ay, by) - eps <= py <= max(ay, by) + eps):  # fmt: skip
                    border = True
                    break
                if (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay):
                    odd = not odd
            inside[i, z] = border or odd
        for k in range(nl):
            if not line_ok[k, c]:
                continue
            dx, dy = ld[k, 0], ld[k, 1]
            sd = (dx * (py - la[k, 1]) - dy * (px - la[k, 0])) / math.hypot(dx, dy)
            codes[i, k] = 1 if sd > band[k] else (-1 if sd < -band[k] else 0)
        if calibrated:
            gx = h[0, 0] * px + h[0, 1] * py + h[0, 2]
            gy = h[1, 0] * px + h[1, 1] * py + h[1, 2]
            w = h[2, 0] * px + h[2, 1] * py + h[2, 2]
            if w * hsign > 1e-9 * max(1.0, abs(gx), abs(gy)):
                ground[i, 0], ground[i, 1] = gx / w, gy / w
                ok[i] = True
    return pts, inside, codes, ground, ok


def _ground_array(h: F64, pts: F64, sign: float) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Image points on the ground, and which are in front of the calibration's horizon."""
    p = pts @ h[:, :2].T + h[:, 2]
    w = p[:, 2] * sign
    ok = w > 1e-9 * np.abs(p[:, :2]).max(axis=1).clip(1.0) if len(p) else np.zeros(0, dtype=bool)
    g: F64 = p[:, :2] / np.where(ok, p[:, 2], 1.0)[:, None]
    return g, ok


def _to_ground(h: F64, pts: F64, sign: float) -> list[list[float] | None]:
    """Image points on the ground; None for a point on or beyond the calibration's horizon."""
    if len(pts) == 0:
        return []
    g, ok = _ground_array(h, pts, sign)
    return [xy if good else None for xy, good in zip(g.tolist(), ok.tolist(), strict=True)]


def _r2(p: Sequence[float]) -> list[float]:
    return [round(float(p[0]), 2), round(float(p[1]), 2)]


def _intersection(p: Point, q: Point, a: Point, b: Point) -> Point:
    """Where segment p-q meets the line through a-b (p and q are on opposite sides)."""
    d1 = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    d2 = (b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0])
    s = d1 / (d1 - d2) if d1 != d2 else 0.5
    return (p[0] + s * (q[0] - p[0]), p[1] + s * (q[1] - p[1]))


def load_kernels() -> None:
    """Compile (or load from numba's cache) every compiled kernel the analytics run, on a tiny
    scene: one zone, one line, a calibration, a track that walks across and ends. Called once
    at start-up off the event loop; otherwise the first analytics frame of the first stream
    compiles them on the loop (seconds without a cache) and every stream stalls meanwhile."""
    spec = parse_analytics({
        "zones": [{"id": "z", "points": [[10, 10], [90, 10], [90, 90], [10, 90]], "loiter_s": 1}],
        "lines": [{"id": "l", "points": [[50, 0], [50, 100]]}],
        "calibration": {"image": [[0, 0], [100, 0], [100, 100], [0, 100]],
                        "ground": [[0, 0], [10, 0], [10, 10], [0, 10]]},
    })  # fmt: skip
    a = Analytics(Resolved.of(spec, 100, 100), "warm-up", 0.0, 0.1)
    for i in range(1, 31):
        x = 2.0 * i
        a.update(i, i / 10, [1], np.array([[x, 40.0, x + 10, 60.0]]), [0], [], 0.0)
    a.update(31, 3.1, [], np.empty((0, 4)), [], [1], 0.0)
