"""CLI behaviour on bad input: a clear message naming what is wrong, exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_trackcast


def test_missing_det_file(tmp_path: Path) -> None:
    res = run_trackcast("track-dets", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o.txt"))
    assert res.returncode == 2
    assert "nope.txt" in res.stderr and "cannot read" in res.stderr
    assert "Traceback" not in res.stderr


def test_malformed_det_line_names_file_and_line(tmp_path: Path) -> None:
    det = tmp_path / "det.txt"
    det.write_text("1,-1,10,10,20,40,0.9,-1,-1,-1\n2,-1,10,abc,20,40,0.9,-1,-1,-1\n")
    res = run_trackcast("track-dets", str(det), "--out", str(tmp_path / "o.txt"))
    assert res.returncode == 2
    assert f"{det}:2:" in res.stderr and "Traceback" not in res.stderr


def test_zero_frame_rejected(tmp_path: Path) -> None:
    det = tmp_path / "det.txt"
    det.write_text("0,-1,10,10,20,40,0.9,-1,-1,-1\n")
    res = run_trackcast("track-dets", str(det), "--out", str(tmp_path / "o.txt"))
    assert res.returncode == 2 and "frame must be an integer from 1 to" in res.stderr


def test_bad_tracker_parameter_names_it(tmp_path: Path) -> None:
    det = tmp_path / "det.txt"
    det.write_text("1,-1,10,10,20,40,0.9,-1,-1,-1\n")
    res = run_trackcast("track-dets", str(det), "--out", str(tmp_path / "o.txt"), "--track-thresh", "1.7")
    assert res.returncode == 2 and "track_thresh=1.7" in res.stderr


def test_track_dets_writes_mot_rows_and_counts_invalid(tmp_path: Path) -> None:
    det = tmp_path / "det.txt"
    det.write_text(
        "1,-1,10,10,20,40,0.9,-1,-1,-1\n1,-1,100,10,-5,40,0.9,-1,-1,-1\n"
        "2,-1,11,10,20,40,0.8,-1,-1,-1\n4,-1,13,10,20,40,0.8,-1,-1,-1\n"
    )
    out = tmp_path / "o.txt"
    res = run_trackcast("track-dets", str(det), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "dropped 1 detections" in res.stderr
    lines = out.read_text().split()
    assert [ln.split(",")[:2] for ln in lines] == [["1", "1"], ["2", "1"], ["4", "1"]]
    assert lines[0] == "1,1,10.0000,10.0000,20.0000,40.0000,0.9000,-1,-1,-1"


def test_non_finite_or_huge_frame_numbers_rejected(tmp_path: Path) -> None:
    """NaN, inf or 1e12 in the frame column: a message naming the line, not a crash or a 7 TiB
    allocation (a frame number indexes per-frame arrays)."""
    for bad in ("nan", "inf", "1e12"):
        det = tmp_path / "det.txt"
        det.write_text(f"1,-1,10,10,20,40,0.9,-1,-1,-1\n{bad},-1,10,10,20,40,0.9,-1,-1,-1\n")
        res = run_trackcast("track-dets", str(det), "--out", str(tmp_path / "o.txt"), timeout=60)
        assert res.returncode == 2, (bad, res.stderr)
        assert f"{det}:2: frame must be an integer from 1 to 10000000, got {bad}" in res.stderr
        assert "Traceback" not in res.stderr


def test_track_into_an_unwritable_place_fails_before_the_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = run_trackcast("track-dets", str(tmp_path / "det.txt"), "--out", str(blocker / "o.txt"))
    assert res.returncode == 2 and f"cannot write {blocker / 'o.txt'}" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_a_truncated_video_says_it_ended_early(tmp_path: Path, shared_data: Path) -> None:
    """The frames that could be read are tracked and written; the exit status and message say the
    file ended early (before, it exited 0 as if the video were complete)."""
    import subprocess

    whole = tmp_path / "whole.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(shared_data / "video" / "pedestrians_720p25.mp4"),
                    "-t", "4", "-c", "copy", "-movflags", "+faststart", str(whole)], check=True)  # fmt: skip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "tracks.txt"
    model = shared_data / "models" / "yolox_nano_416x416.onnx"
    res = run_trackcast("track", str(cut), "--model", str(model), "--out", str(out), "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "ended early" in res.stderr and "of its 100 frames decoded" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    frames = {int(line.split(",")[0]) for line in out.read_text().splitlines()}
    assert 10 < max(frames) < 100
    whole_res = run_trackcast("track", str(whole), "--model", str(model), "--out", str(out), "--no-progress")
    assert whole_res.returncode == 0, whole_res.stderr
