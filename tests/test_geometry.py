"""Analytics geometry (service/rules/geometry.py): zones, line crossings with hysteresis, calibration.

Unit and property tests, no I/O: concave polygons, points on edges, a line crossed exactly at an
endpoint, a track grazing the line, jitter on the line, degenerate calibrations, a homography that
flips orientation.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.rules.geometry import GeometryError, Homography, Polygon, crossing, side

# An L-shaped (concave) zone: the notch at the top right is outside.
L_SHAPE = Polygon(((0, 0), (4, 0), (4, 2), (2, 2), (2, 4), (0, 4)))


def test_concave_polygon_inside_outside_and_border() -> None:
    assert L_SHAPE.contains((1, 1)) and L_SHAPE.contains((1, 3)) and L_SHAPE.contains((3, 1))
    assert not L_SHAPE.contains((3, 3))  # the notch
    assert not L_SHAPE.contains((5, 1)) and not L_SHAPE.contains((-0.1, 2))
    for on_border in ((0, 2), (4, 1), (3, 2), (2, 3), (2, 2), (0, 0), (4, 0)):
        assert L_SHAPE.contains(on_border), on_border


def test_bad_polygons_say_why() -> None:
    with pytest.raises(GeometryError, match="at least 3"):
        Polygon(((0, 0), (1, 1)))
    with pytest.raises(GeometryError, match="no area"):
        Polygon(((0, 0), (1, 1), (2, 2)))
    with pytest.raises(GeometryError, match="intersects itself"):
        Polygon(((0, 0), (2, 2), (2, 0), (0, 2)))  # a bow tie
    with pytest.raises(GeometryError, match="finite"):
        Polygon(((0, 0), (1, float("nan")), (1, 0)))


def test_sides_and_crossings() -> None:
    a, b = (0.0, 0.0), (10.0, 0.0)  # left is y > 0
    assert side(a, b, (5, 1)) == "left" and side(a, b, (5, -1)) == "right" and side(a, b, (5, 0)) == "on"
    assert crossing((5, -1), (5, 1), a, b) == "in"
    assert crossing((5, 1), (5, -1), a, b) == "out"
    assert crossing((11, -1), (11, 1), a, b) is None  # beyond the end
    assert crossing((10, -1), (10, 1), a, b) == "in"  # exactly through an endpoint counts
    assert crossing((5, -1), (5, 0), a, b) is None  # touching is not crossing
    assert crossing((1, 0), (9, 0), a, b) is None  # along the line


# A camera looking down at a pitch at an angle: ground metres -> image pixels through a known H.
H_TRUE = np.array([[38.0, -12.0, 640.0], [2.0, 9.0, 300.0], [0.0, -0.012, 1.0]])


def _project(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


def test_calibration_recovers_a_known_homography() -> None:
    ground = np.array([[0, 0], [20, 0], [20, 10], [0, 10], [10, 5], [5, 8]], float)
    image = _project(H_TRUE, ground)
    h = Homography.fit(image.tolist(), ground.tolist())
    assert h.reprojection_error_m < 1e-6
    probe = np.array([[3.3, 7.7], [18, 1], [12.5, 4.0]])
    np.testing.assert_allclose(h.to_ground(_project(H_TRUE, probe)), probe, atol=1e-6)
    np.testing.assert_allclose(h.to_image(probe), _project(H_TRUE, probe), atol=1e-4)
    # 1 px of noise on the image points: an error of centimetres, reported
    rng = np.random.default_rng(0)
    noisy = Homography.fit((image + rng.normal(0, 1.0, image.shape)).tolist(), ground.tolist())
    assert 0.001 < noisy.reprojection_error_m < 0.2


def test_degenerate_calibrations_are_clear_errors() -> None:
    with pytest.raises(GeometryError, match="at least 4"):
        Homography.fit([(0, 0), (1, 0), (0, 1)], [(0, 0), (1, 0), (0, 1)])
    with pytest.raises(GeometryError, match="degenerate"):
        Homography.fit([(0, 0), (1, 1), (2, 2), (3, 3)], [(0, 0), (1, 0), (1, 1), (0, 1)])
    with pytest.raises(GeometryError, match="as many"):
        Homography.fit([(0, 0), (1, 0), (1, 1), (0, 1)], [(0, 0), (1, 0), (1, 1)])


def test_a_mirroring_calibration_is_recognised_and_keeps_crossing_directions_in_the_image() -> None:
    ground = [(0, 0), (10, 0), (10, 10), (0, 10)]
    image = [(0, 0), (0, 10), (10, 10), (10, 0)]  # x and y swapped: a mirror
    h = Homography.fit(image, ground)
    assert h.flips_orientation and h.reprojection_error_m < 1e-9
    assert not Homography.fit(ground, ground).flips_orientation


# ---------------------------------------------------------------------- ground motion
from service.rules.kinematics import Kinematics  # noqa: E402


def _run(path: list[tuple[float, float, float]], **kw: float) -> tuple[Kinematics, list]:  # type: ignore[type-arg]
    k = Kinematics(**kw)
    return k, [k.update(t, x, y) for t, x, y in path]


def test_steady_run_speed_and_distance_exact() -> None:
    fps, v = 25.0, 5.0  # 5 m/s along a diagonal
    path = [(i / fps, 3 + 0.6 * v * i / fps, 1 + 0.8 * v * i / fps) for i in range(100)]
    k, out = _run(path)
    assert all(m.speed_mps is None for m in out[:13])  # the window spans half a second from frame 13
    assert all(abs(m.speed_mps - v) < 1e-9 for m in out[13:])  # type: ignore[operator]
    assert k.distance_m == pytest.approx(v * 99 / fps, rel=1e-9)


def test_jittered_positions_speed_within_a_few_percent_and_no_distance_from_jitter() -> None:
    """5 cm of seeded noise on the anchor (about 2 px at 2.5 cm/px): steady-run speed within 8%
    (median error), distance within 3%; a person standing still does not walk."""
    rng = np.random.default_rng(7)
    fps, v = 25.0, 4.0
    t = np.arange(250) / fps
    x, y = v * t + rng.normal(0, 0.05, t.size), rng.normal(0, 0.05, t.size)
    k, out = _run(list(zip(t.tolist(), x.tolist(), y.tolist(), strict=True)))
    errs = [abs(m.speed_mps - v) / v for m in out[25:]]  # type: ignore[operator]
    assert float(np.median(errs)) < 0.08, np.median(errs)
    assert k.distance_m == pytest.approx(v * t[-1], rel=0.03)
    still, _ = _run([(float(ti), float(xi), float(yi)) for ti, xi, yi in
                     zip(t, rng.normal(0, 0.05, t.size), rng.normal(0, 0.05, t.size), strict=True)])  # fmt: skip
    assert still.distance_m < 1.0  # raw steps would add up to about 22 m over these 10 s


def test_a_stop_brings_the_speed_to_zero_and_a_gap_starts_a_new_window() -> None:
    path = [(i / 25, i / 25 * 3.0, 0.0) for i in range(50)] + [(2 + i / 25, 6.0, 0.0) for i in range(50)]
    k, out = _run(path)
    assert out[-1].speed_mps == pytest.approx(0.0, abs=1e-9)
    assert k.max_speed_mps == pytest.approx(3.0, rel=1e-6)
    k2 = Kinematics(max_gap_s=0.5)
    for i in range(20):
        k2.update(i / 25, 0.0, 0.0)
    m = k2.update(3.0, 10.0, 0.0)  # re-found 3 s later, 10 m away
    assert m.speed_mps is None and m.distance_m == pytest.approx(10.0, rel=1e-6)
    with pytest.raises(ValueError, match="time must increase"):
        k2.update(3.0, 0, 0)
