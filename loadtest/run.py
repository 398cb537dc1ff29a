"""``trackcast loadtest``: N live RTSP streams from real clips against a service; where the time goes.

Brings up a real RTSP server (GStreamer) serving N streams of the given clips, looped, in real time
(each stream its own clock, like N cameras), a broker (mosquitto, unless ``--mqtt``), and either
spawns a service with a generated config (``--spawn``, default) or adds the streams to a running one
(``--service URL``). A subscriber in this process records every frame's tracks message; the
service's CPU and RSS are sampled every second; its ``/metrics`` give drops by cause.

Per stream: processed fps vs source fps, drops by cause, end-to-end latency (capture to MQTT
receipt) p50/p95/p99. Writes ``result.json`` and a self-contained ``report.html`` (latency CDF per
stream, fps and latency over time, CPU and RSS over time) and prints a summary table.

``--find-max`` raises N (1, 2, 4, ... then bisects) until p99 latency or the drop rate crosses its
bound and reports the largest N that held. ``--duration 3600`` is the soak mode: after a warm-up
(the first 20% of the run) RSS must not grow; the report gives the slope (MB/hour) and says if it
passed (``--max-rss-slope-mb-h``, default 10).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.peers import Mosquitto, PeerUnavailable, RtspServer, ServiceProc, free_port, wait_for
from loadtest.report import render_html

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIPS = [
    ROOT.parent / "shared" / "data" / "video" / n
    for n in ("pedestrians_720p25.mp4", "futsal_broadcast_720x1280p30.mp4")
]


@dataclass
class Recorder:
    """Subscribes to ``<prefix>/+/tracks``; keeps (receipt, capture, frame, tracks) per stream."""

    port: int
    prefix: str
    rows: dict[str, list[tuple[float, float, int, int]]] = field(default_factory=dict)

    def start(self) -> Recorder:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"loadtest-{os.getpid()}")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{self.prefix}/+/tracks", qos=0)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        return self

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.time()
        try:
            m = json.loads(msg.payload)
            row = (now, float(m["capture_ts"]), int(m["frame"]), len(m["tracks"]))
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.rows.setdefault(m["stream"], []).append(row)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def parse_detector(spec: str) -> dict[str, Any]:
    """``fake:20ms`` | ``onnx:MODEL.onnx`` | ``sagemaker:ENDPOINT`` | ``oip:URL[#MODEL]`` -> a detector config."""
    kind, _, arg = spec.partition(":")
    if kind == "fake":
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*ms", arg or "20ms")
        if not m:
            raise SystemExit(f"loadtest: --detector fake:<N>ms, got {spec!r}")
        return {
            "kind": "fake",
            "latency_ms": float(m.group(1)),
            "boxes": 12,
            "max_batch": 8,
            "max_in_flight": 2,
        }
    if kind == "onnx" and arg:
        return {"kind": "onnx", "model": arg, "classes": [0], "max_batch": 8}
    if kind == "sagemaker" and arg:
        return {"kind": "sagemaker", "endpoint": arg, "classes": [0]}
    if kind == "oip" and arg.startswith(("http://", "https://")):
        url, _, model = arg.partition("#")
        return {"kind": "oip", "url": url, "model": model or "yolox", "classes": [0], "max_batch": 8}
    raise SystemExit(
        f"loadtest: --detector must be fake:20ms, onnx:MODEL, sagemaker:ENDPOINT or oip:URL[#MODEL], got {spec!r}"
    )


def loop_clip(clip: Path, seconds: float, workdir: Path) -> Path:
    """A copy of ``clip`` repeated to last at least ``seconds`` (stream copy, no re-encoding)."""
    import av

    with av.open(str(clip)) as c:
        length = float(c.duration or 0) / 1e6 or 10.0
    repeats = max(0, math.ceil((seconds + 10) / length) - 1)
    out = workdir / f"{clip.stem}-x{repeats + 1}.mp4"
    if not out.exists():
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise PeerUnavailable("ffmpeg is not installed (make test installs it)")
        subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", str(repeats), "-i", str(clip), "-an", "-c", "copy",
                        str(out)], check=True)  # fmt: skip
    return out


def clip_fps(clip: Path) -> float:
    import av

    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        return float(s.average_rate or 25)


