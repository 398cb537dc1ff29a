"""The service's HTTP API, metrics, WHIP ingest, bad input and secrets, against real peers."""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA, run_trackcast
from tests.infra import Collector, Mosquitto, RtspServer, ServiceProc, wait_for

MODEL = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
PED = SHARED_DATA / "video" / "pedestrians_720p25.mp4"
FUTSAL = SHARED_DATA / "video" / "futsal_broadcast_720x1280p30.mp4"
needs_shared = pytest.mark.skipif(not MODEL.is_file(), reason=f"../shared is absent (looked for {MODEL})")

SECRET = "s3cr3t-Pa55"
TOKEN = "tok-9f8e7d6c"


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    b = Mosquitto(tmp_path / "broker", users={"svc": SECRET, "reader": "r"}).start()
    yield b
    b.stop()


class SilentServer:
    """Accepts TCP connections and never answers: a camera that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


@needs_shared
def test_api_metrics_auth_bad_sources_and_secrets(broker: Mosquitto, tmp_path: Path) -> None:
    rtsp = RtspServer({"ped": PED}, user="cam", password=SECRET).start()
    silent = SilentServer()
    notvideo = tmp_path / "notes.mp4"
    notvideo.write_text("this is not a video")
    sub = Collector(broker.port, username="reader", password="r")
    svc = ServiceProc(tmp_path / "svc", {
        "instance": "api",
        "mqtt": {"url": broker.url, "username": "svc", "password": SECRET},
        "detector": {"kind": "onnx", "model": str(MODEL), "classes": [0]},
        "http": {"token": TOKEN},
        "streams": [
            {"id": "cam", "url": rtsp.url("ped")},
            {"id": "refused", "url": "rtsp://127.0.0.1:1/none", "reconnect_min_s": 0.5, "reconnect_max_s": 1},
            {"id": "hangs", "url": f"rtsp://user:{SECRET}@127.0.0.1:{silent.port}/x", "open_timeout_s": 1,
             "read_timeout_s": 1, "reconnect_min_s": 0.5, "reconnect_max_s": 1},
            {"id": "notvideo", "url": str(notvideo)},
        ],
    })  # fmt: skip
    try:
        svc.start()
        # auth: everything but health needs the token
        assert svc.request("GET", "/streams", token="")[0] == 401
        assert svc.request("GET", "/metrics", token="wrong")[0] == 401
        assert svc.request("GET", "/healthz", token="")[0] == 200
        assert svc.request("GET", "/readyz", token="")[0] == 200
        wait_for(lambda: len(sub.of("/tracks", "cam")) >= 25, 60, "tracks of the camera")
        # bad sources: clear reasons, on the status topic and in the API; the good stream runs on
        wait_for(lambda: svc.stream("refused")["state"] == "reconnecting", 20, "refused to be reconnecting")
        wait_for(lambda: svc.stream("hangs")["state"] == "reconnecting", 20, "hangs to be reconnecting")
        wait_for(lambda: svc.stream("notvideo")["state"] == "offline", 20, "notvideo to be offline")
        assert "refused" in (svc.stream("refused")["reason"] or "")
        assert "timed out" in (svc.stream("hangs")["reason"] or "") or "stalled" in (
            svc.stream("hangs")["reason"] or ""
        )
        assert "not a video" in svc.stream("notvideo")["reason"]
        assert any(s["state"] == "reconnecting" for s in sub.of("/status", "refused"))
        assert sub.of("/status", "notvideo")[-1]["reason"].startswith("not a video")
        n_before = len(sub.of("/tracks", "cam"))
        time.sleep(2)
        assert len(sub.of("/tracks", "cam")) > n_before + 20, "the good stream never stopped"
        # streams API: add, duplicate, bad key, delete
        code, body = svc.request("POST", "/streams", {"id": "cam2", "url": rtsp.url("ped"), "detect_fps": 5})
        assert code == 201 and body["id"] == "cam2" and SECRET not in str(body)
        assert svc.request("POST", "/streams", {"id": "cam2", "url": "x.mp4"})[0] == 409
        code, body = svc.request("POST", "/streams", {"id": "cam3", "url": "x.mp4", "fps": 3})
        assert code == 400 and "fps: unknown key" in body["error"]
        code, body = svc.request("POST", "/streams", {"id": "bad id!", "url": "x.mp4"})
        assert code == 400 and "id:" in body["error"]
        wait_for(lambda: len(sub.of("/tracks", "cam2")) >= 8, 30, "cam2 tracks")
        msgs = sub.of("/tracks", "cam2")
        # detect_fps 5 of a 25 fps camera: about every 5th source frame is processed
        gaps = [b["frame"] - a["frame"] for a, b in itertools.pairwise(msgs)]
        assert 4 <= sorted(gaps)[len(gaps) // 2] <= 6, gaps
        # metrics: every series, with observations
        code, text = svc.request("GET", "/metrics")
        assert code == 200
        for series in (
            'trackcast_frames_received_total{stream="cam"}', 'trackcast_frames_processed_total{stream="cam"}',
            'trackcast_frames_dropped_total{cause="sampling",stream="cam2"}', 'trackcast_stream_reconnects_total{stream="refused"}',
            'trackcast_stream_up{stream="cam"} 1.0', 'trackcast_active_tracks{stream="cam"}',
            'trackcast_stage_seconds_count{stage="decode",stream="cam"}', 'trackcast_stage_seconds_count{stage="queue",stream="cam"}',
            'trackcast_stage_seconds_count{stage="detect",stream="cam"}', 'trackcast_stage_seconds_count{stage="track",stream="cam"}',
            'trackcast_stage_seconds_count{stage="publish",stream="cam"}', 'trackcast_end_to_end_seconds_count{stream="cam"}',
            "trackcast_detector_batch_size_count", "trackcast_mqtt_outbox_depth", "trackcast_mqtt_connected 1.0",
        ):  # fmt: skip
            line = next((ln for ln in text.splitlines() if ln.startswith(series)), None)
            assert line is not None, f"missing {series}"
            if "_count" in series or "received" in series or "processed" in series:
                assert float(line.split()[-1]) > 0, line
        reconnects = next(
            ln
            for ln in text.splitlines()
            if ln.startswith('trackcast_stream_reconnects_total{stream="refused"}')
        )
        assert float(reconnects.split()[-1]) >= 1
        # removing a stream removes its series and its retained status
        assert svc.request("DELETE", "/streams/cam2")[0] == 204
        assert svc.request("DELETE", "/streams/cam2")[0] == 404
        text = svc.request("GET", "/metrics")[1]
        assert 'stream="cam2"' not in text
        assert svc.get("/streams/cam2")[0] == 404
        assert svc.stop() == 0
    finally:
        svc.kill()
        rtsp.stop()
        silent.close()
        sub.close()
    # secrets never leak: logs, MQTT payloads, API answers
    everything = svc.log() + repr(sub.messages) + repr(svc.config_path.read_text().count(SECRET))
    assert SECRET not in svc.log()
    assert SECRET not in repr(sub.messages)
    assert "***@127.0.0.1" in repr(sub.of("/status", "hangs")) and everything
    # shutdown: offline statuses (retained) and the service's own status
    assert sub.of("/status", "cam")[-1]["state"] == "offline"
    assert sub.of("service/api/status")[-1]["state"] == "offline"


def test_malformed_config_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mqtt: {url: 'http://broker'}\ntracker: {track_thresh: 1.5}\nstreams: [{id: a, url: x.mp4, fps: 3}]\n"
    )
    res = run_trackcast("serve", "--config", str(bad), timeout=60)
    assert res.returncode == 2
    for key in ("mqtt.url", "tracker.track_thresh", "streams.0.fps: unknown key"):
        assert key in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    res = run_trackcast("serve", "--config", str(tmp_path / "missing.yaml"), timeout=60)
    assert res.returncode == 2 and "cannot read config" in res.stderr
    (tmp_path / "y.yaml").write_text("streams: [\n")
    res = run_trackcast("serve", "--config", str(tmp_path / "y.yaml"), timeout=60)
    assert res.returncode == 2 and "not valid YAML" in res.stderr


def test_missing_model_is_a_start_up_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"detector: {{kind: onnx, model: {tmp_path / 'none.onnx'}}}\nhttp: {{port: 0}}\n")
    res = run_trackcast("serve", "--config", str(cfg), timeout=60)
    assert res.returncode == 2 and "none.onnx: no such file" in res.stderr


@needs_shared
@pytest.mark.serial  # live WebRTC on the real model: frames per second count
def test_whip_publisher_is_tracked_across_sessions(tmp_path: Path) -> None:
    """An aiortc publisher streams, ends its session (DELETE on its Location), comes back, and
    comes back again with trickled candidates (PATCH): tracks each time, frame numbers that keep
    increasing for subscribers, and the token required on every WHIP route."""
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port)
    svc = ServiceProc(tmp_path / "svc", {
        "instance": "whip",
        "mqtt": {"url": broker.url},
        "http": {"token": TOKEN},
        "detector": {"kind": "onnx", "model": str(MODEL), "classes": [0]},
        "webrtc": {"host_addresses": ["127.0.0.1"], "ice_servers": ["stun:stun.invalid:3478"]},
    })  # fmt: skip
    try:
        svc.start()
        url = f"http://127.0.0.1:{svc.port}/whip/futsal"
        try:
            asyncio.run(_whip_sessions(url, sub))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- service log ---\n{svc.log()[-4000:]}") from exc
        wait_for(lambda: sub.of("/status", "futsal") and sub.of("/status", "futsal")[-1]["state"] == "offline", 20,
                 "the WHIP stream to go offline")  # fmt: skip
        assert svc.stop() == 0
        log = svc.log()
    finally:
        svc.kill()
        sub.close()
        broker.stop()
    msgs = sub.of("/tracks", "futsal")
    assert len(msgs) >= 100
    assert sum(len(m["tracks"]) for m in msgs) > 2 * len(msgs)
    assert msgs[0]["size"] == [720, 1280]
    frames = [m["frame"] for m in msgs]
    assert all(b > a for a, b in itertools.pairwise(frames)), (
        "frame numbers must keep increasing across sessions"
    )
    states = [s["state"] for s in sub.of("/status", "futsal")]
    assert states.count("online") >= 3, states
    assert "FrameOrderError" not in log and "Traceback" not in log and "never retrieved" not in log


async def _whip_sessions(url: str, sub: Collector) -> None:
    import aiohttp

    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data="v=0", headers={"Content-Type": "application/sdp"}) as r:
            assert r.status == 401  # no token
        async with http.options(url) as r:  # discovery: no token needed, ICE servers announced
            assert r.status == 204 and r.headers.getall("Link") == [
                '<stun:stun.invalid:3478>; rel="ice-server"'
            ]
        for session, trickle in enumerate((False, False, True), start=1):
            await _publish_whip(http, url, auth, sub, want=40 * session, trickle=trickle)


async def _publish_whip(
    http, url: str, auth: dict[str, str], sub: Collector, want: int, trickle: bool
) -> None:  # type: ignore[no-untyped-def]
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer

    from service.webrtc import configure_ice

    configure_ice(["127.0.0.1"])  # this test's own traffic stays on loopback
    player = MediaPlayer(str(FUTSAL))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(player.video)
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    lines = offer.splitlines()
    candidates = [ln for ln in lines if ln.startswith("a=candidate:")]
    if trickle:  # the offer goes without candidates; they follow in a PATCH
        offer = (
            "\r\n".join(ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of-candidates")))
            + "\r\n"
        )
    async with http.post(url, data=offer, headers={**auth, "Content-Type": "application/sdp"}) as r:
        assert r.status == 201, await r.text()
        location = r.headers["Location"]
        assert (
            location.startswith("/whip/futsal/sessions/")
            and len(location) > len("/whip/futsal/sessions/") + 8
        )
        assert r.headers.getall("Link") == ['<stun:stun.invalid:3478>; rel="ice-server"']
        answer = await r.text()
    assert "a=setup:passive" in answer  # trackcast is the DTLS server
    session = url.rsplit("/whip/", 1)[0] + location
    frag_type = {"Content-Type": "application/trickle-ice-sdpfrag"}
    if trickle:
        mid = next(ln[6:] for ln in lines if ln.startswith("a=mid:"))
        frag = "\r\n".join([f"a=mid:{mid}", *candidates, "a=end-of-candidates", ""])
        async with http.patch(session, data=frag, headers={**auth, **frag_type}) as r:
            assert r.status == 204, await r.text()
    async with http.patch(session, data="a=ice-ufrag:zzzz\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyy\r\n",
                          headers={**auth, **frag_type, "If-Match": "*"}) as r:  # fmt: skip
        assert r.status == 501  # an ICE restart: not supported, said so
    async with http.patch(session + "x", data="a=end-of-candidates", headers={**auth, **frag_type}) as r:
        assert r.status == 404
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and len(sub.of("/tracks", "futsal")) < want:
        await asyncio.sleep(0.2)
    assert len(sub.of("/tracks", "futsal")) >= want, f"session wanted {want} tracks messages"
    async with http.delete(session, headers=auth) as r:
        assert r.status == 200
    async with http.delete(session, headers=auth) as r:
        assert r.status == 404  # ended already
    await pc.close()
    if player.video:
        player.video.stop()


@needs_shared
@pytest.mark.serial  # live WebRTC on the real model: frames per second count
def test_gstreamer_webrtcbin_publishers_vp8_h264_with_and_without_trickle(tmp_path: Path) -> None:
    """Publishers nobody on the team wrote the WebRTC of: GStreamer's webrtcbin (Debian's 1.22,
    RSA certificate), VP8 and H.264, the offer with all candidates or trickled by PATCH, into
    `trackcast serve` with a token. In a network namespace made here, with a veth pair whose
    addresses exist only inside it (WebRTC needs a non-loopback candidate). Each stream's tracks
    reach MQTT, in frame order, at the publisher's size."""
    import json
    import os
    import shutil
    import subprocess
    import uuid

    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace (make test installs iproute2)")
    ns = f"tc-{uuid.uuid4().hex[:8]}"
    setup = ("ip link set lo up && ip link add v0 type veth peer name v1 && ip addr add 10.99.0.1/24 dev v0 && "
             "ip addr add 10.99.0.2/24 dev v1 && ip link set v0 up && ip link set v1 up")  # fmt: skip
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", setup], check=True, capture_output=True)
        out = tmp_path / "whip.json"
        run = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "tests.whip_netns", str(out),
                              "10.99.0.1"], cwd=ROOT, capture_output=True, text=True, timeout=400)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    res = json.loads(out.read_text())
    log = res["log"]
    for sid, stream in res["streams"].items():
        pub = res["publishers"][sid]
        assert pub["rc"] == 0, f"{sid}: {pub['output'][-2000:]}\n{log[-3000:]}"
        assert '"step": "connected"' in pub["output"] and '"delete": 200' in pub["output"], pub["output"]
        frames = stream["frames"]
        assert len(frames) >= 30, (sid, len(frames), log[-3000:])
        assert all(b > a for a, b in itertools.pairwise(frames))
        assert stream["tracks"] > len(frames), (sid, stream["tracks"])  # people on the pitch, tracked
        assert stream["sizes"] == [[360, 640]]
        assert stream["states"][-1] == "offline" and "online" in stream["states"]
    trickled = res["publishers"]["gst-vp8-trickle"]["output"]
    assert '"candidates_in_offer": 0' in trickled  # the candidates really came by PATCH
    assert res["stop_rc"] == 0 and "Traceback" not in log
