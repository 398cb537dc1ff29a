"""GStreamer webrtcbin publishers against ``trackcast serve`` over WHIP, run inside a network namespace.

``python -m tests.whip_netns OUT.json ADDRESS`` (run by ``tests/test_service_api.py`` through
``ip netns exec``): a mosquitto, the service (the real ONNX model, WebRTC host candidates on
``ADDRESS``, a bearer token) and one ``loadtest/gst_whip_publisher.py`` per case (VP8 and H.264,
with and without trickle ICE), all in the namespace, where ``ADDRESS`` is the only non-loopback
address there is. Writes what a subscriber saw per stream, the publishers' outputs and the
service's log to ``OUT.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from tempfile import mkdtemp

from loadtest.peers import ROOT, SYSTEM_PYTHON
from tests.conftest import SHARED_DATA
from tests.infra import Collector, Mosquitto, ServiceProc

CASES = {"gst-vp8": ("vp8", False), "gst-vp8-trickle": ("vp8", True), "gst-h264": ("h264", False),
         "gst-h264-trickle": ("h264", True)}  # fmt: skip
TOKEN = "gst-tok-31337"
MODEL = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
CLIP = SHARED_DATA / "video" / "futsal_broadcast_720x1280p30.mp4"


def main(out: Path, address: str) -> int:
    work = Path(mkdtemp(prefix="whip-netns-"))
    broker = Mosquitto(work / "broker").start()
    sub = Collector(broker.port)
    svc = ServiceProc(work / "svc", {
        "instance": "gst",
        "mqtt": {"url": broker.url},
        "http": {"token": TOKEN},
        "detector": {"kind": "onnx", "model": str(MODEL), "classes": [0]},
        "webrtc": {"host_addresses": [address]},
    })  # fmt: skip
    result: dict[str, object] = {}
    try:
        svc.start()
        publishers = {}
        for i, (sid, (codec, trickle)) in enumerate(CASES.items()):
            if i == 2:  # two at a time: four encoders and the model at once are too much for 2 cores
                for p in publishers.values():
                    p.wait(90)
            args = [SYSTEM_PYTHON, str(ROOT / "loadtest" / "gst_whip_publisher.py"), str(CLIP), "--url",
                    f"http://127.0.0.1:{svc.port}/whip/{sid}", "--codec", codec, "--token", TOKEN, "--seconds", "8", "--width", "360", "--height", "640"]  # fmt: skip
            if trickle:
                args.append("--trickle")
            publishers[sid] = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        outputs = {sid: p.communicate(timeout=90)[0] for sid, p in publishers.items()}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [
                sub.of("/status", sid)[-1]["state"] if sub.of("/status", sid) else None for sid in CASES
            ]
            if all(s == "offline" for s in states):
                break
            time.sleep(0.2)
        result = {
            "publishers": {sid: {"rc": publishers[sid].returncode, "output": outputs[sid]} for sid in CASES},
            "streams": {
                sid: {
                    "frames": [m["frame"] for m in sub.of("/tracks", sid)],
                    "tracks": sum(len(m["tracks"]) for m in sub.of("/tracks", sid)),
                    "sizes": sorted({tuple(m["size"]) for m in sub.of("/tracks", sid)}),
                    "states": [s["state"] for s in sub.of("/status", sid)],
                }
                for sid in CASES
            },
            "stop_rc": svc.stop(),
        }
    finally:
        svc.kill()
        result["log"] = svc.log()[-20000:]
        sub.close()
        broker.stop()
        out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
