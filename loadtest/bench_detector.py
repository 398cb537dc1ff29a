"""Detector benchmark (`make bench`): YOLOX ms/frame by batch size, and the wire encodings' cost.

Runs the shared YOLOX-nano on real frames of the shared clips with ONNX Runtime on this machine's
providers, batch sizes 1, 2, 4, 8 interleaved so load changes hit them alike; reports the best of
the repeats per batch size (inference only: letterboxing happens in the sources) plus the
end-to-end post-processing cost. Then the SageMaker wire format: bytes per frame and encode+decode
ms for raw and JPEG frames.

Usage: ``python -m loadtest.bench_detector [--model M] [--repeats 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_MODEL = SHARED / "models" / "yolox_nano_416x416.onnx"
CLIPS = [SHARED / "video" / "pedestrians_720p25.mp4", SHARED / "video" / "futsal_broadcast_720x1280p30.mp4"]


def bench(model: Path, repeats: int, providers: list[str] | None) -> dict[str, Any]:
    from detector_client import wire
    from detector_client.onnx_backend import OnnxModel
    from service.media.video import iter_frames

    core = OnnxModel(model, providers=providers)
    frames = []
    for clip in CLIPS:
        frames += [
            core.spec.prepare(f.image, clip.stem, f.index) for f in iter_frames(str(clip), max_frames=16)
        ]
    images = np.stack([f.image for f in frames])
    sizes = (1, 2, 4, 8)
    best = dict.fromkeys(sizes, float("inf"))
    for bs in sizes:
        core.infer(images[:bs])  # warm-up
    for _ in range(repeats):
        for bs in sizes:
            n = (len(images) // bs) * bs
            t0 = time.perf_counter()
            for i in range(0, n, bs):
                core.infer(images[i : i + bs])
            best[bs] = min(best[bs], (time.perf_counter() - t0) * 1000 / n)
    full_ms = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(frames), 4):
            core.detect(frames[i : i + 4])
        full_ms = min(full_ms, (time.perf_counter() - t0) * 1000 / len(frames))

    enc: dict[str, dict[str, float]] = {}
    for encoding in ("raw", "jpeg"):
        t0 = time.perf_counter()
        body = wire.encode_batch(frames, encoding, 90)
        wire.decode_batch(body)
        ms = (time.perf_counter() - t0) * 1000 / len(frames)
        per_frame = len(body) / len(frames)
        enc[encoding] = {
            "bytes_per_frame": per_frame,
            "encode_decode_ms": ms,
            "frames_per_6MiB_request": float((6 * 1024 * 1024 - 512) // (per_frame + 160)),
        }
    return {
        "model": model.name,
        "providers": core.providers,
        "batch_mode": core.batch_mode,
        "frames": len(frames),
        "infer_ms_per_frame": {str(k): v for k, v in best.items()},
        "detect_ms_per_frame_batch4": full_ms,
        "wire": enc,
    }


def render(res: dict[str, Any]) -> str:
    lines = [
        f"YOLOX {res['model']} on {', '.join(res['providers'])} ({res['batch_mode']}), "
        f"{res['frames']} real frames, best of interleaved repeats",
        "",
        f"{'batch':>6}{'ms/frame':>12}",
    ]
    for bs, ms in res["infer_ms_per_frame"].items():
        lines.append(f"{bs:>6}{ms:>12.2f}")
    lines += [
        f"detect at batch 4 (inference + decode + NMS + rescale): {res['detect_ms_per_frame_batch4']:.2f} ms/frame",
        "",
        f"{'wire encoding':<14}{'bytes/frame':>14}{'enc+dec ms/frame':>18}{'frames per 6 MiB':>18}",
    ]
    for name, v in res["wire"].items():
        lines.append(
            f"{name:<14}{v['bytes_per_frame']:>14.0f}{v['encode_decode_ms']:>18.2f}{v['frames_per_6MiB_request']:>18.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--providers", default=None, help="e.g. cuda,cpu")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    missing = [str(x) for x in [args.model, *CLIPS] if not x.is_file()]
    if missing:
        print(f"bench: not found: {', '.join(missing)} (is ../shared beside the checkout?)", file=sys.stderr)
        return 2
    providers = [x.strip() for x in args.providers.split(",")] if args.providers else None
    res = bench(args.model, args.repeats, providers)
    print(render(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
