"""Service benchmark (`make bench`): throughput next to plain decoding, and the latency the service adds.

1. Throughput. N replay streams (every frame, as fast as possible) of the shared clips through the
   whole service (decode threads, letterbox, batcher, a fake detector with a fixed latency, tracker,
   events, MQTT to a real mosquitto), against plain PyAV decoding of the same clips to BGR in N
   threads. Plain decoding is first measured several ways: PyAV's defaults
   (``to_ndarray(format="bgr24")``) with slice or frame decoder threads, and the same with one
   swscale thread, each way in two interleaved passes, averaged. Then the fastest of those ways,
   with the service's process settings (allocator, one OpenCV thread), and the service take turns
   for ``--rounds`` rounds: plain, service, plain, service with analytics, plain, and so on, so
   every service run sits between two plain decodes; its ratio is the service over the mean of
   those two (a VM's speed drifts by several percent, at times by 20 %, from one minute to the
   next: the plain runs on both sides see the drift the service run saw, where the one run before
   it sees only half of it). The ratio to the plain decode just before alone is in the figures too.
   The headline is the median of the rounds' ratios; the ratio to the single fastest plain
   figure of the whole run (every variant and round; the max of noisy figures, so lower) and to
   PyAV's defaults are printed too. The service runs with its default letterbox (scaled from the
   decoded planes, converted at the detector's size: it never makes the full-size BGR image that
   plain decoding makes) and, once, with ``letterbox: exact`` (full-size BGR, then resized).
2. Added latency. N live-paced streams (real time, like cameras) through the same service; for
   every frame, the time from capture (decode) to receipt on MQTT minus the detector's time: what
   the service itself adds. Reported: p50 and p99.

Usage: ``python -m loadtest.bench_service [--streams 4] [--latency-ms 20] [--seconds 10] [--rounds 3] [--json F]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loadtest.bench_analytics import relative_analytics
from loadtest.peers import Mosquitto
from service.media.video import tune_for_decoding

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
CLIPS = [SHARED / "video" / "pedestrians_720p25.mp4", SHARED / "video" / "futsal_broadcast_720x1280p30.mp4"]


def plain_decode(
    clips: list[Path], seconds: float, thread_type: str, convert_threads: int | None = None
) -> float:
    """Decode every clip (looped) to BGR in its own thread for ``seconds``: frames/s, steady state.

    ``convert_threads``: swscale threads for the BGR conversion (None: PyAV's default, automatic).
    """
    import av

    kwargs: dict[str, Any] = {} if convert_threads is None else {"threads": convert_threads}

    counts = [0] * len(clips)
    stop = threading.Event()
    measuring = threading.Event()

    def run(i: int, path: Path) -> None:
        while not stop.is_set():
            with av.open(str(path)) as c:
                s = c.streams.video[0]
                s.thread_type = thread_type
                for f in c.decode(s):
                    f.to_ndarray(format="bgr24", **kwargs)
                    if measuring.is_set():
                        counts[i] += 1
                    if stop.is_set():
                        return

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(clips)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # warm-up
    measuring.set()
    t0 = time.perf_counter()
    time.sleep(seconds)
    n = sum(counts)
    dt = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join()
    return n / dt


class Receiver:
    """A subscriber in its own process (mosquitto_sub), stamping each message's receipt time."""

    def __init__(self, port: int, topic: str = "bench/+/tracks") -> None:
        exe = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
        self.out = tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False)  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen([exe, "-p", str(port), "-t", topic, "-F", "%U %t %p"], stdout=self.out)
        time.sleep(0.3)
        self.rows: list[tuple[str, dict[str, Any], float]] = []

    def close(self) -> None:
        time.sleep(0.3)
        self.proc.terminate()
        self.proc.wait(10)
        self.out.seek(0)
        for line in self.out:
            ts, topic, payload = line.split(" ", 2)
            self.rows.append((topic, json.loads(payload), float(ts)))
        self.out.close()
        os.unlink(self.out.name)