class ResourceSampler(threading.Thread):
    """CPU % and RSS (with children) of the service processes, summed, every ``interval`` seconds."""

    def __init__(self, pids: list[int], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (t, cpu %, rss MB)
        self._stop = threading.Event()

    def run(self) -> None:
        for p in self.procs:
            p.cpu_percent(None)
        while not self._stop.wait(self.interval):
            cpu = rss = 0.0
            try:
                for p in self.procs:
                    with p.oneshot():
                        cpu += p.cpu_percent(None)
                        rss += p.memory_info().rss / 2**20
                        for child in p.children(recursive=True):
                            rss += child.memory_info().rss / 2**20
            except Exception:
                return
            self.samples.append((time.time(), cpu, rss))

    def stop(self) -> None:
        self._stop.set()


def quantile(vals: list[float], q: float) -> float | None:
    if not vals:
        return None
    v = sorted(vals)
    return v[min(len(v) - 1, int(q * len(v)))]


def rss_slope_mb_per_hour(samples: list[tuple[float, float, float]]) -> float | None:
    """Least-squares slope of RSS after the first 20% of the run (warm-up), in MB per hour."""
    if len(samples) < 10:
        return None
    warm = samples[len(samples) // 5 :]
    t0 = warm[0][0]
    xs = [(t - t0) / 3600 for t, _, _ in warm]
    ys = [r for _, _, r in warm]
    try:
        return statistics.linear_regression(xs, ys).slope
    except statistics.StatisticsError:  # every sample at the same time
        return None


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """Per-stream counters from the Prometheus text: received, processed, dropped:<cause>."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    wanted = {f"trackcast_frames_{k}_total": k for k in ("received", "processed", "dropped")}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = wanted.get(sample.name)
            if key is None or "stream" not in sample.labels:
                continue
            if key == "dropped":
                key = f"dropped:{sample.labels.get('cause')}"
            out.setdefault(sample.labels["stream"], {})[key] = float(sample.value)
    return out


def run_once(n: int, duration: float, clips: list[Path], detector: dict[str, Any], workdir: Path,
             service_url: str | list[str] | None = None, mqtt_url: str | None = None, token: str | None = None,
             quiet: bool = False, instances: int = 1, detect_fps: float | None = None,
             topic_prefix: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One load run with ``n`` streams for ``duration`` seconds; returns the result dict.

    ``service_url``: one running service, or several (the instances of a sharded cluster: each
    stream is added where it is accepted; another shard's instance answers 409). Otherwise
    ``instances`` services are spawned, as shards 0..instances-1 of one cluster.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    looped = [loop_clip(c, duration, workdir) for c in clips]
    mounts = {f"cam{i}": looped[i % len(looped)] for i in range(n)}
    source_fps = {f"cam{i}": clip_fps(clips[i % len(clips)]) for i in range(n)}
    target_fps = {sid: min(f, detect_fps) if detect_fps else f for sid, f in source_fps.items()}
    urls = [service_url] if isinstance(service_url, str) else list(service_url or [])
    rtsp = RtspServer(mounts).start()
    broker = None
    spawned: list[ServiceProc] = []
    # a spawned service publishes under a prefix of this run's own; a running one under its own (default trackcast)
    prefix = topic_prefix or ("trackcast" if urls else f"lt{os.getpid()}")
    try:
        if mqtt_url:
            port = int(mqtt_url.rsplit(":", 1)[1].strip("/"))
        else:
            broker = Mosquitto(workdir / "broker").start()
            mqtt_url, port = broker.url, broker.port
        rec = Recorder(port, prefix).start()
        streams: list[dict[str, Any]] = [
            {"id": sid, "url": rtsp.url(sid)} | ({"detect_fps": detect_fps} if detect_fps else {})
            for sid in mounts
        ]
        owners: dict[str, ServiceProc] = {}
        if not urls:
            for k in range(instances):
                cluster = {"cluster": {"shards": instances, "shard": k}} if instances > 1 else {}
                spawned.append(ServiceProc(workdir / f"service{k}", {
                    "instance": f"loadtest-{k}", "mqtt": {"url": mqtt_url, "topic_prefix": prefix},
                    "detector": detector, "streams": streams, "log_level": "warning", **cluster,
                }))  # fmt: skip
            for svc in spawned:
                svc.start()
            apis: list[ServiceProc] = list(spawned)
            for sid in mounts:
                owners[sid] = next(a for a in apis if a.request("GET", f"/streams/{sid}")[0] == 200)
        else:
            apis = [_RemoteService(u, token) for u in urls]
            for s in streams:
                answers = []
                for api in apis:
                    code, body = api.request("POST", "/streams", s)
                    if code == 201:
                        owners[str(s["id"])] = api
                        break
                    answers.append(body)
                    if code != 409:  # 409: another shard's stream; ask the next instance
                        break
                else:
                    raise SystemExit(f"loadtest: no instance took stream {s['id']}: {answers}")
                if s["id"] not in owners:
                    raise SystemExit(f"loadtest: the service refused stream {s['id']}: {answers[-1]}")
        pids = [p.proc.pid for p in spawned if p.proc is not None]
        sampler = ResourceSampler(pids) if pids else None
        if sampler:
            sampler.start()
        t_start = time.time()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            if not quiet:
                got = sum(len(v) for v in rec.rows.values())
                print(f"  {time.time() - t_start:6.0f}s  {got} frames received", file=sys.stderr, flush=True)
        texts = [api.get("/metrics")[1] for api in apis]  # first, then stop listening: parsing takes a while
        t_end = time.time()
        if sampler:
            sampler.stop()
        rec.stop()
        counters: dict[str, dict[str, float]] = {}
        for api, text in zip(apis, texts, strict=True):
            for sid, c in parse_metrics(text if isinstance(text, str) else "").items():
                if owners.get(sid) is api:
                    counters[sid] = c
        if urls:
            for sid, api in owners.items():
                api.request("DELETE", f"/streams/{sid}")
    finally:
        for svc in spawned:
            if svc.proc is not None:
                svc.stop()
        rtsp.stop()
        if broker is not None:
            broker.stop()
    res = summarize(n, duration, t_start, t_end, rec.rows, target_fps, counters,
                    sampler.samples if sampler else [], detector)  # fmt: skip
    res["instances"] = len(urls) or instances
    res["served_by"] = {sid: apis.index(api) for sid, api in owners.items()}
    return res


class _RemoteService(ServiceProc):
    """An already running service, reached over its HTTP API."""

    def __init__(self, url: str, token: str | None) -> None:
        self.port = int(url.rstrip("/").rsplit(":", 1)[1])
        self.token = token


def summarize(n: int, duration: float, t_start: float, t_end: float, rows: dict[str, list[tuple[float, float, int, int]]],
              source_fps: dict[str, float], counters: dict[str, dict[str, float]],
              resources: list[tuple[float, float, float]], detector: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    warm = t_start + min(5.0, duration * 0.2)  # skip connection set-up
    streams: dict[str, dict[str, Any]] = {}
    all_lat: list[float] = []
    for sid, fps in source_fps.items():
        r = [x for x in rows.get(sid, []) if x[0] >= warm]
        lat = [(recv - cap) * 1000 for recv, cap, _, _ in r]
        all_lat += lat
        span = (r[-1][0] - r[0][0]) if len(r) > 1 else 0.0
        c = counters.get(sid, {})
        received = c.get("received", 0.0)
        dropped = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("dropped:") and v}
        streams[sid] = {
            "source_fps": fps,
            "processed_fps": (len(r) - 1) / span if span > 0 else 0.0,
            "mqtt_messages": len(rows.get(sid, [])),
            "frames_received": received,
            "frames_processed": c.get("processed", 0.0),
            "dropped": dropped,
            # frames skipped by detect_fps are skipped on purpose: not drops
            "drop_rate": (sum(v for k, v in dropped.items() if k != "sampling") / received)
            if received
            else 0.0,
            "latency_ms": {"p50": quantile(lat, 0.5), "p95": quantile(lat, 0.95), "p99": quantile(lat, 0.99)},
            "tracks_per_frame": (sum(x[3] for x in r) / len(r)) if r else 0.0,
        }
    cpu = [c for _, c, _ in resources]
    rss = [m for _, _, m in resources]
    return {
        "streams_n": n,
        "duration_s": duration,
        "detector": {k: v for k, v in detector.items() if k != "model"}
        | ({"model": Path(detector["model"]).name} if "model" in detector else {}),
        "machine": {"cores": os.cpu_count()},
        "streams": streams,
        "latency_ms": {
            "p50": quantile(all_lat, 0.5),
            "p95": quantile(all_lat, 0.95),
            "p99": quantile(all_lat, 0.99),
        },
        "fps_ratio_min": min((s["processed_fps"] / s["source_fps"] for s in streams.values()), default=0.0),
        "drop_rate_max": max((s["drop_rate"] for s in streams.values()), default=0.0),
        "cpu_percent": {"mean": sum(cpu) / len(cpu) if cpu else None, "max": max(cpu) if cpu else None},
        "rss_mb": {
            "start": rss[0] if rss else None,
            "end": rss[-1] if rss else None,
            "max": max(rss) if rss else None,
        },
        "rss_slope_mb_per_hour": rss_slope_mb_per_hour(resources),
        "series": {
            "resources": resources,
            "frames": {
                sid: [(recv, (recv - cap) * 1000) for recv, cap, _, _ in v] for sid, v in rows.items()
            },
            "t0": t_start,
            "t1": t_end,
        },
    }


def table(res: dict[str, Any]) -> str:
    def f(v: float | None, d: int = 1) -> str:
        return "-" if v is None else f"{v:.{d}f}"

    lines = [
        f"{'stream':<8}{'src fps':>8}{'fps':>8}{'drop %':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'tracks':>8}  drops by cause"
    ]
    for sid, s in res["streams"].items():
        lat = s["latency_ms"]
        causes = ", ".join(f"{k} {int(v)}" for k, v in s["dropped"].items()) or "-"
        lines.append(f"{sid:<8}{s['source_fps']:>8.1f}{s['processed_fps']:>8.1f}{100 * s['drop_rate']:>8.1f}"
                     f"{f(lat['p50']):>8}{f(lat['p95']):>8}{f(lat['p99']):>8}{s['tracks_per_frame']:>8.1f}  {causes}")  # fmt: skip
    lat = res["latency_ms"]
    lines.append(f"all streams: p50 {f(lat['p50'])} ms, p95 {f(lat['p95'])} ms, p99 {f(lat['p99'])} ms; "
                 f"CPU mean {f(res['cpu_percent']['mean'], 0)}% max {f(res['cpu_percent']['max'], 0)}% "
                 f"(of {res['machine']['cores']} cores x 100%); RSS {f(res['rss_mb']['start'], 0)} -> "
                 f"{f(res['rss_mb']['end'], 0)} MB (max {f(res['rss_mb']['max'], 0)}), "
                 f"slope {f(res['rss_slope_mb_per_hour'])} MB/h")  # fmt: skip
    return "\n".join(lines)


def held(res: dict[str, Any], max_p99_ms: float, max_drop: float, min_fps_ratio: float) -> bool:
    p99 = res["latency_ms"]["p99"]
    return (p99 is not None and p99 <= max_p99_ms and res["drop_rate_max"] <= max_drop
            and res["fps_ratio_min"] >= min_fps_ratio)  # fmt: skip


def find_max(run: Any, max_n: int, max_p99_ms: float, max_drop: float, min_fps_ratio: float,
             label: str = "") -> tuple[int, list[dict[str, Any]]]:  # fmt: skip
    """Double N from 1, then bisect, until ``run(N)`` breaks a bound; (largest N that held, runs)."""
    runs: list[dict[str, Any]] = []
    best, lo, hi, n = 0, 0, None, 1
    while n <= max_n:
        res = run(n)
        runs.append(res)
        ok = held(res, max_p99_ms, max_drop, min_fps_ratio)
        print(f"  {label}{n} streams: p99 {res['latency_ms']['p99']} ms, drops {100 * res['drop_rate_max']:.1f}%, "
              f"fps ratio {res['fps_ratio_min']:.2f}: {'held' if ok else 'failed'}", file=sys.stderr, flush=True)  # fmt: skip
        if ok:
            lo, best = n, n
            n = n * 2 if hi is None else (n + hi) // 2
        else:
            hi = n
            n = (lo + hi) // 2
        if hi is not None and hi - lo <= 1:
            break
    return best, runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trackcast loadtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--duration", type=float, default=60.0, help="seconds per run (3600: soak)")
    p.add_argument(
        "--clip", action="append", type=Path, help="H.264 MP4 clip(s) to stream (default: the shared clips)"
    )
    p.add_argument("--detector", default="fake:20ms",
                   help="fake:20ms | onnx:MODEL.onnx | sagemaker:ENDPOINT | oip:URL[#MODEL]")  # fmt: skip
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--spawn", action="store_true", default=True, help="spawn a service with a generated config (default)"
    )
    g.add_argument("--service", action="append",
                   help="URL of a running service to add the streams to (needs --mqtt); repeat it for the "
                        "instances of a sharded cluster: each stream goes to the one that owns it")  # fmt: skip
    p.add_argument("--instances", type=int, default=1,
                   help="spawn this many services, as the shards of one cluster (default: 1)")  # fmt: skip
    p.add_argument("--detect-fps", type=float, default=None, help="frames per second each stream detects")
    p.add_argument("--mqtt", help="broker the service publishes to (default: a mosquitto started here)")
    p.add_argument("--token", help="bearer token of the service's API")
    p.add_argument("--topic-prefix", help="MQTT topic prefix of a running service (default: trackcast)")
    p.add_argument("--out", type=Path, default=Path("loadtest-out"))
    p.add_argument("--find-max", action="store_true", help="raise N until latency or drops cross the bounds")
    p.add_argument("--max-p99-ms", type=float, default=250.0)
    p.add_argument(
        "--max-drop",
        type=float,
        default=0.05,
        help="largest drop rate that still holds (live RTSP arrives in bursts: a few frames are always superseded)",
    )
    p.add_argument("--min-fps-ratio", type=float, default=0.9, help="processed/source fps that still holds")
    p.add_argument("--max-n", type=int, default=64)
    p.add_argument(
        "--max-rss-slope-mb-h", type=float, default=10.0, help="soak check: RSS growth allowed once warm"
    )
    args = p.parse_args(argv)
    if args.service and not args.mqtt:
        p.error("--service needs --mqtt (the broker that service publishes to)")
    clips = args.clip or DEFAULT_CLIPS
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        print(f"loadtest: clip not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    detector = parse_detector(args.detector)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="trackcast-loadtest-"))
    try:
        if not args.find_max:
            res = run_once(args.streams, args.duration, clips, detector, work, args.service, args.mqtt, args.token,
                           instances=args.instances, detect_fps=args.detect_fps, topic_prefix=args.topic_prefix)  # fmt: skip
            print(table(res))
            if args.duration >= 600:
                slope = res["rss_slope_mb_per_hour"]
                ok = slope is not None and slope <= args.max_rss_slope_mb_h
                res["soak"] = {"rss_slope_mb_per_hour": slope, "limit": args.max_rss_slope_mb_h, "passed": ok}
                print(f"soak: RSS slope after warm-up {slope if slope is None else round(slope, 2)} MB/h "
                      f"(limit {args.max_rss_slope_mb_h}): {'PASS' if ok else 'FAIL'}")  # fmt: skip
            runs = [res]
        else:

            def once(n: int) -> dict[str, Any]:
                return run_once(n, args.duration, clips, detector, work / f"n{n}", args.service, args.mqtt,
                                args.token, quiet=True, instances=args.instances, detect_fps=args.detect_fps, topic_prefix=args.topic_prefix)  # fmt: skip

            best, runs = find_max(once, args.max_n, args.max_p99_ms, args.max_drop, args.min_fps_ratio)
            res = next(r for r in runs if r["streams_n"] == best) if best else runs[-1]
            print(table(res))
            print(f"largest N that held (p99 <= {args.max_p99_ms:g} ms, drops <= {100 * args.max_drop:g}%, "
                  f"fps >= {args.min_fps_ratio:g} x source): {best}")  # fmt: skip
            res["find_max"] = {"largest_n": best, "tried": [(r["streams_n"], held(r, args.max_p99_ms, args.max_drop,
                               args.min_fps_ratio)) for r in runs]}  # fmt: skip
    except PeerUnavailable as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (args.out / "result.json").write_text(json.dumps(res, indent=1, default=float))
    (args.out / "report.html").write_text(render_html(res, runs))
    print(f"wrote {args.out / 'result.json'} and {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["free_port", "main", "run_once", "wait_for"]
