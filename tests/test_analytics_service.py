"""Analytics through the real service and the real CLI: mosquitto, `trackcast serve`, `trackcast track`.

- A replay (every frame) of the ground-plane scene publishes exactly the analytics `trackcast
  track --analytics` writes for the same clip and file: per frame and track the zones, ground
  position, speed and distance; the same zone and line events; the same final counts.
- At run time: GET/PUT /streams/{id}/analytics; a bad PUT is a 400 naming the key and the old
  analytics keep running; the retained <stream>/analytics state, the zone/line metric series
  (gone with their zone, and with their stream); a stream whose configured zone does not fit its
  frames keeps streaming tracks and says why its analytics are off.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.media.ground_scene import GroundScene
from tests.conftest import run_trackcast
from tests.infra import Collector, Mosquitto, ServiceProc, wait_for


@pytest.fixture(scope="module")
def scene_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("scene")
    scene = GroundScene()
    video = scene.write_video(d / "scene.mp4")
    analytics = d / "analytics.yaml"
    analytics.write_text(yaml.safe_dump(scene.analytics()))
    return video, analytics


def _offline(
    video: Path, analytics: Path, out: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    res = run_trackcast("track", str(video), "--detector", "motion", "--analytics", str(analytics),
                        "--out", str(out / "tracks.txt"), "--summary", str(out / "summary.json"), "--no-progress")  # fmt: skip
    assert res.returncode == 0, res.stderr
    with (out / "tracks.analytics.csv").open() as f:
        rows = list(csv.DictReader(f))
    events = [json.loads(line) for line in (out / "tracks.events.jsonl").read_text().splitlines()]
    return rows, events, json.loads((out / "summary.json").read_text())


def _num(s: str) -> float | None:
    return None if s == "" else float(s)


def test_a_replay_publishes_the_analytics_the_offline_command_writes(scene_clip: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:  # fmt: skip
    video, analytics = scene_clip
    rows, offline_events, summary = _offline(video, analytics, tmp_path / "offline")
    assert summary["lines"]["halfway"]["in"] + summary["lines"]["halfway"]["out"] >= 4
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port)
    svc = ServiceProc(tmp_path / "svc", {
        "mqtt": {"url": broker.url},
        "detector": {"kind": "motion"},
        "streams": [{"id": "scene", "url": str(video), "mode": "replay", "realtime": False,
                     "analytics": yaml.safe_load(analytics.read_text())}],
    })  # fmt: skip
    try:
        svc.start()
        wait_for(lambda: svc.stream("scene")["state"] == "offline", 120, "the replay to finish")
        wait_for(lambda: len(sub.of("/tracks", "scene")) >= GroundScene().frames, 30, "every frame's tracks")
        time.sleep(0.5)
        view = svc.get("/streams/scene/analytics")[1]
    finally:
        svc.stop()
        sub.close()
        broker.stop()
    # per frame and track: the same values
    published = {(m["frame"], t["id"]): t for m in sub.of("/tracks", "scene") for t in m["tracks"]}
    assert len(published) == len(rows) > 500
    for r in rows:
        t = published[(int(r["frame"]), int(r["id"]))]
        where = f"frame {r['frame']} track {r['id']}"
        assert t["zones"] == [z for z in r["zones"].split(";") if z], where
        assert t["ground"] == ([float(r["ground_x"]), float(r["ground_y"])] if r["ground_x"] else None), where
        assert t["speed"] == _num(r["speed_mps"]) and t["distance"] == _num(r["distance_m"]), where
    # the same events (but for the closing reason: the end of the video vs the stream's end)

    def key(e: dict[str, Any]) -> tuple[Any, ...]:
        drop = {"ts", "stream"} | ({"reason"} if e.get("reason") not in (None, "left", "lost") else set())
        return tuple(sorted((k, json.dumps(v)) for k, v in e.items() if k not in drop))

    kinds = {"zone_entered", "zone_exited", "loitering", "line_crossed"}
    served = [e for e in sub.of("/events", "scene") if e["event"] in kinds]
    assert [key(e) for e in served] == [key(e) for e in offline_events]
    assert {e["event"] for e in served} >= {"zone_entered", "zone_exited", "line_crossed"}
    # and the same counts, in the retained state and the API
    state = sub.of("/analytics", "scene")[-1]
    assert state["lines"] == summary["lines"] == view["state"]["lines"]
    assert {z: {"entered": v["entered"]} for z, v in state["zones"].items()} == summary["zones"]
    assert all(v["occupancy"] == 0 for v in state["zones"].values())  # everybody exited at the end


def test_analytics_at_run_time(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port)
    half = {"zones": [{"id": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "relative": True}],
            "lines": [{"id": "mid", "points": [[0.5, 0], [0.5, 1]], "relative": True, "hysteresis_px": 2}]}  # fmt: skip
    svc = ServiceProc(tmp_path / "svc", {
        "mqtt": {"url": broker.url},
        "detector": {"kind": "motion"},
        "streams": [
            {"id": "pitch", "url": "synthetic://pitch?players=10&fps=25&width=640&height=360"},
            # a zone beyond its 640x360 frames: only known at its first frame
            {"id": "misfit", "url": "synthetic://pitch?players=4&fps=25&width=640&height=360",
             "analytics": {"zones": [{"id": "far", "points": [[0, 0], [900, 0], [900, 300]]}]}},
        ],
    })  # fmt: skip
    try:
        svc.start()
        wait_for(lambda: len(sub.of("/tracks", "pitch")) > 25, 30, "tracks")
        assert svc.get("/streams/pitch/analytics")[1] == {"config": None, "state": None, "error": None}
        status, body = svc.request("PUT", "/streams/pitch/analytics", half)
        assert status == 200, body
        wait_for(
            lambda: any(e["event"] == "line_crossed" for e in sub.of("/events", "pitch")), 60, "a crossing"
        )
        wait_for(lambda: sub.of("/analytics", "pitch"), 10, "the retained state")
        # a bad PUT names the key and changes nothing
        for bad, says in (
            ({"zones": [{"id": "z", "points": [[0, 0], [2000, 0], [0, 100]]}]}, "zones.0 (z).points.1: (2000, 0) is outside the 640x360 frame"),
            ({"zones": [{"id": "z", "points": [[0, 0], [100, 100], [100, 0], [0, 100]]}]}, "zones.0: the polygon intersects itself"),
            ({"lines": [{"id": "l", "points": [[0, 0], [1, 1]], "classes": ["dragon"]}]}, "lines.0.classes: unknown class 'dragon'"),
            ({"zones": "everywhere"}, "zones: Input should be a valid list"),
        ):  # fmt: skip
            status, body = svc.request("PUT", "/streams/pitch/analytics", bad)
            assert status == 400 and says in body["error"], body
        view = svc.get("/streams/pitch/analytics")[1]
        assert [z["id"] for z in view["config"]["zones"]] == ["left"] and view["error"] is None
        before = view["state"]["frame"]
        wait_for(
            lambda: svc.get("/streams/pitch/analytics")[1]["state"]["frame"] > before, 10, "analytics go on"
        )
        crossings = sum(view["state"]["lines"]["mid"].values())
        metrics = svc.get("/metrics")[1]
        assert 'trackcast_zone_occupancy{stream="pitch",zone="left"}' in metrics
        assert 'trackcast_line_crossings_total{direction="in",line="mid",stream="pitch"}' in metrics
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                      if line.startswith("trackcast_line_crossings_total{") and 'stream="pitch"' in line)  # fmt: skip
        assert counted >= crossings > 0
        # the misfit stream streams on and says why its analytics are off
        misfit = svc.get("/streams/misfit/analytics")[1]
        assert "zones.0 (far).points.1: (900, 0) is outside the 640x360 frame" in misfit["error"]
        assert svc.stream("misfit")["state"] == "online" and sub.of("/tracks", "misfit")
        # replaced by a zone on the other half: the old zone's visits exit, its series go
        other = {"zones": [{"id": "right", "points": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]], "relative": True}]}
        assert svc.request("PUT", "/streams/pitch/analytics", other)[0] == 200
        wait_for(
            lambda: "right" in (sub.of("/analytics", "pitch")[-1] or {}).get("zones", {}), 10, "new state"
        )
        metrics = svc.get("/metrics")[1]
        assert 'zone="left"' not in metrics and 'line="mid"' not in metrics and 'zone="right"' in metrics
        exits = [e for e in sub.of("/events", "pitch") if e["event"] == "zone_exited" and e["zone"] == "left"]
        assert exits and exits[-1]["reason"] == "analytics changed"
        # removing them clears the retained state
        assert svc.request("PUT", "/streams/pitch/analytics", {})[0] == 200
        removed_at = time.time()
        wait_for(lambda: sub.of("/analytics", "pitch")[-1] is None, 10, "the retained state cleared")
        assert svc.get("/streams/pitch")[1]["analytics"] is None
        assert "trackcast_zone_occupancy{" not in svc.get("/metrics")[1].replace('stream="misfit"', "")

        def after() -> list[dict[str, Any]]:  # frames decoded once the PUT was answered
            return [m for m in sub.of("/tracks", "pitch") if m["capture_ts"] > removed_at]

        wait_for(lambda: len(after()) >= 5, 10, "frames after the removal")
        assert all("zones" not in t for m in after() for t in m["tracks"])
        # a removed stream takes its analytics series and retained state with it
        assert svc.request("PUT", "/streams/pitch/analytics", half)[0] == 200
        wait_for(lambda: 'zone="left"' in svc.get("/metrics")[1], 10, "the series back")
        assert svc.request("DELETE", "/streams/pitch")[0] == 204
        metrics = svc.get("/metrics")[1]
        assert 'stream="pitch"' not in metrics
        wait_for(lambda: sub.of("/analytics", "pitch")[-1] is None, 10, "the retained state cleared")
    finally:
        svc.stop()
        sub.close()
        broker.stop()
