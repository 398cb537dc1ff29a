"""Behaviour of ByteTracker as a service uses it: IDs, lost/re-found, gaps, bad input, memory."""

from __future__ import annotations

import numpy as np
import pytest

from service.media.synthetic import Scene, noisy_detections
from tracker import ByteTracker, DetectionsError, FrameOrderError, TrackerConfig, TrackerConfigError


def box(
    x: float, y: float = 100.0, w: float = 40.0, h: float = 100.0, s: float = 0.9, c: float | None = None
) -> list[float]:
    row = [x, y, x + w, y + h, s]
    return row if c is None else [*row, c]


def test_new_track_confirmed_on_first_frame_then_needs_two_frames() -> None:
    t = ByteTracker()
    assert t.update(np.array([box(0)])).ids.tolist() == [1]
    out = t.update(np.array([box(2), box(500)]))
    assert out.ids.tolist() == [1], "a track born after frame 1 is unconfirmed for one frame"
    out = t.update(np.array([box(4), box(502)]))
    assert sorted(out.ids.tolist()) == [1, 2]


def test_score_thresholds_of_the_reference() -> None:
    cfg = TrackerConfig(track_thresh=0.5)
    # 0.55 is a high detection but below track_thresh + 0.1: it starts nothing
    t = ByteTracker(cfg)
    assert len(t.update(np.array([box(0, s=0.55)]))) == 0
    assert len(t.update(np.array([box(0, s=0.55)]))) == 0
    assert ByteTracker(cfg).update(np.array([box(0, s=0.6)])).ids.tolist() == [1]


def test_low_score_detection_keeps_a_track_alive() -> None:
    t = ByteTracker()
    for i in range(3):
        t.update(np.array([box(3.0 * i)]))
    out = t.update(np.array([box(9.0, s=0.3)]))  # occluded: low score, second association
    assert out.ids.tolist() == [1]
    assert out.scores.tolist() == [0.3]


def test_lost_and_refound_within_buffer_keeps_id_beyond_buffer_gets_new_id() -> None:
    cfg = TrackerConfig(track_buffer=10, frame_rate=30)
    t = ByteTracker(cfg)
    for _ in range(5):
        t.update(np.array([box(100)]))
    ended: list[int] = []
    for _ in range(8):  # gone for 8 frames (< 10)
        out = t.update(np.empty((0, 5)))
        assert len(out) == 0
        ended += out.ended_ids.tolist()
    assert t.update(np.array([box(100)])).ids.tolist() == [1]
    for _ in range(12):  # gone for 12 frames (> 10): removed
        ended += t.update(np.empty((0, 5))).ended_ids.tolist()
    assert ended == [1], "the ended event comes once, when the track can no longer return"
    t.update(np.array([box(100)]))
    assert t.update(np.array([box(100)])).ids.tolist() == [2]


def test_ids_are_per_tracker_instance() -> None:
    a, b = ByteTracker(), ByteTracker()
    for i in range(3):
        ia = a.update(np.array([box(10 + i), box(300 + i)])).ids.tolist()
        ib = b.update(np.array([box(600 + i)])).ids.tolist()
    assert sorted(ia) == [1, 2]
    assert ib == [1]


def test_caller_array_is_not_modified() -> None:
    dets = np.array([box(0), box(200, s=0.3), [np.nan, 0, 1, 1, 0.9]])
    before = dets.copy()
    t = ByteTracker()
    t.update(dets)
    t.update(dets)
    np.testing.assert_array_equal(dets, before)


def test_invalid_rows_are_dropped_and_counted() -> None:
    t = ByteTracker()
    dets = np.array(
        [
            box(0),
            [np.nan, 0, 10, 10, 0.9],
            [0, 0, np.inf, 10, 0.9],
            [50, 50, 40, 80, 0.9],  # x2 < x1
            [50, 50, 90, 50, 0.9],  # zero height
            [0, 0, 10, 10, np.nan],
        ]
    )
    out = t.update(dets)
    assert out.n_invalid == 5 and t.invalid_total == 5
    assert out.ids.tolist() == [1]


