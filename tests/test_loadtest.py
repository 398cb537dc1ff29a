"""`trackcast loadtest`, CI-sized: 2 live RTSP streams for 20 s against a spawned service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, run_trackcast


@pytest.mark.serial
@pytest.mark.skipif(
    not (SHARED_DATA / "video").is_dir(), reason=f"../shared is absent (looked for {SHARED_DATA})"
)
def test_ci_sized_load_run_gives_sane_numbers(tmp_path: Path) -> None:
    out = tmp_path / "lt"
    res = run_trackcast("loadtest", "--streams", "2", "--duration", "20", "--detector", "fake:20ms", "--out", str(out),
                        timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    r = json.loads((out / "result.json").read_text())
    assert r["streams_n"] == 2 and set(r["streams"]) == {"cam0", "cam1"}
    for sid, s in r["streams"].items():
        lat = s["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] < 20_000, (
            sid,
            lat,
        )  # positive, below the run length
        assert abs(s["processed_fps"] - s["source_fps"]) <= 0.15 * s["source_fps"], (sid, s)
        # what the service says it processed is what arrived over MQTT (the run stops between the two reads)
        assert s["mqtt_messages"] <= s["frames_processed"] + 1
        assert s["mqtt_messages"] >= 0.97 * s["frames_processed"] - 5, (sid, s)
        assert s["frames_processed"] + sum(s["dropped"].values()) <= s["frames_received"] + 2
        assert s["drop_rate"] < 0.1
    assert r["cpu_percent"]["mean"] and 0 < r["cpu_percent"]["mean"] < 100 * r["machine"]["cores"]
    assert r["rss_mb"]["max"] > 50
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 5 and "cam0" in page and "<script" not in page
    assert "all streams: p50" in res.stdout


@pytest.mark.serial
@pytest.mark.skipif(
    not (SHARED_DATA / "video").is_dir(), reason=f"../shared is absent (looked for {SHARED_DATA})"
)
def test_load_run_against_the_instances_of_a_sharded_cluster(tmp_path: Path) -> None:
    """`--service` twice: two running instances, shards 0 and 1 of 2; each stream is added to the
    instance that owns it (the other answers 409) and every stream runs at real time."""
    from service.rules.sharding import owner
    from tests.infra import Mosquitto, ServiceProc

    broker = Mosquitto(tmp_path / "broker").start()
    procs = []
    try:
        for k in range(2):
            procs.append(ServiceProc(tmp_path / f"svc{k}", {
                "instance": f"lt-{k}", "mqtt": {"url": broker.url}, "cluster": {"shards": 2, "shard": k},
                "detector": {"kind": "fake", "latency_ms": 20, "boxes": 8}, "streams": [],
            }).start())  # fmt: skip
        out = tmp_path / "lt"
        args = ["loadtest", "--streams", "3", "--duration", "15", "--mqtt", broker.url, "--out", str(out)]
        for p in procs:
            args += ["--service", f"http://127.0.0.1:{p.port}"]
        res = run_trackcast(*args, timeout=300)
        assert res.returncode == 0, res.stderr + res.stdout
        r = json.loads((out / "result.json").read_text())
        assert r["instances"] == 2
        assert r["served_by"] == {sid: owner(sid, 2) for sid in ("cam0", "cam1", "cam2")}
        assert len(set(r["served_by"].values())) == 2, "these three ids spread over both shards"
        for sid, s in r["streams"].items():
            assert abs(s["processed_fps"] - s["source_fps"]) <= 0.15 * s["source_fps"], (sid, s)
            assert s["frames_processed"] > 0 and s["mqtt_messages"] >= 0.97 * s["frames_processed"] - 5, (
                sid,
                s,
            )
        for p in procs:  # the run removed what it added
            assert not [v for v in p.get("/streams")[1] if v["served_here"]]
    finally:
        for p in procs:
            p.kill()
        broker.stop()