async def run_service(
    clips: list[Path],
    port: int,
    latency_ms: float,
    realtime: bool,
    seconds: float | None,
    letterbox: str = "fast",
    analytics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run N looped replay streams; returns frames processed over ``seconds`` after a 1 s warm-up."""
    from service.app import Service
    from service.config import load_settings

    streams = [
        {"id": f"s{i}", "url": str(p), "mode": "replay", "realtime": realtime, "loop": True}
        | ({"analytics": analytics} if analytics else {})
        for i, p in enumerate(clips)
    ]
    settings = load_settings(None, {
        "instance": "bench", "mqtt": {"url": f"mqtt://127.0.0.1:{port}", "topic_prefix": "bench"},
        "detector": {"kind": "fake", "latency_ms": latency_ms, "boxes": 10, "max_batch": 8, "max_in_flight": 2,
                     "letterbox": letterbox},
        "http": {"port": 0}, "streams": streams, "log_level": "warning",
    })  # fmt: skip
    svc = Service(settings)
    await svc.start()
    await asyncio.sleep(1.0)  # warm-up
    n0 = sum(s.n_processed for s in svc.streams.values())
    t0 = time.perf_counter()
    await asyncio.sleep(seconds or 10.0)
    processed = sum(s.n_processed for s in svc.streams.values()) - n0
    elapsed = time.perf_counter() - t0
    await svc.stop(timeout=10)
    return {"frames": processed, "seconds": elapsed}


def run_peer(
    python: str, clips: list[Path], port: int, latency_ms: float, seconds: float, live: bool
) -> dict[str, Any]:
    """Roboflow inference's InferencePipeline (``loadtest.bench_peer``) in its own venv's Python."""
    args = [python, "-m", "loadtest.bench_peer", "--port", str(port), "--seconds", str(seconds),
            "--latency-ms", str(latency_ms), *(["--live"] if live else []), *map(str, clips)]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    last = res.stdout.strip().splitlines()[-1:] or [""]
    if res.returncode != 0 or not last[0].startswith("{"):
        raise RuntimeError(f"peer failed (exit {res.returncode}): {res.stderr[-1500:]}")
    out: dict[str, Any] = json.loads(last[0])
    return out


def _added(rows: list[tuple[str, dict[str, Any], float]]) -> tuple[list[float], list[float]]:
    keep = rows[len(rows) // 10 :]
    added = [(ts - m["capture_ts"]) * 1000 - m["latency_ms"]["detect"] for _, m, ts in keep]
    e2e = [(ts - m["capture_ts"]) * 1000 for _, m, ts in keep]
    return added, e2e


def quantile(vals: list[float], q: float) -> float:
    v = sorted(vals)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--latency-ms", type=float, default=20.0, help="fake detector latency per batch")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    p.add_argument("--rounds", type=int, default=3, help="plain/service pairs for the headline ratio")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--peer", help="the Python of a venv with Roboflow inference (make bench: .venv-peer/bin/python)"
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    missing = [str(c) for c in CLIPS if not c.is_file()]
    if missing:
        print(f"bench: not found: {', '.join(missing)} (is ../shared beside the checkout?)", file=sys.stderr)
        return 2
    clips = [CLIPS[i % len(CLIPS)] for i in range(args.streams)]
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="bench-mqtt-"))).start()
    variants: dict[tuple[str, int | None], str] = {(tt, None): f"{tt} defaults" for tt in ("AUTO", "SLICE")}
    variants |= {(tt, 1): f"{tt} 1 swscale thread" for tt in ("AUTO", "SLICE")}
    rounds: list[dict[str, float]] = []
    plain_runs: list[float] = []
    try:
        # Plain decoding, before the service's process-wide settings below.
        # Two interleaved passes of half length each: a minute of drift does not pick the variant.
        passes = [{name: plain_decode(clips, args.seconds / 2, tt, th) for (tt, th), name in variants.items()}
                  for _ in range(2)]  # fmt: skip
        plain = {name: statistics.fmean(p[name] for p in passes) for name in variants.values()}
        tt, th = max(variants, key=lambda k: plain[variants[k]])
        paired = f"{variants[tt, th]}, service settings"
        # What `trackcast serve` does at start-up (process-wide; so the plain decodes above run first).
        tune_for_decoding()
        before = plain_decode(clips, args.seconds, tt, th)
        plain_runs = [before]
        for _ in range(args.rounds):
            thr = asyncio.run(
                run_service(clips, broker.port, args.latency_ms, realtime=False, seconds=args.seconds)
            )
            fps = thr["frames"] / thr["seconds"]
            mid = plain_decode(clips, args.seconds, tt, th)
            ana = asyncio.run(run_service(clips, broker.port, args.latency_ms, realtime=False, seconds=args.seconds,
                                          analytics=relative_analytics()))  # fmt: skip
            afps = ana["frames"] / ana["seconds"]
            after = plain_decode(clips, args.seconds, tt, th)
            base, abase = (before + mid) / 2, (mid + after) / 2
            rounds.append({"plain_fps": base, "service_fps": fps, "ratio": fps / base, "frames": thr["frames"],
                           "plain_fps_analytics": abase, "analytics_fps": afps, "ratio_analytics": afps / abase,
                           "plain_before": before, "plain_mid": mid, "plain_after": after,
                           "ratio_to_plain_before": fps / before,
                           "ratio_analytics_to_plain_before": afps / mid})  # fmt: skip
            plain_runs += [mid, after]
            before = after
        exact = asyncio.run(
            run_service(clips, broker.port, args.latency_ms, False, args.seconds, letterbox="exact")
        )
        recv = Receiver(broker.port)
        asyncio.run(run_service(clips, broker.port, args.latency_ms, realtime=True, seconds=args.seconds))
        time.sleep(0.5)
        recv.close()
        peer: dict[str, Any] | None = None
        if args.peer:
            base = plain_decode(clips, args.seconds, tt, th)
            thr_p = run_peer(args.peer, clips, broker.port, args.latency_ms, args.seconds, live=False)
            precv = Receiver(broker.port, "bench-peer/+/tracks")
            live_p = run_peer(args.peer, clips, broker.port, args.latency_ms, args.seconds, live=True)
            time.sleep(0.5)
            precv.close()
            p_added, p_e2e = _added(precv.rows)
            peer = {"plain_fps": base, "fps": thr_p["frames"] / thr_p["seconds"], "live_frames": live_p["frames"],
                    "added_latency_ms": {"p50": quantile(p_added, 0.5), "p99": quantile(p_added, 0.99)},
                    "end_to_end_ms": {"p50": quantile(p_e2e, 0.5), "p99": quantile(p_e2e, 0.99)}}  # fmt: skip
            peer["ratio"] = peer["fps"] / base
    finally:
        broker.stop()
        shutil.rmtree(broker.dir, ignore_errors=True)
    added, e2e = _added(recv.rows)
    ratio = statistics.median(r["ratio"] for r in rounds)
    ratio_analytics = statistics.median(r["ratio_analytics"] for r in rounds)
    service_fps = statistics.median(r["service_fps"] for r in rounds)
    plain_fps = statistics.median(r["plain_fps"] for r in rounds)
    fastest = max([*plain.values(), *plain_runs])
    defaults = max(plain["AUTO defaults"], plain["SLICE defaults"])
    exact_fps = exact["frames"] / exact["seconds"]
    res = {
        "streams": args.streams,
        "fake_detector_latency_ms": args.latency_ms,
        "plain_decode_fps": plain_fps,
        "plain_decode_paired": paired,
        "plain_decode_fps_by_variant": plain,
        "service_fps": service_fps,
        "rounds": rounds,
        "ratio": ratio,
        "ratio_analytics": ratio_analytics,
        "ratio_to_plain_before": statistics.median(r["ratio_to_plain_before"] for r in rounds),
        "ratio_analytics_to_plain_before": statistics.median(
            r["ratio_analytics_to_plain_before"] for r in rounds
        ),
        "plain_decode_runs": plain_runs,
        "ratio_to_fastest_single": service_fps / fastest,
        "ratio_to_pyav_defaults": service_fps / defaults,
        "service_fps_letterbox_exact": exact_fps,
        "ratio_letterbox_exact": exact_fps / plain_runs[-1],
        "frames": sum(r["frames"] for r in rounds),
        "live_frames": len(recv.rows),
        "added_latency_ms": {"p50": quantile(added, 0.5), "p99": quantile(added, 0.99)},
        "end_to_end_ms": {"p50": quantile(e2e, 0.5), "p99": quantile(e2e, 0.99)},
        "peer": peer,
    }
    rows = "\n".join(f"    {k:44s} {v:8.1f} frames/s" for k, v in plain.items())
    turns = "\n".join(
        f"    round {i}: plain {r['plain_before']:6.1f} | service {r['service_fps']:6.1f} | plain {r['plain_mid']:6.1f} "
        f"| with analytics {r['analytics_fps']:6.1f} | plain {r['plain_after']:6.1f} frames/s; ratio "
        f"{r['ratio']:.2f} (to the plain run before alone {r['ratio_to_plain_before']:.2f}), with analytics "
        f"{r['ratio_analytics']:.2f} ({r['ratio_analytics_to_plain_before']:.2f})"
        for i, r in enumerate(rounds, 1)
    )
    print(
        f"Service with {args.streams} replay streams of the shared clips, fake detector {args.latency_ms:g} ms/batch, "
        f"MQTT to mosquitto, {os.cpu_count()} cores\n\n"
        f"  plain PyAV decode to BGR ({args.streams} threads; the mean of two interleaved passes):\n{rows}\n"
        f"  the fastest ({paired}) and the service (every frame, in order), taking turns; each service\n"
        f"  run's ratio is to the mean of the plain runs on either side of it:\n{turns}\n"
        f"  ratio service / plain decode (median of the rounds):  {ratio:8.2f}   (target >= 0.75; "
        f"{res['ratio_to_plain_before']:.2f} to the plain run before alone)\n"
        f"  the same with analytics on every stream:              {ratio_analytics:8.2f}   (target >= 0.7; 4 zones, "
        f"4 lines, a calibration; {res['ratio_analytics_to_plain_before']:.2f} to the plain run before alone)\n"
        f"  ratio to the fastest single plain figure of the run:  {res['ratio_to_fastest_single']:8.2f}\n"
        f"  ratio to plain decode with PyAV defaults:             {res['ratio_to_pyav_defaults']:8.2f}\n"
        f"  through the service, letterbox exact:              {exact_fps:8.1f} frames/s  "
        f"(ratio {res['ratio_letterbox_exact']:.2f} to the plain run before it; whole frame to BGR, then resized: ByteTrack's preprocessing)\n\n"
        f"  live-paced run, {len(recv.rows)} frames over {args.seconds:g} s:\n"
        f"  service-added latency (capture to MQTT receipt minus detector time): "
        f"p50 {res['added_latency_ms']['p50']:.1f} ms, p99 {res['added_latency_ms']['p99']:.1f} ms   (target p99 < 25 ms)\n"
        f"  end to end (capture to MQTT receipt): p50 {res['end_to_end_ms']['p50']:.1f} ms, p99 {res['end_to_end_ms']['p99']:.1f} ms"
    )
    if peer is not None:
        print(
            f"\n  the peer, Roboflow inference's InferencePipeline (same clips, same fake detector, supervision's\n"
            f"  ByteTrack, a JSON tracks message per frame to the same mosquitto), in this run:\n"
            f"    every frame, as fast as it goes: {peer['fps']:7.1f} frames/s, ratio {peer['ratio']:.2f} to plain decode "
            f"({peer['plain_fps']:.1f} just before)   trackcast: {service_fps:7.1f} frames/s, ratio {ratio:.2f}\n"
            f"    paced by its max_fps (25), {peer['live_frames']} frames; from its inference step to MQTT receipt, "
            f"minus the detector (its decode and queue not counted):\n      added latency p50 "
            f"{peer['added_latency_ms']['p50']:.1f} ms, p99 {peer['added_latency_ms']['p99']:.1f} ms; end to end p99 "
            f"{peer['end_to_end_ms']['p99']:.1f} ms   trackcast: p50 {res['added_latency_ms']['p50']:.1f} ms, "
            f"p99 {res['added_latency_ms']['p99']:.1f} ms"
        )
    elif args.peer is None:
        print("\n  (no peer run: --peer PYTHON, as make bench does, adds Roboflow inference side by side)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
