"""The shared YOLOX model on a GPU: ms/frame at batch 1, 8 and 32 with ONNX Runtime's TensorRT and
CUDA providers, and how many 720p streams at real time one GPU serves (``make bench-gpu``).

    make bench-gpu              # its own venv (.venv-gpu) with onnxruntime-gpu, CUDA, cuDNN, TensorRT
    python -m loadtest.bench_gpu --model ../shared/data/models/yolox_nano_416x416.onnx

Each provider runs the model the way the service does (``OnnxModel``: made batchable and checked,
IO binding, the output copied back to the host), warmed up per batch size (TensorRT builds an
engine per shape), then timed. The letterbox of a 720p frame (``prepare_yuv420``, CPU) is timed
too: streams per GPU = frames/s at the best batch / 25, and the CPU cores that many streams need
for letterboxing. Prints a table; writes ``loadtest-out/gpu.json``. Without a GPU it says so and
exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT.parent / "shared" / "data" / "models" / "yolox_nano_416x416.onnx"


def gpu_name() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "unknown (no nvidia-smi)"
    out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip() or out.stderr.strip()


def time_batches(core: Any, batches: list[int], repeats: int) -> dict[int, float]:
    from detector_client.yolox import probe_frames

    frame = probe_frames(core.height, core.width)[0]
    out = {}
    for b in batches:
        images = np.repeat(frame[None], b, axis=0)
        for _ in range(3):  # warm-up: TensorRT builds this shape's engine here
            core.infer(images)
        t = time.perf_counter()
        for _ in range(repeats):
            core.infer(images)
        out[b] = (time.perf_counter() - t) / repeats / b * 1000
    return out


def letterbox_ms(spec: Any, repeats: int = 200) -> float:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 256, (720, 1280), dtype=np.uint8)
    u = rng.integers(0, 256, (360, 640), dtype=np.uint8)
    v = rng.integers(0, 256, (360, 640), dtype=np.uint8)
    spec.prepare_yuv420(y, u, v)
    t = time.perf_counter()
    for _ in range(repeats):
        spec.prepare_yuv420(y, u, v)
    return (time.perf_counter() - t) / repeats * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--fps", type=float, default=25.0, help="a stream's frame rate")
    p.add_argument("--out", type=Path, default=Path("loadtest-out") / "gpu.json")
    a = p.parse_args(argv)
    import onnxruntime as ort

    from detector_client.errors import DetectorError
    from detector_client.onnx_backend import OnnxModel

    if hasattr(ort, "preload_dlls"):  # CUDA / cuDNN from the nvidia-* wheels
        ort.preload_dlls()
    available = ort.get_available_providers()
    print(
        f"onnxruntime {ort.__version__}; providers {available}; GPU: {gpu_name()}; {os.cpu_count()} CPU cores"
    )
    if "CUDAExecutionProvider" not in available:
        print("bench_gpu: no CUDA provider here (onnxruntime-gpu and a GPU are needed): nothing measured",
              file=sys.stderr)  # fmt: skip
        return 2
    if not a.model.is_file():
        print(f"bench_gpu: model not found: {a.model}", file=sys.stderr)
        return 2
    batches = [int(b) for b in a.batches.split(",")]
    results: dict[str, Any] = {"gpu": gpu_name(), "onnxruntime": ort.__version__, "model": a.model.name}
    rows = []
    for label, providers in (("tensorrt", ["tensorrt"]), ("cuda", ["cuda"])):
        try:
            core = OnnxModel(a.model, providers=providers)
            if (
                core.providers[0]
                != {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider"}[label]
            ):
                raise DetectorError(f"fell back to {core.providers[0]}")
            ms = time_batches(core, batches, a.repeats)
        except Exception as exc:  # a provider that cannot run here is reported, the other still runs
            print(f"{label}: not measured ({type(exc).__name__}: {str(exc)[:300]})")
            results[label] = {"error": str(exc)[:300]}
            continue
        best = min(ms.values())
        rows.append((label, ms, best))
        results[label] = {
            "ms_per_frame": ms,
            "frames_per_s": 1000 / best,
            "streams": int(1000 / best // a.fps),
        }
    if not rows:
        return 2
    lb = letterbox_ms(OnnxModel(a.model, providers=["cpu"]).spec)
    results["letterbox_720p_ms"] = lb
    head = "".join(f"{'b' + str(b) + ' ms/f':>12}" for b in batches)
    print(f"{'provider':<10}{head}{'frames/s':>10}{f'{a.fps:g}fps streams':>16}")
    for label, ms, best in rows:
        cells = "".join(f"{ms[b]:>12.2f}" for b in batches)
        print(f"{label:<10}{cells}{1000 / best:>10.0f}{int(1000 / best // a.fps):>16}")
    top = max(int(1000 / best // a.fps) for _, _, best in rows)
    print(f"letterbox of a 720p frame on one CPU core: {lb:.2f} ms -> {top} streams need "
          f"{top * a.fps * lb / 1000:.1f} cores for it (decoding not included)")  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
