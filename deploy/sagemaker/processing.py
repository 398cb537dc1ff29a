"""Batch tracking of recorded video as a SageMaker processing job (also runnable locally).

    python -m deploy.sagemaker.processing --input /opt/ml/processing/input --output /opt/ml/processing/output \\
        --model /opt/ml/processing/model/model.onnx [--preprocess yolox] [--classes 0]

Every video under ``--input`` (recursively) is tracked with the same code as ``trackcast track``,
every frame strictly in order, in constant memory; for ``a/b/game.mp4`` it writes
``a/b/game.tracks.txt`` (MOT), ``a/b/game.annotated.mp4`` and ``a/b/game.summary.json`` under
``--output``, plus ``manifest.json`` listing every video and its outcome. A video that fails is
reported and the others go on; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

VIDEO_EXT = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".ts", ".m4v", ".mpg", ".mpeg"}
log = logging.getLogger("trackcast.processing")


def find_videos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXT)


def load_analytics(path: Path) -> Any:
    """An analytics file (YAML or JSON); ``ConfigError`` names the bad key."""
    import yaml

    from service.errors import ConfigError
    from service.rules.analytics import parse_analytics

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read analytics {path}: {exc}") from exc
    return parse_analytics(raw, str(path))


def process_all(input_dir: Path, output_dir: Path, detector: Any, tracker_config: Any = None,
                annotate: bool = True, analytics: Any = None) -> dict[str, Any]:  # fmt: skip
    """Every video under ``input_dir``; ``analytics`` for all of them, unless a video has its own
    ``<video stem>.analytics.yaml`` (or ``.json``) beside it."""
    from service.errors import SourceError
    from service.media.offline import track_video

    output_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for video in find_videos(input_dir):
        rel = video.relative_to(input_dir)
        stem = output_dir / rel.parent / rel.stem
        stem.parent.mkdir(parents=True, exist_ok=True)
        try:
            own = [
                p
                for p in (video.with_suffix(".analytics.yaml"), video.with_suffix(".analytics.json"))
                if p.is_file()
            ]
            spec = load_analytics(own[0]) if own else analytics
            summary = track_video(
                str(video), detector, tracker_config, f"{stem}.tracks.txt",
                out_video=f"{stem}.annotated.mp4" if annotate else None, summary_path=f"{stem}.summary.json",
                analytics=spec,
            )  # fmt: skip
            results.append(
                {"video": str(rel), "ok": True, "frames": summary.frames, "tracks": summary.track_ids}
            )
            log.info("%s: %d frames, %d tracks", rel, summary.frames, summary.track_ids)
        except (SourceError, Exception) as exc:  # one bad video must not stop the job
            log.error("%s: %s", rel, exc)
            results.append({"video": str(rel), "ok": False, "error": str(exc)})
    manifest = {"videos": results, "failed": sum(not r["ok"] for r in results)}
    (output_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: list[str] | None = None) -> int:
    from detector_client import OnnxDetectorConfig, create_detector
    from detector_client.formats import PREPROCESS_NAMES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", type=Path, default=Path("/opt/ml/processing/input"))
    p.add_argument("--output", type=Path, default=Path("/opt/ml/processing/output"))
    p.add_argument("--model", type=Path, default=Path("/opt/ml/processing/model/model.onnx"))
    p.add_argument("--preprocess", choices=list(PREPROCESS_NAMES), default="auto")
    p.add_argument("--classes", type=int, nargs="*", default=[0])
    p.add_argument("--no-video", action="store_true", help="skip the annotated videos")
    p.add_argument("--analytics", type=Path, default=None,
                   help="zones/lines/calibration for every video (a video's own <stem>.analytics.yaml wins)")  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.input.is_dir():
        print(f"processing: input folder {args.input} does not exist", file=sys.stderr)
        return 2
    from service.errors import ConfigError

    try:
        analytics = load_analytics(args.analytics) if args.analytics else None
    except ConfigError as exc:
        print(f"processing: {exc}", file=sys.stderr)
        return 2
    det = create_detector(
        OnnxDetectorConfig(model=args.model, preprocess=args.preprocess, classes=args.classes or None)
    )
    try:
        manifest = process_all(args.input, args.output, det, annotate=not args.no_video, analytics=analytics)
    finally:
        det.close()
    print(json.dumps({"videos": len(manifest["videos"]), "failed": manifest["failed"]}))
    return 1 if manifest["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
