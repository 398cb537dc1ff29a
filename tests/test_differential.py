"""Differential test against the ByteTrack reference on many detection streams (opt-in).

Runs only where ``TRACKCAST_BYTETRACK_REF`` points at a directory holding the reference's
``yolox/tracker`` package (it is not a dependency, so CI skips this); the shared-fixture parity test
always runs. Streams: the shared detections thinned and jittered, degraded TUD ground truth, and
synthetic scenes, each under several parameter sets. Outputs must be identical at 4 decimals.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

import numpy as np
import pytest

from service.media.synthetic import Scene, noisy_detections
from tests.conftest import FIXTURES
from tests.tud import degrade, tud_gt
from tracker import ByteTracker, TrackerConfig
from tracker.mot import iter_frames, read_mot

REF = os.environ.get("TRACKCAST_BYTETRACK_REF")
pytestmark = pytest.mark.skipif(not REF, reason="TRACKCAST_BYTETRACK_REF not set (reference checkout)")

PARAMS = [
    dict(track_thresh=0.5, track_buffer=30, match_thresh=0.8, mot20=False, frame_rate=30),
    dict(track_thresh=0.6, track_buffer=60, match_thresh=0.9, mot20=False, frame_rate=25),
    dict(track_thresh=0.4, track_buffer=30, match_thresh=0.7, mot20=True, frame_rate=30),
    dict(track_thresh=0.3, track_buffer=5, match_thresh=0.95, mot20=False, frame_rate=10),
    dict(track_thresh=0.7, track_buffer=90, match_thresh=0.6, mot20=True, frame_rate=60),
]


def _reference() -> types.ModuleType:
    assert REF
    sys.path.insert(0, REF)
    return importlib.import_module("yolox.tracker.byte_tracker")


def _streams() -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    rng = np.random.default_rng(0)
    for seq in ("pedestrians_720p25", "futsal_broadcast"):
        path = FIXTURES / seq / "det.txt"
        if not path.is_file():
            continue
        frames = [d for _, d in iter_frames(read_mot(path))]
        for k in range(3):
            thinned = []
            for d in frames:
                keep = rng.random(len(d)) > 0.25
                e = d[keep].copy()
                e[:, :4] += rng.normal(0, 2.0, (len(e), 4))
                e[:, 4] = np.clip(e[:, 4] + rng.normal(0, 0.05, len(e)), 0.0, 1.0)
                thinned.append(e[(e[:, 2] > e[:, 0] + 1) & (e[:, 3] > e[:, 1] + 1)])
            out[f"{seq}-thinned{k}"] = thinned
    for name in ("TUD-Campus", "TUD-Stadtmitte"):
        gt = tud_gt(name)
        for seed in range(3):
            out[f"{name}-{seed}"] = [
                d for _, d in iter_frames(degrade(gt, seed, low=0.3, fp_rate=1.0), int(gt[:, 0].max()))
            ]
    for seed in range(3):
        scene = Scene(players=18, seed=seed)
        srng = np.random.default_rng(seed + 100)
        out[f"synthetic-{seed}"] = [
            noisy_detections(scene.step()[1], srng, false_positives=1.0) for _ in range(400)
        ]
    return out


@pytest.mark.parametrize("p", range(len(PARAMS)))
def test_identical_to_reference(p: int) -> None:
    ref_mod = _reference()
    params = PARAMS[p]
    for name, frames in _streams().items():
        ref_mod.BaseTrack._count = 0
        ref = ref_mod.BYTETracker(types.SimpleNamespace(**params), frame_rate=params["frame_rate"])
        ours = ByteTracker(TrackerConfig(**params))  # type: ignore[arg-type]
        for f, d in enumerate(frames, start=1):
            r = ref.update(d.copy(), (1, 1), (1, 1))
            o = ours.update(d)
            want = sorted(
                f"{t.track_id},{t.tlwh[0]:.4f},{t.tlwh[1]:.4f},{t.tlwh[2]:.4f},{t.tlwh[3]:.4f},{t.score:.4f}"
                for t in r
            )
            got = sorted(
                f"{i},{b[0]:.4f},{b[1]:.4f},{b[2]:.4f},{b[3]:.4f},{s:.4f}"
                for i, b, s in zip(o.ids.tolist(), o.tlwh.tolist(), o.scores.tolist(), strict=True)
            )
            assert got == want, f"{name} params {params} frame {f}"
