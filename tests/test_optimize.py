"""``trackcast model optimize``: an ORT-optimised and an INT8 model, measured against the float one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, run_trackcast

MODEL = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
PED = SHARED_DATA / "video" / "pedestrians_720p25.mp4"
FUTSAL = SHARED_DATA / "video" / "futsal_broadcast_720x1280p30.mp4"
pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not MODEL.is_file(), reason=f"../shared is absent (looked for {MODEL})")]  # fmt: skip


def test_int8_model_is_smaller_loads_and_agrees_with_float(tmp_path: Path) -> None:
    res = run_trackcast("model", "optimize", str(MODEL), "--calibrate", str(PED), str(FUTSAL), "--out", str(tmp_path),
                        "--calibration-frames", "12", "--eval-frames", "24", "--repeats", "2", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert Path(rep["int8"]).is_file() and Path(rep["optimized"]).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "yolox_nano_416x416.int8.onnx",
        "yolox_nano_416x416.opt.onnx",
    ]
    assert rep["sizes_mb"]["int8"] < 0.5 * rep["sizes_mb"]["float"]
    assert set(rep["ms_per_frame"]["float"]) == set(rep["ms_per_frame"]["int8"]) == {"1", "4"}
    # INT8 must find what float finds (a broken quantisation scores near 0 here)
    assert rep["ap"]["AP50"] > 0.6, rep["ap"]
    assert rep["tracking"]["pedestrians_720p25.mp4"]["MOTA"] > 0.6, rep["tracking"]
    assert rep["eval_frames"] == 48 and rep["calibration_frames"] == 12
    # the INT8 model runs where the float one does: trackcast track takes it
    out = tmp_path / "t.txt"
    res = run_trackcast(
        "track", str(PED), "--model", rep["int8"], "--max-frames", "20", "--out", str(out), "--no-progress"
    )
    assert res.returncode == 0, res.stderr
    assert len(out.read_text().split()) > 100


def test_bad_inputs(tmp_path: Path) -> None:
    res = run_trackcast("model", "optimize", str(tmp_path / "none.onnx"), "--calibrate", str(PED))
    assert res.returncode == 2 and "none.onnx: no such file" in res.stderr and "Traceback" not in res.stderr
    res = run_trackcast(
        "model", "optimize", str(MODEL), "--calibrate", str(tmp_path / "none.mp4"), "--out", str(tmp_path)
    )
    assert res.returncode == 2 and "none.mp4" in res.stderr and "Traceback" not in res.stderr, res.stderr