def test_rows_beyond_the_limits_are_dropped_and_any_array_layout_tracks_alike() -> None:
    rows = [
        box(0),
        box(300, s=0.8),
        [0, 0, 2e6, 10, 0.9, 0],
        [0, 0, 10, 10, 0.9, 2.0**63],
        [5, 5, 5.0005, 40, 0.9, 0],
    ]
    dets = np.array([[*r, 0] if len(r) == 5 else r for r in rows], dtype=np.float64)
    ro = dets.copy()
    ro.setflags(write=False)
    layouts = {"C": dets, "read-only": ro, "Fortran": np.asfortranarray(dets), "list": dets.tolist(),
               "float32": dets.astype(np.float32), "strided": np.repeat(dets, 2, axis=0)[::2]}  # fmt: skip
    seen = {}
    for name, d in layouts.items():
        t = ByteTracker()
        out = t.update(d)
        seen[name] = (out.ids.tolist(), out.xyxy.round(3).tolist(), out.n_invalid)
    assert seen["C"][2] == 3 and seen["C"][0] == [1, 2]
    assert all(v == seen["C"] for v in seen.values()), seen


@pytest.mark.parametrize(
    "bad", [np.zeros((3, 4)), np.zeros((2, 7)), np.zeros((2, 3, 5)), "boxes", [[1, 2, "x", 4, 5]]]
)
def test_wrong_shape_raises_a_clear_error(bad: object) -> None:
    with pytest.raises(DetectionsError, match=r"\[N,5\]"):
        ByteTracker().update(bad)  # type: ignore[arg-type]


def test_empty_inputs() -> None:
    t = ByteTracker()
    for empty in (np.empty((0, 5)), np.empty((0, 6)), [], np.empty(0)):
        assert len(t.update(empty)) == 0


def test_classes_are_carried_and_per_class_association() -> None:
    t = ByteTracker()
    out = t.update(np.array([box(0, c=2), box(300, c=7)]))
    assert dict(zip(out.ids.tolist(), out.classes.tolist(), strict=True)) == {1: 2, 2: 7}
    # Without per_class a same-place box of another class continues the track...
    out = t.update(np.array([box(1, c=3), box(301, c=7)]))
    assert dict(zip(out.ids.tolist(), out.classes.tolist(), strict=True)) == {1: 3, 2: 7}
    # ...with per_class it does not.
    pc = ByteTracker(TrackerConfig(per_class=True))
    pc.update(np.array([box(0, c=2)]))
    pc.update(np.array([box(1, c=3)]))
    out = pc.update(np.array([box(2, c=3)]))
    assert out.ids.tolist() == [2] and out.classes.tolist() == [3]


def test_output_arrays_agree() -> None:
    t = ByteTracker()
    t.update(np.array([box(10, w=30, h=90)]))
    out = t.update(np.array([box(12, w=30, h=90)]))
    np.testing.assert_allclose(out.xyxy[:, :2], out.tlwh[:, :2])
    np.testing.assert_allclose(out.xyxy[:, 2:] - out.xyxy[:, :2], out.tlwh[:, 2:])
    assert out.ids.dtype == np.int64 and out.classes.dtype == np.int64


def test_frame_index_must_increase() -> None:
    t = ByteTracker()
    t.update(np.array([box(0)]), frame_index=10)
    with pytest.raises(FrameOrderError, match="strictly in frame order"):
        t.update(np.array([box(0)]), frame_index=10)
    with pytest.raises(FrameOrderError):
        t.update(np.array([box(0)]), frame_index=3)


