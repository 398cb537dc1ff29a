"""Following one player from a box on the shared clips: `trackcast follow` (the single-object tracker
alone, and re-acquired through the multi-object tracker), and `POST /streams/{id}/follow` at run time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.rules.follow import iou
from tests.conftest import SHARED_DATA, run_trackcast
from tests.infra import Collector, Mosquitto, ServiceProc, wait_for
from tracker.mot import read_mot

MODEL = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
FUTSAL = SHARED_DATA / "video" / "futsal_broadcast_720x1280p30.mp4"
PED = SHARED_DATA / "video" / "pedestrians_720p25.mp4"
FRAMES = 90  # of each clip

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"../shared is absent (looked for {MODEL})")


@pytest.fixture(scope="module")
def detector() -> Iterator[Any]:
    from detector_client import create_detector
    from detector_client.config import OnnxDetectorConfig

    det = create_detector(OnnxDetectorConfig(model=str(MODEL), classes=[0], max_batch=4))
    yield det
    det.close()


def player_tracks(
    video: Path, det: Any, out: Path
) -> dict[int, dict[int, tuple[float, float, float, float]]]:
    """What `trackcast track` gives: track id -> frame -> box (x1, y1, x2, y2)."""
    from service.media.offline import track_video

    track_video(str(video), det, None, out, max_frames=FRAMES)
    tracks: dict[int, dict[int, tuple[float, float, float, float]]] = {}
    for r in read_mot(out):
        tracks.setdefault(int(r[1]), {})[int(r[0])] = (r[2], r[3], r[2] + r[4], r[3] + r[5])
    return tracks


def overlap(follow: Path, truth: dict[int, tuple[float, float, float, float]]) -> np.ndarray:
    got = {d["frame"]: d["box"] for d in map(json.loads, follow.read_text().splitlines())}
    return np.array(
        [iou(tuple(got[f]), b) if got.get(f) else 0.0 for f, b in sorted(truth.items()) if f in got]
    )


def test_follow_a_player_from_a_box_on_both_clips(detector: Any, tmp_path: Path) -> None:
    clips = {}
    for video, rank in ((FUTSAL, 0), (PED, 3)):
        tracks = clips[video] = player_tracks(video, detector, tmp_path / f"{video.stem}.txt")
        tid, truth = sorted(tracks.items(), key=lambda kv: -len(kv[1]))[
            rank
        ]  # one of the longest-lived players
        first = min(truth)
        x1, y1, x2, y2 = truth[first]
        from service.media.offline import follow_video

        out = tmp_path / f"{video.stem}-follow.jsonl"
        s = follow_video(
            str(video), (x1, y1, x2 - x1, y2 - y1), out, detector, start_frame=first, max_frames=FRAMES
        )
        o = overlap(out, truth)
        print(f"{video.name}: player {tid}, {len(o)} frames from {first}: IoU >= 0.5 in {np.mean(o >= 0.5):.3f}, "
              f"mean {o.mean():.3f}; boxes from {s.by_source}, SOT {s.sot_ms} ms/frame")  # fmt: skip
        assert len(o) >= 60 and np.mean(o >= 0.5) >= 0.95, (
            f"{video.name}: the followed box stays on player {tid}"
        )
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        bound = {d["track_id"] for d in lines if d["source"] == "track" and d["frame"] in truth}
        assert lines[0]["frame"] == first and bound == {tid}, "bound to that player's track while it lives"
    # the single-object tracker alone (no detector: an object the detector has no class for)
    tid, truth = sorted(clips[FUTSAL].items(), key=lambda kv: -len(kv[1]))[0]
    first = min(truth)
    x1, y1, x2, y2 = truth[first]
    out = tmp_path / "sot.jsonl"
    res = run_trackcast("follow", str(FUTSAL), "--box", f"{x1},{y1},{x2 - x1},{y2 - y1}", "--frame", str(first),
                        "--max-frames", str(first + 59), "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["frames"] == 60 and set(summary["by_source"]) <= {"sot", "none"}
    o = overlap(out, truth)
    got = {d["frame"]: d["box"] for d in map(json.loads, out.read_text().splitlines())}
    on = [b is not None and truth[f][0] <= (b[0] + b[2]) / 2 <= truth[f][2] and truth[f][1] <= (b[1] + b[3]) / 2 <= truth[f][3]
          for f, b in got.items() if f in truth]  # fmt: skip
    print(f"SOT alone, futsal player {tid}: IoU >= 0.5 in {np.mean(o >= 0.5):.3f} of {len(o)} frames, mean IoU "
          f"{o.mean():.3f}; its centre on the player in {np.mean(on):.3f}")  # fmt: skip
    assert np.mean(on) >= 0.9 and o.mean() >= 0.4, "the SOT alone stays on the player, if loosely"
    # bad input
    res = run_trackcast("follow", str(FUTSAL), "--box", "5000,10,20,20", "--out", str(tmp_path / "x.jsonl"))
    assert res.returncode == 2 and "outside the 720x1280 frame" in res.stderr, res.stderr
    res = run_trackcast("follow", str(FUTSAL), "--box", "1,2,3", "--out", str(tmp_path / "x.jsonl"))
    assert res.returncode == 2 and "expected x,y,w,h" in res.stderr


def test_post_follow_on_a_running_stream_publishes_the_players_box(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port)
    svc = ServiceProc(tmp_path / "svc", {
        "instance": "follow", "mqtt": {"url": broker.url},
        "detector": {"kind": "onnx", "model": str(MODEL), "classes": [0], "max_batch": 4},
        "streams": [{"id": "futsal", "url": str(FUTSAL), "realtime": True}],
    })  # fmt: skip
    try:
        svc.start()
        assert (
            svc.request("POST", "/streams/futsal/follow", {"point": [1, 1]})[0] == 400
        )  # nothing processed yet
        wait_for(lambda: len(sub.of("/tracks", "futsal")) >= 30, 60, "30 frames tracked")
        so_far = [x["id"] for m in sub.of("/tracks", "futsal") for x in m["tracks"]]
        last = sub.of("/tracks", "futsal")[-1]
        t = max(last["tracks"], key=lambda t: so_far.count(t["id"]))  # a player seen from the start
        cx, cy = (t["box"][0] + t["box"][2]) / 2, (t["box"][1] + t["box"][3]) / 2
        status, body = svc.request("POST", "/streams/futsal/follow", {"point": [cx, cy]})
        assert status == 201 and body["track_id"] == t["id"], body
        wait_for(lambda: len(sub.of("/follow", "futsal")) >= 60, 30, "60 follow messages")
        status, view = svc.request("GET", "/streams/futsal/follow")
        assert status == 200 and view["frames"]["track"] > 0 and view["track_id"] == t["id"]
        for bad, message in (({"box": [1, 2]}, "box must be 4 numbers"), ({"box": [9999, 1, 5, 5]}, "starts outside"),
                             ({}, 'body must be {"box"'), ({"point": [-50, -50]}, "no track under")):  # fmt: skip
            status, err = svc.request("POST", "/streams/futsal/follow", bad)
            assert status == 400 and message in err["error"], (bad, err)
        assert svc.request("POST", "/streams/nope/follow", {"box": [1, 1, 5, 5]})[0] == 404
        assert svc.request("DELETE", "/streams/futsal/follow")[0] == 204
        time.sleep(0.5)  # what was in flight lands
        n, frames = len(sub.of("/follow", "futsal")), len(sub.of("/tracks", "futsal"))
        wait_for(lambda: len(sub.of("/tracks", "futsal")) >= frames + 15, 10, "more frames tracked")
        assert len(sub.of("/follow", "futsal")) == n, "DELETE stops the messages"
        assert svc.request("GET", "/streams/futsal/follow")[0] == 404
        assert svc.stop() == 0
    finally:
        svc.kill()
        sub.close()
        broker.stop()
    follows = sub.of("/follow", "futsal")
    from service.messages import parse

    tracks_by_frame = {
        m["frame"]: {x["id"]: x["box"] for x in m["tracks"]} for m in sub.of("/tracks", "futsal")
    }
    on_player = []
    for m in follows:
        parse("follow", json.dumps(m))  # every message fits its schema
        boxes = tracks_by_frame.get(m["frame"], {})
        if t["id"] in boxes and m["box"] is not None:
            on_player.append(iou(tuple(m["box"]), tuple(boxes[t["id"]])))
    assert len(on_player) >= 40 and np.mean(np.array(on_player) >= 0.5) >= 0.95
    assert [m["frame"] for m in follows] == sorted(m["frame"] for m in follows), "in frame order"
