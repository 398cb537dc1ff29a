"""``trackcast demo``: the whole service on a built-in default that needs no camera, model or broker.

An embedded MQTT broker (amqtt, a real broker, as a child process) unless ``--mqtt`` names one; a
live synthetic pitch (``synthetic://pitch``) unless ``--source`` names a camera or file; the
``motion`` detector unless ``--model`` gives a YOLOX ONNX model. Prints where to look once, then a
compact summary that refreshes; Ctrl-C stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from service.errors import ConfigError, redact_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class EmbeddedBroker:
    """amqtt's broker in a child process on a free loopback port (mosquitto if amqtt is missing)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="trackcast-broker-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.kind = ""

    def start(self) -> EmbeddedBroker:
        amqtt = Path(sys.executable).with_name("amqtt")
        if amqtt.exists() or shutil.which("amqtt"):
            conf = Path(self.dir) / "amqtt.yaml"
            conf.write_text(
                f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{self.port}\n"
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
            )
            cmd = [str(amqtt if amqtt.exists() else shutil.which("amqtt")), "-c", str(conf)]
            self.kind = "amqtt"
        elif shutil.which("mosquitto"):
            conf = Path(self.dir) / "mosquitto.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n")
            cmd = [str(shutil.which("mosquitto")), "-c", str(conf)]
            self.kind = "mosquitto"
        else:
            raise ConfigError(
                "no MQTT broker: install amqtt (pip) or mosquitto, or pass --mqtt mqtt://host:port"
            )
        log = open(Path(self.dir) / "broker.log", "wb")  # noqa: SIM115 (owned by the child process)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConfigError(f"the embedded {self.kind} broker exited: see {self.dir}/broker.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise ConfigError(f"the embedded {self.kind} broker did not start in 20 s: see {self.dir}/broker.log")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


#: The synthetic pitch as a 40 m x 20 m futsal pitch: its touchlines (drawn 20 px inside a 1280x720
#: frame) calibrate the ground, the halfway line counts, the left penalty area is a zone.
_X0, _Y0, _X1, _Y1 = 20 / 1280, 20 / 720, 1259 / 1280, 699 / 720
PITCH_ANALYTICS: dict[str, Any] = {
    "calibration": {"relative": True, "image": [[_X0, _Y0], [_X1, _Y0], [_X1, _Y1], [_X0, _Y1]],
                    "ground": [[0, 0], [40, 0], [40, 20], [0, 20]]},
    "lines": [{"id": "halfway", "relative": True, "points": [[0.5, _Y0], [0.5, _Y1]]}],
    "zones": [{"id": "left_box", "relative": True, "loiter_s": 10,
               "points": [[_X0, 0.3], [0.16, 0.3], [0.16, 0.7], [_X0, 0.7]]}],
}  # fmt: skip


def demo_settings(args: Any, mqtt_url: str, port: int) -> dict[str, Any]:
    source = args.source or "synthetic://pitch?players=14&fps=25"
    sid = "pitch" if source.startswith("synthetic://") else "camera"
    stream: dict[str, Any] = {"id": sid, "url": source}
    if "://" not in source or source.startswith("file://"):
        stream.update(mode="replay", realtime=True, loop=True)  # a file behaves like a camera
    if source.startswith("synthetic://pitch"):
        stream["analytics"] = PITCH_ANALYTICS
    if args.model:
        detector: dict[str, Any] = {"kind": "onnx", "model": args.model, "preprocess": args.preprocess,
                                    "classes": args.classes}  # fmt: skip
    else:
        detector = {"kind": "motion"}
    return {
        "instance": "demo",
        "mqtt": {"url": mqtt_url},
        "detector": detector,
        "http": {"host": args.host, "port": port},
        "tracker": {"track_thresh": 0.5},
        "streams": [stream],
        "log_level": "warning",
    }


def _line(v: dict[str, Any]) -> str:
    lat = v["latency"]
    p50 = "-" if lat["p50_ms"] is None else f"{lat['p50_ms']:.0f}"
    p99 = "-" if lat["p99_ms"] is None else f"{lat['p99_ms']:.0f}"
    state = v["state"] + (f" ({v['reason']})" if v["reason"] and v["state"] != "online" else "")
    return (f"  {v['id']:<10} {state:<28} {v['fps']:6.1f} fps  {v['active_tracks']:3d} tracks  "
            f"latency p50 {p50:>4} ms  p99 {p99:>4} ms  {v['frames_processed']:7d} frames")  # fmt: skip


async def _run(settings: Any, broker_note: str, duration: float | None, tty: bool) -> None:
    from service.runner import on_stop_signals, running

    stop = asyncio.Event()
    on_stop_signals(lambda _sig: stop.set())
    async with running(settings, "demo stopped") as (svc, http):
        base = f"http://{settings.http.host}:{http.port}"
        port = settings.mqtt.url.rsplit(":", 1)[1].strip("/")
        host = settings.mqtt.url.split("://", 1)[1].rsplit(":", 1)[0]
        p = settings.mqtt.topic_prefix
        print(
            "\ntrackcast demo is running\n"
            f"  live view  {base}/\n"
            f"  metrics    {base}/metrics\n"
            f"  streams    {base}/streams\n"
            f"  MQTT       {redact_url(settings.mqtt.url)}{broker_note}\n"
            f"  topics     {p}/<stream>/tracks | events | status | analytics, {p}/service/{settings.instance}/status\n"
            f"  watch it   mosquitto_sub -h {host} -p {port} -t '{p}/#' -v\n"
            f"  source     {settings.streams[0].safe_url()}   detector {settings.detector.kind}\n"
            "  Ctrl-C stops.\n",
            flush=True,
        )
        t0 = time.monotonic()
        shown = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            if stop.is_set():
                break
            lines = [_line(svc.stream_view(s)) for s in svc.streams.values()]
            if tty and shown:
                sys.stdout.write(f"\x1b[{shown}A")  # rewrite the previous summary in place
            sys.stdout.write("\n".join(f"{ln}\x1b[K" if tty else ln for ln in lines) + "\n")
            sys.stdout.flush()
            shown = len(lines)
            if duration is not None and time.monotonic() - t0 >= duration:
                break
    print("stopped cleanly", flush=True)


def run_demo(args: Any) -> int:
    from service.config import load_settings
    from service.logging_setup import setup_logging

    setup_logging("warning")
    port = args.port if _port_free(args.port) or args.port == 0 else 0
    broker: EmbeddedBroker | None = None
    note = ""
    try:
        if args.mqtt:
            mqtt_url = args.mqtt
        else:
            broker = EmbeddedBroker().start()
            mqtt_url, note = broker.url, f"  (embedded {broker.kind} broker)"
        settings = load_settings(None, demo_settings(args, mqtt_url, port))
        asyncio.run(_run(settings, note, args.duration, sys.stdout.isatty() and not os.environ.get("CI")))
    except ConfigError as exc:
        print(f"trackcast: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if broker is not None:
            broker.stop()
    return 0
