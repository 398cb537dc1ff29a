"""Analytics rules (service/rules/analytics.py): config checks, event semantics, ground truth.

Unit tests, no I/O. The ground truth is the synthetic ground-plane scene
(service/media/ground_scene.py): a camera at an angle, people on known paths; the tracker is fed
the scene's boxes (or those boxes jittered) and the analytics' numbers are compared with the
scene's true speeds, path lengths, line crossings and stays.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ConfigError
from service.media.ground_scene import GroundScene
from service.rules.analytics import Analytics, Resolved, parse_analytics

pytestmark = pytest.mark.unit

SQUARE = [[100, 100], [300, 100], [300, 300], [100, 300]]


def engine(raw: dict[str, Any], w: int = 1280, h: int = 720, period: float = 0.04) -> Analytics:
    return Analytics(Resolved.of(parse_analytics(raw), w, h), "cam", since=0.0, frame_period_s=period)


def box_at(x: float, y: float) -> list[float]:
    """A 20x40 box whose bottom centre (the default anchor) is (x, y)."""
    return [x - 10, y - 40, x + 10, y]


def feed(a: Analytics, path: list[tuple[float, float] | None], tid: int = 1, cls: int = 0,
         end_at: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One track along ``path`` (None: not seen that frame), frame i at t = i * 0.04."""
    events = []
    for i, p in enumerate(path, start=1):
        ids, boxes = ([tid], np.array([box_at(*p)])) if p is not None else ([], np.zeros((0, 4)))
        ended = [tid] if end_at == i else []
        _, ev, _ = a.update(i, i * 0.04, ids, boxes, [cls] * len(ids), ended, ts=1000.0 + i)
        events += ev
    return events


