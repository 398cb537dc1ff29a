"""Acceptance: `trackcast track-dets` reproduces the ByteTrack reference on every shared fixture."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, SEQUENCES, SHARED_DATA, run_trackcast

CASES = [
    (seq, name)
    for seq in SEQUENCES
    for name in sorted(json.loads((FIXTURES / seq / "meta.json").read_text())["params"])
]


def _by_frame(path: Path) -> dict[int, dict[int, np.ndarray]]:
    rows: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    for line in path.read_text().split():
        v = line.split(",")
        assert len(v) == 10, f"{path}: expected 10 columns, got {line!r}"
        assert v[7:] == ["-1", "-1", "-1"]
        assert all(len(x.split(".")[1]) == 4 for x in v[2:7]), f"not 4 decimals: {line!r}"
        rows[int(v[0])][int(v[1])] = np.array([float(x) for x in v[2:7]])
    return rows


def test_fixtures_present_or_skip() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared is absent (looked for {SHARED_DATA})")
    assert CASES, f"no fixtures found under {FIXTURES}"


@pytest.mark.shared
@pytest.mark.parametrize(("seq", "params"), CASES, ids=[f"{s}-{p}" for s, p in CASES])
def test_track_dets_matches_reference(seq: str, params: str, tmp_path: Path) -> None:
    meta = json.loads((FIXTURES / seq / "meta.json").read_text())
    p = meta["params"][params]
    out = tmp_path / "out.txt"
    args = [
        "track-dets", str(FIXTURES / seq / "det.txt"), "--out", str(out),
        "--track-thresh", str(p["track_thresh"]), "--track-buffer", str(p["track_buffer"]),
        "--match-thresh", str(p["match_thresh"]), "--frame-rate", str(p["frame_rate"]),
    ]  # fmt: skip
    if p["mot20"]:
        args.append("--mot20")
    res = run_trackcast(*args)
    assert res.returncode == 0, res.stderr
    ours = _by_frame(out)
    ref = _by_frame(FIXTURES / seq / f"ref_{params}.txt")
    assert sorted(ours) == sorted(ref), "frames with tracks differ"
    for frame, ref_tracks in ref.items():
        assert sorted(ours[frame]) == sorted(ref_tracks), f"frame {frame}: track IDs differ"
        for tid, ref_row in ref_tracks.items():
            diff = np.abs(ours[frame][tid] - ref_row)
            assert diff[:4].max() <= 0.01 + 1e-9, (
                f"frame {frame} id {tid}: box {ours[frame][tid]} vs {ref_row}"
            )
            assert diff[4] <= 1e-4 + 1e-9, f"frame {frame} id {tid}: score differs"
