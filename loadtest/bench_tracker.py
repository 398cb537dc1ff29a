"""Tracker benchmark (`make bench`): ms/frame of trackcast's BYTE tracker next to its peers.

Input: the shared pedestrian detections (YOLOX-nano, ~31 per frame) and the same detections tiled
three times side by side in a 3x wider frame (~94 per frame). Every tracker runs over the same
frames in the same process; repeats are interleaved so machine noise hits all of them alike, and
the best repeat is reported. Peers are measured when installed:

- visiontrack-cpp (C++), ioutrack-rs (Rust), trackers (Roboflow, Python): ``pip install`` them;
- the ByteTrack reference itself when ``TRACKCAST_BYTETRACK_REF`` points at a directory holding its
  ``yolox/tracker`` package (with ``lap`` and ``cython_bbox`` installed; not a dependency).

Usage: ``python -m loadtest.bench_tracker [--repeats 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tracker import ByteTracker, TrackerConfig
from tracker.mot import iter_frames, read_mot

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DET = (
    ROOT.parent / "shared" / "data" / "fixtures" / "bytetrack_reference" / "pedestrians_720p25" / "det.txt"
)
FRAME_W = 1280.0

Frames = list[np.ndarray]
#: A runner takes the frames and returns a callable that tracks all of them once on a fresh tracker.
Runner = Callable[[Frames], Callable[[], None]]


def load_frames(det_path: Path) -> tuple[Frames, Frames]:
    frames = [d for _, d in iter_frames(read_mot(det_path))]
    tiled = []
    for d in frames:
        parts = []
        for k in range(3):
            e = d.copy()
            e[:, [0, 2]] += FRAME_W * k
            parts.append(e)
        tiled.append(np.concatenate(parts))
    return frames, tiled


def run_trackcast(frames: Frames) -> Callable[[], None]:
    def go() -> None:
        t = ByteTracker(TrackerConfig())
        for d in frames:
            t.update(d)

    return go


def run_reference(frames: Frames) -> Callable[[], None]:
    path = os.environ["TRACKCAST_BYTETRACK_REF"]
    sys.path.insert(0, path)
    mod = importlib.import_module("yolox.tracker.byte_tracker")
    args = types.SimpleNamespace(track_thresh=0.5, track_buffer=30, match_thresh=0.8, mot20=False)
    copies = [d.copy() for d in frames]  # the reference divides its input in place

    def go() -> None:
        t = mod.BYTETracker(args, frame_rate=30)
        for d in copies:
            t.update(d, (1, 1), (1, 1))

    return go


def run_visiontrack(frames: Frames) -> Callable[[], None]:
    import visiontrack_cpp as vt

    split = [(np.ascontiguousarray(d[:, :4]), np.ascontiguousarray(d[:, 4])) for d in frames]

    def go() -> None:
        t = vt.ByteTracker(vt.TrackerConfig())
        for boxes, scores in split:
            t.update(boxes, scores)

    return go


def run_ioutrack(frames: Frames) -> Callable[[], None]:
    import ioutrack

    def go() -> None:
        t = ioutrack.ByteTrack()
        for d in frames:
            t.update(d, return_all=False)

    return go


def run_roboflow(frames: Frames) -> Callable[[], None]:
    import supervision as sv
    import trackers

    dets = [sv.Detections(xyxy=d[:, :4].copy(), confidence=d[:, 4].copy()) for d in frames]

    def go() -> None:
        t = trackers.ByteTrackTracker()
        for d in dets:
            t.update(d)

    return go


RUNNERS: dict[str, tuple[str, Runner]] = {
    "trackcast": ("trackcast (numba, exact)", run_trackcast),
    "reference": ("ByteTrack reference (Python)", run_reference),
    "visiontrack-cpp": ("visiontrack-cpp (C++)", run_visiontrack),
    "ioutrack-rs": ("ioutrack-rs (Rust)", run_ioutrack),
    "trackers": ("Roboflow trackers (Python)", run_roboflow),
}


def available() -> dict[str, str]:
    """Name -> reason it is missing, for each peer that cannot run here."""
    missing = {}
    if not os.environ.get("TRACKCAST_BYTETRACK_REF"):
        missing["reference"] = "set TRACKCAST_BYTETRACK_REF to a directory holding yolox/tracker"
    for name, mod in (
        ("visiontrack-cpp", "visiontrack_cpp"),
        ("ioutrack-rs", "ioutrack"),
        ("trackers", "trackers"),
    ):
        try:
            importlib.import_module(mod)
        except ImportError:
            missing[name] = f"pip install {name}"
    return missing


def bench(frames31: Frames, frames94: Frames, repeats: int) -> dict[str, Any]:
    missing = available()
    names = [n for n in RUNNERS if n not in missing]
    jobs: dict[tuple[str, str], Callable[[], None]] = {}
    for n in names:
        for label, frames in (("31", frames31), ("94", frames94)):
            try:
                jobs[n, label] = RUNNERS[n][1](frames)
                jobs[n, label]()  # warm-up (JIT compile / caches)
            except Exception as exc:  # a broken peer must not stop the benchmark
                missing[n] = f"failed: {type(exc).__name__}: {exc}"
                break
    names = [n for n in names if n not in missing]
    best: dict[tuple[str, str], float] = {}
    for _ in range(repeats):
        for n in names:
            for label, frames in (("31", frames31), ("94", frames94)):
                t0 = time.perf_counter()
                jobs[n, label]()
                ms = (time.perf_counter() - t0) * 1000 / len(frames)
                best[n, label] = min(best.get((n, label), float("inf")), ms)
    dets31 = float(np.mean([len(d) for d in frames31]))
    dets94 = float(np.mean([len(d) for d in frames94]))
    return {
        "frames": len(frames31),
        "dets_per_frame": [round(dets31, 1), round(dets94, 1)],
        "repeats": repeats,
        "ms_per_frame": {n: {"31": best[n, "31"], "94": best[n, "94"]} for n in names},
        "missing": missing,
    }


def render(res: dict[str, Any]) -> str:
    d31, d94 = res["dets_per_frame"]
    ms = res["ms_per_frame"]
    ours = ms["trackcast"]
    lines = [
        f"Tracker ms/frame, best of {res['repeats']} interleaved runs over {res['frames']} frames "
        f"(~{d31:g} and ~{d94:g} detections/frame)",
        "",
        f"{'tracker':<32}{'31 dets':>10}{'94 dets':>10}{'trackcast speed-up (31 / 94)':>32}",
    ]
    for n, v in ms.items():
        label = RUNNERS[n][0]
        ratio = "" if n == "trackcast" else f"{v['31'] / ours['31']:.1f}x / {v['94'] / ours['94']:.1f}x"
        lines.append(f"{label:<32}{v['31']:>10.4f}{v['94']:>10.4f}{ratio:>32}")
    for n, why in res["missing"].items():
        lines.append(f"{RUNNERS[n][0]:<32}{'not measured: ' + why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--det", type=Path, default=DEFAULT_DET, help="MOT det.txt (default: shared pedestrians)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = p.parse_args(argv)
    if not args.det.is_file():
        print(f"bench: detections not found: {args.det} (is ../shared beside the checkout?)", file=sys.stderr)
        return 2
    frames31, frames94 = load_frames(args.det)
    res = bench(frames31, frames94, args.repeats)
    print(render(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