# ---------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("raw", "key", "says"),
    [
        ({"zones": [{"id": "z", "points": [[0, 0], [10, 10], [10, 0], [0, 10]]}]}, "zones.0", "intersects itself"),
        ({"zones": [{"id": "z", "points": [[0, 0], [10, 10]]}]}, "zones.0.points", "at least 3"),
        ({"zones": [{"id": "z", "points": SQUARE, "classes": ["unicorn"]}]}, "zones.0.classes", "unknown class"),
        ({"zones": [{"id": "z", "points": [[0, 0], [2, 0], [0, 2]], "relative": True}]}, "zones.0", "within 0-1"),
        ({"zones": [{"id": "a b", "points": SQUARE}]}, "zones.0.id", "letters"),
        ({"zones": [{"id": "z", "points": SQUARE}, {"id": "z", "points": SQUARE}]}, "", "duplicate zone id"),
        ({"lines": [{"id": "l", "points": [[5, 5], [5, 5]]}]}, "lines.0", "two distinct"),
        ({"lines": [{"id": "l", "points": [[0, 0], [9, 9]], "in_side": "up"}]}, "lines.0.in_side", "left"),
        ({"calibration": {"image": [[0, 0], [1, 0], [0, 1]], "ground": [[0, 0], [1, 0], [0, 1]]}},
         "calibration.image", "at least 4"),
        ({"calibration": {"image": [[0, 0], [1, 1], [2, 2], [3, 3]], "ground": [[0, 0], [1, 0], [1, 1], [0, 1]]}},
         "calibration", "degenerate"),
        ({"zone": []}, "zone", "unknown key"),
        ({"speed_window_s": 0}, "speed_window_s", "greater than or equal"),
        ({"anchors": {"person": "feet"}}, "anchors.0", "bottom_center"),
    ],
)  # fmt: skip
def test_bad_analytics_name_the_key(raw: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_analytics(raw)
    msg = str(err.value)
    assert says in msg and (key + ":" in msg or not key), msg


def test_frame_size_checks_name_the_shape() -> None:
    with pytest.raises(
        ConfigError, match=r"zones\.0 \(door\)\.points\.1: \(1500, 100\) is outside the 1280x720"
    ):
        engine({"zones": [{"id": "door", "points": [[100, 100], [1500, 100], [300, 300]]}]})
    # relative coordinates scale with the frame
    a = engine({"zones": [{"id": "z", "points": [[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]], "relative": True}]})
    assert a.r.zones[0].polygon.vertices[2] == (640.0, 360.0)
    # a calibration whose pairs disagree (one ground point wrong by 5 m)
    good = GroundScene().analytics()["calibration"]
    bad = {**good, "ground": [list(g) for g in good["ground"]]}
    bad["ground"][3][0] += 5
    with pytest.raises(ConfigError, match=r"reprojection error .* above max_error_m"):
        engine({"calibration": bad})
    assert engine({"calibration": good}).r.homography is not None


def test_class_names_and_ids() -> None:
    spec = parse_analytics({"zones": [{"id": "z", "points": SQUARE, "classes": ["person", "traffic light", 2]}],
                            "anchors": {"car": "center"}})  # fmt: skip
    assert spec.zones[0].classes == [0, 9, 2] and spec.anchors == {2: "center"}


# ---------------------------------------------------------------------------------------- semantics


def test_zone_enter_exit_dwell_and_loitering_once_per_visit() -> None:
    a = engine({"zones": [{"id": "z", "points": SQUARE, "loiter_s": 0.5}]})
    path = [(50.0, 200.0)] * 2 + [(200.0, 200.0)] * 20 + [(50.0, 200.0)] * 2 + [(200.0, 200.0)] * 3
    ev = feed(a, path)
    kinds = [(e["event"], e["frame"]) for e in ev]
    # in at frame 3, loitering when the dwell first exceeds 0.5 s (frame 3 + 13), out at 23
    assert kinds == [("zone_entered", 3), ("loitering", 16), ("zone_exited", 23), ("zone_entered", 25)]
    assert ev[2]["dwell_s"] == pytest.approx(20 * 0.04) and ev[2]["reason"] == "left"
    assert a.occupancy == [1] and a.entered == [2]


def test_a_track_not_seen_stays_inside_and_ends_lost_with_dwell_to_its_last_sighting() -> None:
    a = engine({"zones": [{"id": "z", "points": SQUARE}]})
    ev = feed(a, [(200.0, 200.0)] * 5 + [None] * 10, end_at=15)
    assert [e["event"] for e in ev] == ["zone_entered", "zone_exited"]
    assert ev[1]["reason"] == "lost" and ev[1]["dwell_s"] == pytest.approx(4 * 0.04) and ev[1]["frame"] == 15
    assert a.occupancy == [0] and not a.tracks


def test_points_on_the_border_are_inside_and_classes_filter() -> None:
    a = engine({"zones": [{"id": "z", "points": SQUARE, "classes": ["car"]}]})
    assert feed(a, [(100.0, 200.0)], cls=0) == []  # a person: not this zone's class
    ev = feed(engine({"zones": [{"id": "z", "points": SQUARE}]}), [(100.0, 200.0), (300.0, 300.0)])
    assert [e["event"] for e in ev] == ["zone_entered"]  # on an edge, then on a vertex: inside


def test_line_direction_as_seen_on_the_image() -> None:
    # a line drawn left to right across the image; seen from its first point, "left" is up
    a = engine({"lines": [{"id": "l", "points": [[0, 400], [1280, 400]], "in_side": "left"}]})
    ev = feed(a, [(600.0, 500.0), (600.0, 300.0), (600.0, 500.0)])
    assert [(e["direction"], e["frame"], e["point"]) for e in ev] == [("in", 2, [600.0, 400.0]),
                                                                      ("out", 3, [600.0, 400.0])]  # fmt: skip
    assert a.counts == [{"in": 1, "out": 1}]


def test_jitter_grazing_gaps_and_the_line_end() -> None:
    a = engine({"lines": [{"id": "l", "points": [[100, 400], [900, 400]], "hysteresis_px": 4}]})
    jitter = [(500.0, 420.0)] + [(500.0, 400.0 + d) for d in (3, -3, 2, -3.9, 3.5, -1)] + [(500.0, 430.0)]
    assert feed(a, jitter) == []  # within the band: nothing, and it stays on its side
    assert feed(a, [(500.0, 420.0), (500.0, 401.0), (500.0, 425.0)], tid=2) == []  # a graze
    # a gap: last seen below, re-found above: the line lies between, counted once
    ev = feed(a, [(500.0, 420.0), None, None, None, (520.0, 360.0)], tid=3)
    assert [e["direction"] for e in ev] == ["in"]
    # round the end of the line: changes side without meeting the segment
    assert feed(a, [(950.0, 420.0), (950.0, 380.0), (700.0, 380.0)], tid=4) == []
    # an exact endpoint counts
    assert [e["line"] for e in feed(a, [(900.0, 420.0), (900.0, 380.0)], tid=5)] == ["l"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-3.99, 3.99), min_size=1, max_size=40), st.booleans())
