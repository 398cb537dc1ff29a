"""`trackcast loadtest`, CI-sized: 2 live RTSP streams for 20 s against a spawned service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, run_trackcast


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
