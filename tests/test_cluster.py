"""A cluster on one machine: 3 `trackcast serve` processes (shards 0-2 of 3, as StatefulSet pods
would run), one stream list, one mosquitto, one shared detector server (NVIDIA Triton, as the
gpu-triton overlay runs it) and a GStreamer RTSP server with 6 looping camera streams. Every stream
is served by exactly one instance; any instance says who serves a stream; a stream added at the
wrong instance is refused with the owner; an instance killed with SIGKILL takes its streams offline
through its last will, and back online when it is started again, while the other instances'
streams flow on without a gap; growing to 4 shards moves only the streams whose owner changed."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from pathlib import Path

import pytest

from deploy.triton import write_model_repository
from loadtest.run import loop_clip
from service.rules.sharding import owner
from tests.infra import Collector, Mosquitto, RtspServer, ServiceProc, TritonServer, wait_for

STREAMS = [f"cam{i}" for i in range(6)]
# with these ids, growing to 4 shards moves some streams to the new one (checked below)


@pytest.mark.serial
def test_three_shards_share_six_streams_and_one_detector_server(tmp_path: Path) -> None:
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared is absent (looked for {SHARED_DATA})")
    clips = [
        SHARED_DATA / "video" / n for n in ("pedestrians_720p25.mp4", "futsal_broadcast_720x1280p30.mp4")
    ]
    # small cameras (640x360 at 10 fps), so that one 2-core machine runs all of the cluster at once
    small = []
    for c in clips:
        out = tmp_path / f"{c.stem}-360p10.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(c), "-an", "-vf", "scale=-2:360,fps=10", "-c:v",
                        "libx264", "-preset", "veryfast", "-g", "10", "-bf", "0", str(out)], check=True)  # fmt: skip
        small.append(out)
    looped = [loop_clip(c, 240, tmp_path) for c in small]  # cameras that outlast the test
    rtsp = RtspServer({s: looped[i % 2] for i, s in enumerate(STREAMS)}).start()
    # on CPUs small server batches: a batch of 16 would hold every stream's answer for half a second
    write_model_repository(SHARED_DATA / "models" / "yolox_nano_416x416.onnx", tmp_path / "repo", device="cpu",
                           max_batch=4)  # fmt: skip
    triton = TritonServer(tmp_path / "repo", tmp_path / "triton").start()
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port)
    procs: list[ServiceProc] = []

    def config(shard: int, shards: int = 3) -> dict:  # type: ignore[type-arg]
        return {
            "instance": f"trackcast-{shard}",
            "mqtt": {"url": broker.url, "keepalive_s": 5},
            "detector": {"kind": "oip", "url": triton.url, "model": "yolox", "classes": [0], "max_batch": 4},
            "cluster": {"shards": shards, "shard": shard},
            "streams": [{"id": s, "url": rtsp.url(s), "detect_fps": 4} for s in STREAMS],
        }  # fmt: skip

    try:
        for shard in range(3):
            procs.append(ServiceProc(tmp_path / f"svc{shard}", config(shard)).start())
        want = {s: owner(s, 3) for s in STREAMS}
        assert len(set(want.values())) == 3, "the six ids spread over all three shards"
        wait_for(lambda: all(sub.of("/tracks", s) for s in STREAMS), 60, "every stream's tracks")
        # people on every camera, found by the one detector server all three instances share
        assert all(any(m["tracks"] for m in sub.of("/tracks", s)) for s in STREAMS)
        # each instance serves exactly its streams, and says who serves the others
        for shard, p in enumerate(procs):
            listed = {v["id"]: v for v in p.get("/streams")[1]}
            assert set(listed) == set(STREAMS)
            assert {s for s, v in listed.items() if v["served_here"]} == {
                s for s, o in want.items() if o == shard
            }
            assert all(v["shard"] == want[s] for s, v in listed.items())
        statuses = {
            m["instance"]: m["streams"] for m in sub.of("/status") if m and "instance" in m and "streams" in m
        }
        assert {s for lst in statuses.values() for s in lst} == set(STREAMS)
        assert sum(len(v) for v in statuses.values()) == len(STREAMS), "no stream served twice"
        # a runtime-added stream goes to its owner
        new = "extra-1"
        right = owner(new, 3)
        wrong = (right + 1) % 3
        status, body = procs[wrong].request("POST", "/streams", {"id": new, "url": "synthetic://pitch?fps=5"})
        assert status == 409 and body["shard"] == right and f"shard {right}" in body["error"]
        assert (
            procs[right].request("POST", "/streams", {"id": new, "url": "synthetic://pitch?fps=5"})[0] == 201
        )
        assert procs[right].request("DELETE", f"/streams/{new}")[0] == 204
        # kill -9 one instance: its streams go offline through its last will; the others flow on
        victim = want["cam0"]
        gone = [s for s, o in want.items() if o == victim]
        others = [s for s in STREAMS if s not in gone]
        t_kill = time.time()
        p = procs[victim]
        assert p.proc is not None
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait(10)

        def will() -> bool:
            return any(m and m.get("instance") == f"trackcast-{victim}" and m.get("state") == "offline"
                       for m in sub.of(f"service/trackcast-{victim}/status"))  # fmt: skip

        wait_for(will, 15, "the killed instance's last will")
        assert time.time() - t_kill <= 5 * 1.5 + 2, "within the keepalive"
        # started again, as Kubernetes restarts the pod: its streams come back online
        procs[victim] = ServiceProc(tmp_path / f"svc{victim}-again", config(victim)).start()
        t_back = time.time()
        wait_for(lambda: all(any(t > t_back for _, t in sub.timed("/tracks", s)) for s in gone), 30, "back")
        for s in gone:
            assert sub.of("/status", s)[-1]["state"] == "online"
        for s in others:
            times = [t for _, t in sub.timed("/tracks", s) if t_kill - 2 <= t <= t_back + 2]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            # Tracks at 4 fps: gaps of 0.25 s, more while the restarted instance imports and loads
            # its model on the same 2 cores (1.1 s seen). A stream that waited for the failover
            # would be gone for the keepalive, 7.5 s or more.
            assert times and max(gaps) < 3.0, (
                f"{s}: a gap of {max(gaps):.2f}s while another instance died: {times}"
            )
        # 3 -> 4 shards (the StatefulSet grown by one): only the streams the new shard takes move
        for p in procs:
            p.stop()
        procs = [ServiceProc(tmp_path / f"svc{k}-of-4", config(k, 4)).start() for k in range(4)]
        served = {k: {v["id"] for v in p.get("/streams")[1] if v["served_here"]} for k, p in enumerate(procs)}
        assert sorted(s for v in served.values() for s in v) == sorted(STREAMS), "each served exactly once"
        moved = {s for s in STREAMS if s not in served[want[s]]}
        assert moved == {s for s in STREAMS if owner(s, 4) != want[s]}
        assert moved and moved == served[3], (
            "what moved went to the new shard, nothing moved between the others"
        )
        assert 'nv_inference_request_success{model="yolox"' in triton.metrics()
    finally:
        for p in procs:
            p.kill()
        sub.close()
        broker.stop()
        triton.stop()
        rtsp.stop()