def test_any_jitter_in_the_band_counts_nothing_and_a_passage_counts_once(
    ys: list[float], cross: bool
) -> None:
    a = engine({"lines": [{"id": "l", "points": [[100, 400], [900, 400]], "hysteresis_px": 4}]})
    path = [(500.0, 450.0)] + [(500.0, 400.0 + y) for y in ys] + [(500.0, 350.0 if cross else 450.0)]
    assert len(feed(a, path)) == int(cross)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-20, 20), st.floats(-20, 20)), min_size=2, max_size=40))
def test_net_crossings_are_the_change_of_side(pts: list[tuple[float, float]]) -> None:
    """Without a band, and with a line every step meets, in minus out is the change of side from
    the first to the last point off the line."""
    a = engine({"lines": [{"id": "l", "points": [[0, 400], [1280, 400]], "hysteresis_px": 0}]})
    path = [(640 + 10 * x, 400 + 10 * y) for x, y in pts]
    feed(a, path)  # type: ignore[arg-type]
    clear = [y for _, y in path if y != 400]
    if len(clear) >= 2:
        first_up, last_up = clear[0] < 400, clear[-1] < 400  # up the image is "in" (left of the line)
        net = a.counts[0]["in"] - a.counts[0]["out"]
        assert net == (0 if first_up == last_up else (1 if last_up else -1))


def test_time_that_goes_back() -> None:
    a = engine({"zones": [{"id": "z", "points": SQUARE}]}, period=0.04)
    for i, t in enumerate([10.0, 10.04, 10.08, 0.0, 0.04], start=1):  # a looping file restarts its pts
        box = np.array([box_at(200, 200) if i < 5 else box_at(50, 50)])
        _, ev, _ = a.update(i, t, [1], box, [0], [], ts=0.0)
    assert a.clock == pytest.approx(0.16)
    assert ev[0]["dwell_s"] == pytest.approx(0.16)
    # timestamps out of order (as in the plaza clip): the clock keeps to the latest, never doubles
    b = engine({}, period=0.04)
    for i, t in enumerate([0.0, 0.08, 0.04, 0.12, 0.2, 0.16, 0.24, None], start=1):
        b.update(i, t, [], np.zeros((0, 4)), [], [], ts=0.0)
    assert b.clock == pytest.approx(0.28 + 2e-3)


def test_a_homography_that_flips_orientation_maps_and_measures_the_same() -> None:
    scene = GroundScene()
    raw = scene.analytics()
    mirrored = {**raw["calibration"], "ground": [[-x, y] for x, y in raw["calibration"]["ground"]]}
    a = engine({"calibration": mirrored})
    b = engine({"calibration": raw["calibration"]})
    assert a.r.homography is not None and b.r.homography is not None
    # image y grows towards the camera, ground y away from it: the scene's own mapping mirrors
    assert b.r.homography.flips_orientation and not a.r.homography.flips_orientation
    ids, boxes, truth = scene.frame(50)
    va, _, _ = a.update(1, 0.0, ids, boxes, [0] * len(ids), [], 0.0)
    for v, pid in zip(va, ids, strict=True):
        assert v["ground"] == pytest.approx([-truth[pid][0], truth[pid][1]], abs=1e-3)


