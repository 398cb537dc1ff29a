"""Analytics benchmark (`make bench`): what zones, lines and a calibration cost per track, and how
close their numbers come to the ground truth.

Cost: 4 zones (convex and concave), 4 lines and a calibration over synthetic tracks walking a
1280x720 frame, at about 30 and 100 tracks per frame; microseconds per track per frame for the
analytics, next to the tracker's on the same boxes in the same run (ByteTrack, per frame).

Ground truth: the ground-plane scene (``service.media.ground_scene``: a camera at an angle, people
on known paths) with (a) a detector that returns the rendered boxes, (b) those boxes jittered by
+-2 px (seeded), (c) the motion detector on the rendered video (MOG2: it loses people who stand
still); median speed error on steady frames, distance error per track, line crossings counted and
matched, dwell error.

Usage: ``python -m loadtest.bench_analytics [--frames 300] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from service.media.ground_scene import GroundScene
from service.rules.analytics import Analytics, Resolved, parse_analytics
from tracker import ByteTracker, TrackerConfig

W, H = 1280, 720

COST_ANALYTICS: dict[str, Any] = {
    "zones": [
        {"id": "a", "points": [[50, 50], [400, 50], [400, 300], [50, 300]]},
        {
            "id": "b",
            "points": [[700, 100], [1200, 100], [1200, 400], [950, 400], [950, 250], [700, 250]],
        },  # an L
        {"id": "c", "points": [[100, 400], [500, 420], [450, 700], [80, 650]], "loiter_s": 5},
        {"id": "d", "points": [[600, 450], [1250, 450], [1250, 700], [600, 700]], "classes": ["person"]},
    ],
    "lines": [
        {"id": "h", "points": [[0, 360], [1280, 360]]},
        {"id": "v", "points": [[640, 0], [640, 720]]},
        {"id": "d1", "points": [[0, 0], [1280, 720]]},
        {"id": "d2", "points": [[200, 700], [1100, 50]], "in_side": "right"},
    ],
    "calibration": GroundScene().analytics()["calibration"],
}


def relative_analytics() -> dict[str, Any]:
    """``COST_ANALYTICS`` in fractions of the frame (for streams of any size: the service benchmark)."""

    def rel(pts: list[list[float]]) -> list[list[float]]:
        return [[round(x / W, 5), round(y / H, 5)] for x, y in pts]

    out: dict[str, Any] = {
        "zones": [{**z, "points": rel(z["points"]), "relative": True} for z in COST_ANALYTICS["zones"]],
        "lines": [{**ln, "points": rel(ln["points"]), "relative": True} for ln in COST_ANALYTICS["lines"]],
    }
    cal = COST_ANALYTICS["calibration"]
    out["calibration"] = {**cal, "image": rel(cal["image"]), "relative": True}
    return out


def walkers(n: int, frames: int, seed: int = 0) -> list[np.ndarray]:
    """``frames`` frames of ``n`` boxes (x1, y1, x2, y2, score) walking and bouncing in the frame."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([60, 100], [W - 60, H - 10], (n, 2))
    vel = rng.normal(0, 3, (n, 2))
    out = []
    for _ in range(frames):
        vel += rng.normal(0, 0.3, vel.shape)
        pos += vel
        bounce = (pos < [30, 90]) | (pos > [W - 30, H - 5])
        vel[bounce] *= -1
        pos = np.clip(pos, [30, 90], [W - 30, H - 5])
        box = np.c_[pos[:, 0] - 15, pos[:, 1] - 80, pos[:, 0] + 15, pos[:, 1], np.full(n, 0.9)]
        out.append(box)
    return out


def cost(n: int, frames: int, repeats: int = 3) -> dict[str, float]:
    """us per track per frame: the analytics, and the tracker on the same boxes (best of ``repeats``)."""
    dets = walkers(n, frames)
    resolved = Resolved.of(parse_analytics(COST_ANALYTICS), W, H)
    best_a = best_t = float("inf")
    tracks_seen = 0
    for _ in range(repeats):
        tracker = ByteTracker(TrackerConfig(frame_rate=25))
        engine = Analytics(resolved, "bench", 0.0, 0.04)
        spent_a = spent_t = 0.0
        tracks_seen = 0
        for i, d in enumerate(dets, start=1):
            t0 = time.perf_counter()
            tr = tracker.update(d, frame_index=i)
            t1 = time.perf_counter()
            engine.update(
                i, i * 0.04, tr.ids.tolist(), tr.xyxy, tr.classes.tolist(), tr.ended_ids.tolist(), 0.0
            )
            t2 = time.perf_counter()
            spent_t += t1 - t0
            spent_a += t2 - t1
            tracks_seen += len(tr)
        best_a, best_t = min(best_a, spent_a), min(best_t, spent_t)
    per = max(tracks_seen, 1)
    return {"tracks_per_frame": round(tracks_seen / frames, 1), "analytics_us_per_track": round(1e6 * best_a / per, 2),
            "tracker_us_per_track": round(1e6 * best_t / per, 2),
            "analytics_ms_per_frame": round(1e3 * best_a / frames, 3)}  # fmt: skip


