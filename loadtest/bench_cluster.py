"""Streams at real time with 1, 2 and 3 trackcast instances sharing one detector server; scaling.

    python -m loadtest.bench_cluster [--duration 20] [--fake-ms 15] [--instances 1,2,3]

Starts NVIDIA Triton (``.venv-triton``) on the model repository ``trackcast triton-repo`` writes
for the shared YOLOX model, then for each instance count spawns that many ``trackcast serve``
processes as the shards of one cluster and runs ``trackcast loadtest --find-max`` against all of
them (each stream added to the instance that owns it): the largest number of live RTSP streams
(the shared clips, in real time) that still hold the load test's bounds. Prints one line per
instance count and the scaling efficiency ``N(k) / (k x N(1))``.

``--fake-ms`` serves each batch after a fixed time instead of running the model (a GPU stand-in:
what the instances can carry when detection is not the limit). Without it the model runs on this
machine's CPU and is the limit. Every process here shares this machine's cores; see the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtest.peers import PeerUnavailable, TritonServer
from loadtest.run import DEFAULT_CLIPS, find_max, run_once

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT.parent / "shared" / "data" / "models" / "yolox_nano_416x416.onnx"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=20.0, help="seconds per load run")
    p.add_argument("--instances", default="1,2,3", help="instance counts to measure")
    p.add_argument("--fake-ms", type=float, default=None, help="GPU stand-in: ms per batch on the server")
    p.add_argument("--detect-fps", type=float, default=None, help="frames per second each stream detects")
    p.add_argument("--max-n", type=int, default=32)
    p.add_argument("--max-p99-ms", type=float, default=250.0)
    p.add_argument("--max-drop", type=float, default=0.05)
    p.add_argument("--min-fps-ratio", type=float, default=0.9)
    p.add_argument("--out", type=Path, default=Path("loadtest-out") / "cluster.json")
    a = p.parse_args(argv)
    if not MODEL.is_file():
        print(f"bench_cluster: the shared model is missing ({MODEL})", file=sys.stderr)
        return 2
    from deploy.triton import write_model_repository

    counts = [int(k) for k in a.instances.split(",")]
    work = Path(tempfile.mkdtemp(prefix="trackcast-cluster-"))
    rows: list[dict[str, Any]] = []
    try:
        write_model_repository(MODEL, work / "repo", device="cpu", max_batch=8)
        triton = TritonServer(work / "repo", work / "triton", fake_ms=a.fake_ms).start()
        detector = {"kind": "oip", "url": triton.url, "model": "yolox", "classes": [0], "max_batch": 8}
        kind = (
            f"Triton, {a.fake_ms:g} ms per batch (GPU stand-in)" if a.fake_ms is not None else "Triton, CPU"
        )
        print(f"detector server: {kind}; {os.cpu_count()} cores here; {a.duration:g} s per run", flush=True)
        try:
            for k in counts:

                def once(n: int, k: int = k) -> dict:  # type: ignore[type-arg]
                    return run_once(n, a.duration, DEFAULT_CLIPS, detector, work / f"k{k}-n{n}", quiet=True,
                                    instances=k, detect_fps=a.detect_fps)  # fmt: skip

                best, runs = find_max(
                    once, a.max_n, a.max_p99_ms, a.max_drop, a.min_fps_ratio, label=f"{k} inst: "
                )
                held = next((r for r in runs if r["streams_n"] == best), None)
                rows.append({"instances": k, "streams": best,
                             "p99_ms": held["latency_ms"]["p99"] if held else None,
                             "cpu_percent": held["cpu_percent"]["mean"] if held else None})  # fmt: skip
                print(f"{k} instance(s): {best} streams at real time"
                      + (f" (p99 {held['latency_ms']['p99']:.0f} ms, CPU {held['cpu_percent']['mean']:.0f}%)"
                         if held else ""), flush=True)  # fmt: skip
        finally:
            triton.stop()
    except PeerUnavailable as exc:
        print(f"bench_cluster: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one = next((r["streams"] for r in rows if r["instances"] == 1), 0)
    for r in rows:
        r["efficiency"] = r["streams"] / (r["instances"] * one) if one else None
    print(f"{'instances':>10}{'streams':>9}{'efficiency':>12}")
    for r in rows:
        eff = "-" if r["efficiency"] is None else f"{r['efficiency']:.2f}"
        print(f"{r['instances']:>10}{r['streams']:>9}{eff:>12}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"detector": kind, "cores": os.cpu_count(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