# ---------------------------------------------------------------------------------------- ground truth


def run_scene(jitter: float = 0.0, seed: int = 1) -> dict[str, Any]:
    """The scene's boxes (jittered by up to ``jitter`` px, seeded) through ByteTrack and the analytics."""
    scene = GroundScene()
    rows, events = scene.track_boxes(jitter, seed)
    out = scene.score(rows, events)
    assert sorted(out["owner"].values()) == [p.id for p in scene.people], "one track per person, no switch"
    return {**out, "scene": scene, "events": events}


def test_ground_truth_speed_distance_crossings_and_dwell() -> None:
    out = run_scene()
    scene, owner = out["scene"], out["owner"]
    assert len(out["speed_err"]) > 500
    assert out["median_speed_err"] <= 0.05
    assert len(out["dist_err"]) == len(scene.people)
    for tid, err in out["dist_err"].items():
        assert abs(err) <= 0.03, f"person {owner[tid]}: distance off by {err:.1%}"
    # every crossing counted once, in its direction, within 2 frames of the true one
    assert out["crossings_true"] == out["crossings_counted"] == out["crossings_matched"] >= 5
    assert {d for _, _, d in scene.crossings()} == {"in", "out"}
    assert len(out["dwell_err_s"]) == 1 and out["dwell_err_s"][0] <= 2 / scene.fps
    exits = [e for e in out["events"] if e["event"] == "zone_exited"]
    assert len(exits) == 1 and exits[0]["reason"] == "left"
    (pid, first, _) = scene.visits(12, 16, 16, 20)[0]
    loiter = [e for e in out["events"] if e["event"] == "loitering"]
    assert (
        len(loiter) == 1
        and owner[loiter[0]["id"]] == pid
        and abs(loiter[0]["frame"] - (first + 3 * scene.fps)) <= 2
    )


def _kernels() -> dict[str, list[Any]]:
    """The compiled kernels of the analytics rules and the type signatures compiled so far."""
    from service.rules import analytics, kinematics

    found = {}
    for mod in (analytics, kinematics):
        for name, obj in vars(mod).items():
            if hasattr(obj, "py_func") and hasattr(obj, "signatures"):  # a numba dispatcher
                found[f"{mod.__name__}.{name}"] = list(obj.signatures)
    return found


def test_load_kernels_compiles_every_kernel_a_real_scene_uses() -> None:
    """The service calls ``load_kernels`` at start-up, off the event loop: a kernel (or a type
    signature of one) it missed would be compiled on the loop by the first frame, for seconds."""
    from service.rules.analytics import load_kernels

    load_kernels()
    loaded = _kernels()
    compiled = {name.rsplit(".", 1)[1] for name, sigs in loaded.items() if sigs}
    assert {"_frame_geometry", "_motion_step"} <= compiled  # (kernels they call compile inside them)
    run_scene(jitter=2.0, seed=3)  # zones, a loiter zone, lines, a calibration, tracks that end
    assert _kernels() == loaded


def test_jittered_boxes_speed_within_8_percent() -> None:
    out = run_scene(jitter=2.0, seed=7)
    assert out["median_speed_err"] <= 0.08
    assert out["crossings_true"] == out["crossings_counted"] == out["crossings_matched"]


def test_speed_unknown_until_half_a_window_and_distance_of_a_stand_still() -> None:
    a = engine(GroundScene().analytics(), period=0.04)
    scene = GroundScene()
    ids, boxes, _ = scene.frame(1)
    rng = np.random.default_rng(0)
    speeds, dist = [], 0.0
    for i in range(1, 251):  # ten seconds of standing still, with 2 px of jitter
        v, _, _ = a.update(i, i * 0.04, ids[:1], boxes[:1] + rng.uniform(-2, 2, (1, 4)), [0], [], 0.0)
        speeds.append(v[0]["speed"])
        dist = v[0]["distance"]
    assert speeds[:11] == [None] * 11 and speeds[13] is not None  # known once the window spans 0.5 s
    assert dist < 1.0 and math.isfinite(dist)


