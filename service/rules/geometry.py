"""Plane geometry for analytics (zones, counting lines, ground calibration): pure functions, no I/O.

The building blocks the analytics rules (issue 18) stand on, exactly defined:

- ``Polygon``: a simple polygon (3 or more vertices, no self-intersection, non-zero area); a
  point *on* an edge or a vertex is inside (``contains``), so a box anchor resting on a zone's
  border counts as in it.
- ``crossing(p, q, a, b)``: whether the movement ``p -> q`` crosses the segment ``a -> b``, and to
  which side. Sides are the sign of the cross product ``(b - a) x (pt - a)``: ``left`` > 0,
  ``right`` < 0, ``on`` = 0. A movement crosses when it goes from one strict side to the other and
  meets the segment between its endpoints (an endpoint included). Touching the line and going back
  (grazing), or moving along it, is no crossing.
- Line counting with hysteresis (per track, against a band around the line) is the analytics
  rule's (``service.rules.analytics``), for all tracks of a frame at once.
- ``Homography``: image <-> ground (metres) from 4 or more point pairs, by OpenCV's
  ``findHomography`` (normalised DLT refined on the reprojection error), checked first: fewer than 4 pairs, three collinear points
  among 4, or a singular result are clear errors; ``reprojection_error_m`` says how well it fits.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Point = tuple[float, float]
Side = Literal["left", "right", "on"]
Direction = Literal["in", "out"]
F64 = npt.NDArray[np.float64]

_EPS = 1e-9


class GeometryError(ValueError):
    """A shape or calibration that cannot be used as given (says why)."""


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def side(a: Point, b: Point, p: Point) -> Side:
    """Which side of the directed line ``a -> b`` the point ``p`` is on."""
    c = _cross(a, b, p)
    scale = max(1.0, abs(b[0] - a[0]) + abs(b[1] - a[1]))
    if abs(c) <= _EPS * scale:
        return "on"
    return "left" if c > 0 else "right"


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return (
        side(a, b, p) == "on"
        and min(a[0], b[0]) - _EPS <= p[0] <= max(a[0], b[0]) + _EPS
        and (min(a[1], b[1]) - _EPS <= p[1] <= max(a[1], b[1]) + _EPS)
    )


def segments_intersect(p: Point, q: Point, a: Point, b: Point) -> bool:
    """Closed segments ``p-q`` and ``a-b`` share at least one point."""
    d1, d2 = _cross(a, b, p), _cross(a, b, q)
    d3, d4 = _cross(p, q, a), _cross(p, q, b)
    if ((d1 > _EPS and d2 < -_EPS) or (d1 < -_EPS and d2 > _EPS)) and (
        (d3 > _EPS and d4 < -_EPS) or (d3 < -_EPS and d4 > _EPS)
    ):
        return True
    return any(_on_segment(s, t, x) for s, t, x in ((a, b, p), (a, b, q), (p, q, a), (p, q, b)))


def crossing(p: Point, q: Point, a: Point, b: Point) -> Direction | None:
    """The direction in which the movement ``p -> q`` crosses segment ``a -> b``, or None.

    ``in``: from the right side to the left (seen from ``a`` towards ``b``), ``out``: the other way.
    """
    sp, sq = side(a, b, p), side(a, b, q)
    if "on" in (sp, sq) or sp == sq:
        return None
    if not segments_intersect(p, q, a, b):
        return None
    return "in" if sp == "right" else "out"


@dataclass(frozen=True)
class Polygon:
    vertices: tuple[Point, ...]

    def __post_init__(self) -> None:
        v = self.vertices
        if len(v) < 3:
            raise GeometryError(f"a polygon needs at least 3 points, got {len(v)}")
        if not all(np.isfinite(c) for pt in v for c in pt):
            raise GeometryError("polygon points must be finite numbers")
        n = len(v)
        for i in range(n):
            for j in range(i + 1, n):
                if j == i + 1 or (i == 0 and j == n - 1):
                    continue  # neighbouring edges share a vertex
                if segments_intersect(v[i], v[(i + 1) % n], v[j], v[(j + 1) % n]):
                    raise GeometryError(f"the polygon intersects itself (edges {i} and {j})")
        if abs(self.area) <= _EPS:
            raise GeometryError("the polygon has no area (its points are collinear or repeated)")

    @property
    def area(self) -> float:
        """Signed area (shoelace): positive when the vertices run counter-clockwise (y up)."""
        v = self.vertices
        return 0.5 * sum(
            v[i][0] * v[(i + 1) % len(v)][1] - v[(i + 1) % len(v)][0] * v[i][1] for i in range(len(v))
        )

    def contains(self, p: Point) -> bool:
        """Inside or on the border (edges and vertices count as inside)."""
        v = self.vertices
        n = len(v)
        inside = False
        for i in range(n):
            a, b = v[i], v[(i + 1) % n]
            if _on_segment(a, b, p):
                return True
            if (a[1] > p[1]) != (b[1] > p[1]):
                x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
                if p[0] < x:
                    inside = not inside
        return inside


@dataclass(frozen=True)
class Homography:
    """Image pixels <-> ground metres on a plane, from point pairs."""

    matrix: F64  # 3x3, image -> ground
    reprojection_error_m: float  # RMS distance, on the ground, of the pairs' image points mapped
    flips_orientation: bool = False  # the mapping mirrors the plane (clockwise becomes anticlockwise)

    @classmethod
    def fit(cls, image: Sequence[Point], ground: Sequence[Point]) -> Homography:
        img = np.asarray(image, dtype=np.float64)
        gnd = np.asarray(ground, dtype=np.float64)
        if img.shape != gnd.shape or img.ndim != 2 or img.shape[1] != 2:
            raise GeometryError("calibration needs as many image points as ground points, each (x, y)")
        if len(img) < 4:
            raise GeometryError(f"calibration needs at least 4 point pairs, got {len(img)}")
        if not (np.isfinite(img).all() and np.isfinite(gnd).all()):
            raise GeometryError("calibration points must be finite numbers")
        for name, pts in (("image", img), ("ground", gnd)):
            if not _general_position(pts):
                raise GeometryError(f"the {name} points are degenerate: no 4 of them with no three on a line")
        # OpenCV's fit: normalised DLT, then Levenberg-Marquardt on the reprojection error (all pairs).
        import cv2

        found, _mask = cv2.findHomography(img, gnd, 0)
        if found is None:
            raise GeometryError("the calibration is singular (the points do not define a plane mapping)")
        h = np.asarray(found, dtype=np.float64)
        if abs(np.linalg.det(h)) <= _EPS * abs(h).max() ** 3:
            raise GeometryError("the calibration is singular (the points do not define a plane mapping)")
        h = h / h[2, 2] if abs(h[2, 2]) > _EPS else h
        mapped = _apply(h, img)
        err = float(np.sqrt(((mapped - gnd) ** 2).sum(axis=1).mean()))
        # Orientation: the sign of the mapping's Jacobian where the points are, det(H) / w^3 (the
        # sign of det(H) alone depends on H's arbitrary scale).
        w = float(np.r_[img.mean(axis=0), 1.0] @ h[2])
        return cls(h, err, bool(np.linalg.det(h) * w**3 < 0))

    def to_ground(self, pts: Sequence[Point] | F64) -> F64:
        return _apply(self.matrix, np.asarray(pts, dtype=np.float64).reshape(-1, 2))

    def to_image(self, pts: Sequence[Point] | F64) -> F64:
        inv: F64 = np.asarray(np.linalg.inv(self.matrix), dtype=np.float64)
        return _apply(inv, np.asarray(pts, dtype=np.float64).reshape(-1, 2))


def _apply(h: F64, pts: F64) -> F64:
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    w = p[:, 2:3]
    if (np.abs(w) <= _EPS).any():
        raise GeometryError("a point maps to infinity (it lies on the horizon of the calibration)")
    out: F64 = p[:, :2] / w
    return out


def _general_position(pts: F64) -> bool:
    """Some 4 of the points have no three on a line (what a homography needs)."""
    n = len(pts)
    scale = max(1.0, float(np.abs(pts).max()))

    def collinear(i: int, j: int, k: int) -> bool:
        a, b, c = pts[i], pts[j], pts[k]
        area2 = float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
        return abs(area2) <= 1e-9 * scale * scale

    for quad in itertools.combinations(range(n), 4):
        if not any(collinear(*tri) for tri in itertools.combinations(quad, 3)):
            return True
    return False
