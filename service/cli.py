"""The ``trackcast`` command.

Each verb imports what it needs when it runs, so ``trackcast --help`` stays fast and a verb's
optional dependencies are only needed by that verb.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


class CliError(Exception):
    """A user-facing error: printed as ``trackcast: error: ...`` with exit status 2."""


def _add_tracker_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tracker (ByteTrack parameters)")
    g.add_argument("--track-thresh", type=float, default=0.5, help="high-score threshold (default 0.5)")
    g.add_argument(
        "--track-buffer", type=int, default=30, help="frames a lost track is kept, at 30 fps (default 30)"
    )
    g.add_argument(
        "--match-thresh", type=float, default=0.8, help="first-association cost limit (default 0.8)"
    )
    g.add_argument("--mot20", action="store_true", help="no score fusion (crowded scenes)")
    g.add_argument("--frame-rate", type=float, default=30.0, help="rate of the frames tracked (default 30)")
    g.add_argument(
        "--per-class", action="store_true", help="associate detections only with tracks of their class"
    )


def _tracker_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from tracker import TrackerConfig, TrackerConfigError

    try:
        return TrackerConfig(
            track_thresh=args.track_thresh,
            track_buffer=args.track_buffer,
            match_thresh=args.match_thresh,
            mot20=args.mot20,
            frame_rate=args.frame_rate,
            per_class=args.per_class,
        )
    except TrackerConfigError as exc:
        raise CliError(str(exc)) from exc


def cmd_track_dets(args: argparse.Namespace) -> int:
    """Run the tracker over a MOTChallenge det.txt and write MOT results."""
    from tracker import ByteTracker, MotFormatError
    from tracker.mot import format_tracks, iter_frames, read_mot, write_lines

    cfg = _tracker_config(args)
    try:
        det = read_mot(args.det)
    except MotFormatError as exc:
        raise CliError(str(exc)) from exc
    tracker = ByteTracker(cfg)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n_rows = 0
    t0 = time.perf_counter()
    n_frames = 0
    with out_path.open("w") as out:
        for frame, dets in iter_frames(det, args.frames):
            lines = format_tracks(frame, tracker.update(dets, frame_index=frame))
            write_lines(out, lines)
            n_rows += len(lines)
            n_frames += 1
    dt = time.perf_counter() - t0
    if tracker.invalid_total:
        print(
            f"dropped {tracker.invalid_total} detections with NaN/inf values or non-positive size",
            file=sys.stderr,
        )
    print(f"{n_frames} frames, {n_rows} track rows -> {out_path} ({dt:.2f} s)", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Print MOT metrics of a tracker output against ground truth."""
    from tracker import MotFormatError
    from tracker.evaluation import evaluate
    from tracker.mot import read_mot

    try:
        gt = read_mot(args.gt)
        hyp = read_mot(args.hyp)
    except MotFormatError as exc:
        raise CliError(str(exc)) from exc
    m = evaluate(gt, hyp)
    if args.json:
        print(json.dumps(m.as_dict(), indent=2))
    else:
        print(m.table())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Track a built-in synthetic scene and show a live console summary."""
    import numpy as np

    from service.synthetic import Scene, noisy_detections
    from tracker import ByteTracker, TrackerConfig
    from tracker.evaluation import evaluate

    scene = Scene(players=args.players, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    tracker = ByteTracker(TrackerConfig(frame_rate=args.fps))
    ByteTracker().update(np.empty((0, 5)))  # load the compiled core now, not on the first frame
    gt_rows: list[list[float]] = []
    hyp_rows: list[list[float]] = []
    period = 1.0 / args.fps if args.realtime else 0.0
    started = time.monotonic()
    spent = 0.0  # tracker time since the last console line
    frame = 0
    print(
        f"trackcast demo: {args.players} players on a synthetic {scene.width}x{scene.height} pitch at {args.fps:g} fps, "
        "noisy detections (jitter, misses, occlusion, false positives) -> ByteTrack. Ctrl-C stops.",
        flush=True,
    )
    try:
        while args.frames is None or frame < args.frames:
            frame += 1
            ids, boxes = scene.step()
            dets = noisy_detections(boxes, rng, width=scene.width, height=scene.height)
            t0 = time.perf_counter()
            tracks = tracker.update(dets, frame_index=frame)
            spent += time.perf_counter() - t0
            for i, b in zip(ids.tolist(), boxes.tolist(), strict=True):
                gt_rows.append([frame, i, b[0], b[1], b[2] - b[0], b[3] - b[1], 1, -1, -1, -1])
            for i, b in zip(tracks.ids.tolist(), tracks.tlwh.tolist(), strict=True):
                hyp_rows.append([frame, i, *b, 1, -1, -1, -1])
            every = int(max(args.fps, 1))
            if frame % every == 0:
                line = (
                    f"frame {frame:6d}  players {len(ids):3d}  detections {len(dets):3d}  "
                    f"tracks {len(tracks):3d}  ids so far {len({int(r[1]) for r in hyp_rows}):4d}  "
                    f"tracker {1000 * spent / every:.3f} ms/frame"
                )
                print(line, flush=True)
                spent = 0.0
            if period:
                delay = started + frame * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
    if frame and gt_rows:
        m = evaluate(np.asarray(gt_rows), np.asarray(hyp_rows) if hyp_rows else np.empty((0, 10)))
        print(
            f"\nsummary over {frame} frames: IDF1 {100 * m.IDF1:.1f}  MOTA {100 * m.MOTA:.1f}  "
            f"HOTA {100 * m.HOTA:.1f}  ID switches {m.IDSW}  "
            f"({m.gt_ids} players, {m.hyp_ids} track ids)",
            flush=True,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackcast", description="Live multi-object tracking (YOLOX + ByteTrack)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "track-dets", help="track a MOTChallenge det.txt offline", description=cmd_track_dets.__doc__
    )
    p.add_argument("det", help="detections, MOTChallenge format: frame,-1,x,y,w,h,score,...")
    p.add_argument("--out", required=True, help="output MOT results: frame,id,x,y,w,h,score,-1,-1,-1")
    p.add_argument(
        "--frames", type=int, default=None, help="number of frames (default: last frame in the file)"
    )
    _add_tracker_args(p)
    p.set_defaults(func=cmd_track_dets)

    p = sub.add_parser(
        "eval",
        help="MOTA, IDF1, HOTA, ID switches of tracks against ground truth",
        description=cmd_eval.__doc__,
    )
    p.add_argument("gt", help="ground truth, MOTChallenge gt.txt")
    p.add_argument("hyp", help="tracker output, MOTChallenge format")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "demo", help="run the built-in demo (no camera, model or broker needed)", description=cmd_demo.__doc__
    )
    p.add_argument(
        "--frames", type=int, default=None, help="stop after this many frames (default: run until Ctrl-C)"
    )
    p.add_argument("--players", type=int, default=14)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-realtime", dest="realtime", action="store_false", help="run as fast as possible")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
    except CliError as exc:
        print(f"trackcast: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # stdout was closed (e.g. `trackcast demo | head`): stop quietly, like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