def oracle(jitter: float, seed: int = 7) -> dict[str, Any]:
    scene = GroundScene()
    return scene.score(*scene.track_boxes(jitter, seed))


def motion() -> dict[str, Any]:
    """The motion detector on the rendered scene, through ``track_video`` (the offline command's loop)."""
    import csv

    from detector_client.motion import MotionDetector
    from service.media.offline import track_video
    from tracker.mot import read_mot

    scene = GroundScene()
    with tempfile.TemporaryDirectory(prefix="trackcast-bench-") as tmp:
        video = scene.write_video(Path(tmp) / "scene.mp4")
        det = MotionDetector()
        track_video(str(video), det, TrackerConfig(frame_rate=scene.fps), Path(tmp) / "t.txt",
                    analytics=parse_analytics(scene.analytics()))  # fmt: skip
        boxes = {
            (int(r[0]), int(r[1])): [r[2], r[3], r[2] + r[4], r[3] + r[5]]
            for r in read_mot(Path(tmp) / "t.txt")
        }
        rows: dict[int, list[tuple[int, list[float], dict[str, Any]]]] = {}
        with open(Path(tmp) / "t.analytics.csv") as f:
            for r in csv.DictReader(f):
                k = (int(r["frame"]), int(r["id"]))
                v = {"speed": float(r["speed_mps"]) if r["speed_mps"] else None,
                     "distance": float(r["distance_m"]) if r["distance_m"] else None}  # fmt: skip
                rows.setdefault(k[1], []).append((k[0], boxes[k], v))
        events = [json.loads(line) for line in (Path(tmp) / "t.events.jsonl").read_text().splitlines()]
    return scene.score(rows, events)


def _fmt(s: dict[str, Any]) -> str:
    d = list(s["dist_err"].values())
    med = "n/a" if s["median_speed_err"] is None else f"{100 * s['median_speed_err']:.1f}%"
    dist = "n/a" if not d else f"{100 * float(np.median(np.abs(d))):.1f}% (max {100 * max(np.abs(d)):.1f}%)"
    dwell = ", ".join(f"{e:.2f}" for e in s["dwell_err_s"]) or "n/a"
    return (f"speed err (median) {med:>6} | distance err per track (median) {dist} | crossings counted "
            f"{s['crossings_counted']}, matched {s['crossings_matched']} of {s['crossings_true']} | dwell err {dwell} s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300, help="frames per cost measurement")
    p.add_argument("--no-motion", action="store_true", help="skip the motion-detector run (renders a video)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    fig: dict[str, Any] = {"cost": {}, "truth": {}}
    print("analytics cost: 4 zones + 4 lines + calibration (us per track per frame, tracker beside it)")
    for n in (30, 100):
        c = fig["cost"][str(n)] = cost(n, args.frames)
        print(f"  {c['tracks_per_frame']:>5} tracks/frame: analytics {c['analytics_us_per_track']:>6.2f} us/track "
              f"({c['analytics_ms_per_frame']:.2f} ms/frame), tracker {c['tracker_us_per_track']:>6.2f} us/track")  # fmt: skip
    print("ground truth (the ground-plane scene, 5 people, 16 s at 25 fps):")
    runs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("rendered boxes", lambda: oracle(0.0)),
        ("boxes +-2 px", lambda: oracle(2.0)),
    ]
    if not args.no_motion:
        runs.append(("motion detector", motion))
    for name, run in runs:
        s = run()
        fig["truth"][name] = {k: v for k, v in s.items() if k not in ("owner", "speed_err")}
        fig["truth"][name]["dist_err"] = {str(k): round(v, 4) for k, v in s["dist_err"].items()}
        print(f"  {name:<16} {_fmt(s)}")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
