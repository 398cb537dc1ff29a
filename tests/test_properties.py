"""Property tests: no detections array of the accepted shapes, whatever its values, crashes the tracker."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tracker import ByteTracker, TrackerConfig

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-10, max_value=2000, width=64),
    st.sampled_from([0.0, 0.1, 0.5, 0.6, 1.0, -1.0, 1e308, -1e308, 5e-324]),
)
frames = st.lists(
    st.tuples(st.integers(0, 12), st.sampled_from([5, 6])).flatmap(
        lambda s: arrays(np.float64, s, elements=values)
    ),
    min_size=1,
    max_size=12,
)
configs = st.builds(
    TrackerConfig,
    track_thresh=st.floats(0.05, 0.95),
    track_buffer=st.integers(0, 40),
    match_thresh=st.floats(0.05, 1.0),
    mot20=st.booleans(),
    frame_rate=st.floats(1, 60),
    per_class=st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs, seq=frames, gaps=st.lists(st.integers(1, 50), min_size=12, max_size=12))
def test_any_values_never_crash(cfg: TrackerConfig, seq: list[np.ndarray], gaps: list[int]) -> None:
    t = ByteTracker(cfg)
    index = 0
    for d, gap in zip(seq, gaps, strict=False):
        index += gap
        out = t.update(d, frame_index=index)
        n = len(out)
        assert out.ids.shape == (n,) and out.xyxy.shape == (n, 4) and out.classes.shape == (n,)
        assert len(set(out.ids.tolist())) == n, "IDs are unique within a frame"
        assert out.n_invalid <= len(d)


@settings(max_examples=150, deadline=None)
@given(
    seq=st.lists(
        st.lists(
            st.tuples(
                st.floats(0, 1000), st.floats(0, 600), st.floats(1, 200), st.floats(1, 300), st.floats(0, 1)
            ),
            max_size=15,
        ),
        min_size=1,
        max_size=20,
    )
)
def test_valid_boxes_give_finite_outputs_and_stable_ids(seq: list[list[tuple[float, ...]]]) -> None:
    t = ByteTracker()
    seen_max = 0
    for rows in seq:
        d = np.array([[x, y, x + w, y + h, s] for x, y, w, h, s in rows]).reshape(-1, 5)
        out = t.update(d)
        assert np.isfinite(out.xyxy).all() and np.isfinite(out.scores).all()
        assert out.n_invalid == 0
        if len(out):
            assert out.ids.min() >= 1
            seen_max = max(seen_max, int(out.ids.max()))
    assert seen_max <= sum(len(r) for r in seq)
