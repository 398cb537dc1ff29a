"""`make bench`'s tracker benchmark runs and prints its table (figures are for people, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT


@pytest.mark.shared
def test_bench_prints_table(tmp_path: Path, shared_data: Path) -> None:
    det = FIXTURES / "pedestrians_720p25" / "det.txt"
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, "-m", "loadtest.bench_tracker", "--det", str(det), "--repeats", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "trackcast (numba, exact)" in res.stdout
    fig = json.loads(out.read_text())
    assert fig["frames"] == 341
    assert 25 < fig["dets_per_frame"][0] < 40 and 3 * 25 < fig["dets_per_frame"][1] < 3 * 40
    ours = fig["ms_per_frame"]["trackcast"]
    assert ours["31"] > 0 and ours["94"] > 0


def test_bench_says_when_detections_are_missing(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "loadtest.bench_tracker", "--det", str(tmp_path / "none.txt")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 2 and "detections not found" in res.stderr


@pytest.mark.shared
def test_detector_bench_prints_table(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "det.json"
    res = subprocess.run(
        [sys.executable, "-m", "loadtest.bench_detector", "--repeats", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    fig = json.loads(out.read_text())
    assert fig["batch_mode"] == "batched"
    assert set(fig["infer_ms_per_frame"]) == {"1", "2", "4", "8"}
    assert fig["wire"]["raw"]["bytes_per_frame"] > 416 * 416 * 3
    assert fig["wire"]["jpeg"]["bytes_per_frame"] < fig["wire"]["raw"]["bytes_per_frame"]
    assert "batch" in res.stdout and "wire encoding" in res.stdout


@pytest.mark.shared
@pytest.mark.serial
def test_service_bench_prints_ratio_and_latency(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "svc.json"
    res = subprocess.run(
        [sys.executable, "-m", "loadtest.bench_service", "--streams", "2", "--seconds", "1", "--rounds", "2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    fig = json.loads(out.read_text())
    assert fig["service_fps"] > 0 and fig["plain_decode_fps"] > 0 and fig["ratio"] > 0
    # every service run sits between two plain decodes, and its ratio is to their mean
    rounds = fig["rounds"]
    assert len(rounds) == 2 and len(fig["plain_decode_runs"]) == 5
    assert rounds[1]["plain_before"] == rounds[0]["plain_after"]
    for r in rounds:
        assert r["plain_fps"] == pytest.approx((r["plain_before"] + r["plain_mid"]) / 2)
        assert r["plain_fps_analytics"] == pytest.approx((r["plain_mid"] + r["plain_after"]) / 2)
    assert fig["ratio"] == pytest.approx(sum(r["service_fps"] / r["plain_fps"] for r in rounds) / 2)
    assert fig["ratio_to_plain_before"] == pytest.approx(
        sum(r["service_fps"] / r["plain_before"] for r in rounds) / 2
    )
    assert fig["plain_decode_paired"].endswith("service settings")
    assert fig["live_frames"] > 20 and fig["added_latency_ms"]["p50"] > 0
    assert "ratio service / plain decode" in res.stdout
    assert fig["ratio_analytics"] == pytest.approx(
        sum(r["analytics_fps"] / r["plain_fps_analytics"] for r in rounds) / 2
    )
    assert "with analytics on every stream" in res.stdout


def test_analytics_bench_prints_cost_and_ground_truth(tmp_path: Path) -> None:
    out = tmp_path / "an.json"
    res = subprocess.run(
        [sys.executable, "-m", "loadtest.bench_analytics", "--frames", "60", "--no-motion", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    fig = json.loads(out.read_text())
    assert (
        25 <= fig["cost"]["30"]["tracks_per_frame"] <= 31
        and 90 <= fig["cost"]["100"]["tracks_per_frame"] <= 101
    )
    assert fig["cost"]["30"]["analytics_us_per_track"] > 0
    truth = fig["truth"]["rendered boxes"]
    assert truth["crossings_matched"] == truth["crossings_true"] > 0
    assert "us/track" in res.stdout and "boxes +-2 px" in res.stdout