def test_a_streams_analytics_from_the_environment_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.config import load_settings

    zone = {"id": "door", "points": SQUARE, "classes": ["person"]}
    monkeypatch.setenv(
        "TRACKCAST_STREAMS", json.dumps([{"id": "cam", "url": "x.mp4", "analytics": {"zones": [zone]}}])
    )
    spec = load_settings(None).streams[0].analytics
    assert spec is not None and spec.zones[0].classes == [0]
    bad = {**zone, "points": [[0, 0], [10, 10], [10, 0], [0, 10]]}
    monkeypatch.setenv(
        "TRACKCAST_STREAMS", json.dumps([{"id": "cam", "url": "x.mp4", "analytics": {"zones": [bad]}}])
    )
    with pytest.raises(ConfigError, match=r"streams\.0\.analytics\.zones\.0: the polygon intersects itself"):
        load_settings(None)


def _kernels() -> dict[str, int]:
    """Every numba kernel the per-frame path runs, with how many specialisations it has."""
    import service.rules.analytics as an
    import service.rules.kinematics as kin
    import tracker._assign as asg
    import tracker._kernels as trk

    return {
        f"{m.__name__}.{name}": len(obj.signatures)
        for m in (an, kin, asg, trk)
        for name, obj in vars(m).items()
        if hasattr(obj, "signatures") and hasattr(obj, "py_func")
    }


def test_the_start_up_warm_up_compiles_everything_a_real_frame_runs() -> None:
    """After start-up's warm-up (service.app.load_kernels: the tracker's and these), frames of
    many tracks, some beyond the calibration's horizon, tracks that end, compile nothing more: a
    new specialisation (an array layout the warm-up never passed) compiles on the event loop,
    seconds with a cold cache, while every stream stalls."""
    from service.rules.analytics import load_kernels
    from tracker import ByteTracker

    ByteTracker().update(np.empty((0, 5)))
    load_kernels()
    before = _kernels()
    assert sum(before.values()) >= 4, before  # (kernels only other kernels call have none of their own)
    # a camera looking down a road: the trapezoid's sides meet above the frame's top third
    a = engine({
        "zones": [{"id": "z", "points": SQUARE, "loiter_s": 0.2}],
        "lines": [{"id": "l", "points": [[640, 0], [640, 720]]}],
        "calibration": {"image": [[560, 300], [720, 300], [1280, 720], [0, 720]],
                        "ground": [[-3, 40], [3, 40], [3, 0], [-3, 0]]},
    })  # fmt: skip
    trk = ByteTracker()
    rng = np.random.default_rng(3)
    low = rng.uniform([100, 450], [1100, 650], (6, 2))  # on the road
    high = rng.uniform([100, 60], [1100, 150], (2, 2))  # above the horizon: no ground point
    step = rng.uniform(-4, 4, (8, 2))
    every = some = 0
    for i in range(1, 60):
        k = 6 if i <= 20 else 8 if i <= 40 else 5  # two come into view above the horizon, three leave
        xy = np.vstack([low, high])[:k] + i * step[:k]
        dets = np.column_stack([xy - [15, 60], xy, np.full(len(xy), 0.9)])
        tracks = trk.update(dets)
        values, _, _ = a.update(i, i * 0.04, tracks.ids.tolist(), tracks.xyxy, tracks.classes.tolist(),
                                tracks.ended_ids.tolist(), 0.0)  # fmt: skip
        missing = sum(v.get("ground") is None for v in values)
        every += len(values) > 1 and missing == 0
        some += 0 < missing < len(values)
    assert every and some  # both paths ran: every track with a ground point, and some without
    assert _kernels() == before