def test_gap_advances_the_motion_model() -> None:
    """A player running at 12 px/frame is picked up again after 5 dropped frames."""

    def run(skip_indices: bool) -> list[int]:
        t = ByteTracker()
        for f in range(1, 21):
            t.update(np.array([box(12.0 * f, w=30)]), frame_index=f)
        f = 26  # frames 21..25 were dropped by the service; the player kept running
        out = t.update(np.array([box(12.0 * f, w=30)]), frame_index=f if skip_indices else 21)
        return out.ids.tolist()

    assert run(skip_indices=True) == [1]
    # Told it was the next frame, the tracker predicts one step only and loses the player.
    assert run(skip_indices=False) == []


def test_gap_counts_toward_the_lost_buffer_like_empty_frames() -> None:
    """The second player (ID 2) leaves at frame 11; frames 12..17 are either empty or never delivered (a gap).

    Either way the lost track ends at the same frame: the buffer counts frames, not calls.
    """
    cfg = TrackerConfig(track_buffer=20)

    def run(with_gap: bool) -> tuple[list[tuple[int, int]], list[int]]:
        t = ByteTracker(cfg)
        ended: list[tuple[int, int]] = []
        frames = [f for f in range(1, 60) if not (with_gap and 12 <= f <= 17)]
        out = None
        for f in frames:
            dets = [box(400 + 3.0 * f)] + ([box(5.0 * f)] if f <= 10 else [])
            out = t.update(np.array(dets), frame_index=f)
            ended += [(f, i) for i in out.ended_ids.tolist()]
        assert out is not None
        return ended, out.ids.tolist()

    gap, empty = run(True), run(False)
    # last seen at 10, lost for > 20 frames at 31, gone from the lists (and reported) at 32
    assert gap == empty == ([(32, 2)], [1])


def test_gap_longer_than_buffer_ends_all_tracks_and_restarts() -> None:
    t = ByteTracker(TrackerConfig(track_buffer=30, frame_rate=30))
    for f in range(1, 6):
        t.update(np.array([box(100), box(400)]), frame_index=f)
    out = t.update(np.array([box(100)]), frame_index=5 + 32)
    assert sorted(out.ended_ids.tolist()) == [1, 2]
    assert out.ids.tolist() == [3], "restarted: confirmed at once, IDs keep counting"


def test_memory_is_bounded_on_a_long_run_with_churn() -> None:
    """Players come and go for 6000 frames: state rows stay at the peak number of live tracks."""
    rng = np.random.default_rng(3)
    t = ByteTracker(TrackerConfig(track_buffer=30))
    caps = []
    ids_seen: set[int] = set()
    for f in range(1, 6001):
        n = 8 + int(6 * np.sin(f / 50))
        xs = (np.arange(n) * 120 + (f // 40) * 37) % 1200  # identities reshuffle every 40 frames
        dets = np.array([box(float(x) + rng.normal(0, 1)) for x in xs])
        out = t.update(dets, frame_index=f)
        ids_seen.update(out.ids.tolist())
        caps.append(t.capacity)
    assert len(ids_seen) > 500, "the scenario must create many tracks"
    assert t.live_tracks < 60
    assert caps[-1] == caps[1000] <= 128, "state storage stopped growing once warm"


def test_synthetic_scene_identities_are_recovered() -> None:
    scene = Scene(players=10, seed=1)
    rng = np.random.default_rng(2)
    t = ByteTracker(TrackerConfig(frame_rate=25))
    for f in range(1, 301):
        _, boxes = scene.step()
        out = t.update(noisy_detections(boxes, rng), frame_index=f)
    assert 8 <= len(out) <= 11
    assert out.ids.max() < 40, "identities are kept, not re-created every few frames"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"track_thresh": 1.5}, "track_thresh"),
        ({"track_thresh": float("nan")}, "track_thresh"),
        ({"track_buffer": -1}, "track_buffer"),
        ({"track_buffer": 2.5}, "track_buffer"),
        ({"match_thresh": 0}, "match_thresh"),
        ({"frame_rate": 0}, "frame_rate"),
        ({"mot20": "yes"}, "mot20"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(TrackerConfigError, match=field):
        TrackerConfig(**kwargs)  # type: ignore[arg-type]
