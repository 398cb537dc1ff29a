"""Hostile input on every HTTP route while another stream flows: 4xx with a message, never a 500,
a traceback or a stall of the neighbour.

One `trackcast serve` (fake detector, real mosquitto) replays a clip in real time as the
neighbour stream. Then the cases users met (an id ending in a newline, infinity as detect_fps,
``since=abc``, an over-long request line, ...) and a few hundred hypothesis-made requests go to
every route. After each: the answer is below 500 (4xx for what is known to be bad), with a JSON
message; the service answers /healthz. Over the whole time: the neighbour's tracks keep arriving
at its rate (no second without one), the MQTT connection never breaks, and the log has no
traceback.
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import time
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_DATA
from tests.infra import Collector, Mosquitto, ServiceProc, wait_for

PED = SHARED_DATA / "video" / "pedestrians_720p25.mp4"
needs_shared = pytest.mark.skipif(not PED.is_file(), reason=f"../shared is absent (looked for {PED})")


def send(port: int, method: str, path: str, body: bytes | None = None,
         ctype: str = "application/json") -> tuple[int, bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        headers = {"Content-Type": ctype} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def quote(s: str) -> str:
    return urllib.parse.quote(s, safe="")


KNOWN_BAD: list[tuple[str, str, bytes | None, str]] = [
    ("POST", "/streams", b'{"id": "cam\\n", "url": "clip.mp4"}', "application/json"),
    ("POST", "/streams", b'{"id": "inf", "url": "clip.mp4", "detect_fps": 1e400}', "application/json"),
    ("POST", "/streams", b'{"id": "nan", "url": "clip.mp4", "detect_fps": NaN}', "application/json"),
    ("POST", "/streams", b'{"id": "neg", "url": "clip.mp4", "open_timeout_s": -1}', "application/json"),
    ("POST", "/streams", b'{"id": "big", "url": "clip.mp4", "read_timeout_s": 1e300}', "application/json"),
    ("POST", "/streams", b'{"id": "ctl", "url": "rtsp://cam\\r\\nx"}', "application/json"),
    ("POST", "/streams", b"[1, 2]", "application/json"),
    ("POST", "/streams", b"{" * 100000, "application/json"),
    ("POST", "/streams", b"\xff\xfe", "application/json"),
    ("POST", "/streams", b'{"id": "neighbour", "url": "clip.mp4"}', "application/json"),  # exists: 409
    ("POST", "/streams", b"x" * (300 * 1024), "application/json"),  # over the body limit: 413
    ("GET", "/events/recent?since=abc", None, ""),
    ("GET", "/events/recent?since=-1", None, ""),
    ("GET", "/events/recent?since=99999999999999999999999999", None, ""),
    ("GET", "/streams/" + quote("cam\n"), None, ""),
    ("DELETE", "/streams/" + quote("nope\n"), None, ""),
    ("GET", "/streams/" + quote("x\x00") + "/frame.jpg", None, ""),
    ("POST", "/whip/" + quote("cam\n"), b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "application/sdp"),
    ("POST", "/whip/cam", b"not sdp at all, m=video", "application/sdp"),
    ("POST", "/whip/cam", b"\xff\xfe\xfd m=video", "application/sdp"),
    ("POST", "/whip/cam", b"v=0", "text/plain"),
    (
        "POST",
        "/whip/neighbour",
        b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        "application/sdp",
    ),  # not WHIP: 409
    ("PATCH", "/whip/cam/sessions/nope", b"a=end-of-candidates", "application/trickle-ice-sdpfrag"),
    ("DELETE", "/whip/cam/sessions/nope", None, ""),
    ("PUT", "/streams/neighbour/analytics", b"zones: everywhere", "application/json"),
    (
        "PUT",
        "/streams/neighbour/analytics",
        b'{"zones": [{"id": "z", "points": [[0,0],[9,9],[9,0],[0,9]]}]}',
        "application/json",
    ),  # self-intersecting
    (
        "PUT",
        "/streams/neighbour/analytics",
        b'{"lines": [{"id": "l", "points": [[0,0],[1e9,1]]}]}',
        "application/json",
    ),  # outside the frame
    ("PUT", "/streams/nope/analytics", b"{}", "application/json"),  # 404
]

ids = st.one_of(st.text(max_size=70), st.sampled_from(["neighbour", "cam", "a.b", "-x", "x" * 64]))
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(allow_nan=False),
              st.text(max_size=40)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)),
    max_leaves=8,
)  # fmt: skip
stream_bodies = st.fixed_dictionaries(
    {"id": ids, "url": st.one_of(st.text(max_size=40), st.just("whip"), st.just("missing.mp4"))},
    optional={k: values for k in ("mode", "realtime", "loop", "detect_fps", "transport", "open_timeout_s",
                                  "stall_timeout_s", "reconnect_max_s", "extra_key")},
)  # fmt: skip
points = st.lists(st.tuples(st.floats(-100, 3000), st.floats(-100, 3000)), max_size=6)
shapes = st.lists(
    st.fixed_dictionaries(
        {"id": ids, "points": points},
        optional={
            "relative": values,
            "classes": values,
            "loiter_s": values,
            "in_side": values,
            "hysteresis_px": values,
        },
    ),
    max_size=3,
)
analytics_bodies = st.fixed_dictionaries(
    {},
    optional={
        "zones": st.one_of(shapes, values),
        "lines": st.one_of(shapes, values),
        "calibration": st.one_of(st.fixed_dictionaries({"image": points, "ground": points}), values),
        "anchor": values,
        "anchors": values,
        "speed_window_s": values,
        "extra_key": values,
    },
)
requests = st.one_of(
    st.tuples(st.just("PUT"), st.just("/streams/neighbour/analytics"),
              analytics_bodies.map(lambda d: json.dumps(d).encode()), st.just("application/json")),
    st.tuples(st.just("POST"), st.just("/streams"), stream_bodies.map(lambda d: json.dumps(d).encode()),
              st.just("application/json")),
    st.tuples(st.just("POST"), st.just("/streams"), st.binary(max_size=200), st.just("application/json")),
    st.tuples(st.just("GET"), ids.map(lambda i: "/streams/" + quote(i)), st.none(), st.just("")),
    st.tuples(st.just("DELETE"), ids.filter(lambda i: i != "neighbour").map(lambda i: "/streams/" + quote(i)),
              st.none(), st.just("")),
    st.tuples(st.just("GET"), st.text(max_size=20).map(lambda s: "/events/recent?since=" + quote(s)), st.none(),
              st.just("")),
    st.tuples(st.just("GET"), ids.map(lambda i: f"/streams/{quote(i)}/frame.jpg"), st.none(), st.just("")),
    st.tuples(st.just("POST"), ids.map(lambda i: "/whip/" + quote(i)),
              st.text(max_size=300).map(lambda t: ("v=0\r\n" + t + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 96").encode()),
              st.just("application/sdp")),
    st.tuples(st.just("PATCH"), st.tuples(ids, st.text(max_size=20)).map(
        lambda t: f"/whip/{quote(t[0])}/sessions/{quote(t[1])}"), st.binary(max_size=200),
        st.just("application/trickle-ice-sdpfrag")),
)  # fmt: skip


@needs_shared
def test_hostile_requests_get_4xx_and_the_neighbour_keeps_flowing(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port)
    svc = ServiceProc(tmp_path / "svc", {
        "instance": "hostile",
        "mqtt": {"url": broker.url},
        "detector": {"kind": "fake", "latency_ms": 5, "boxes": 5},
        "streams": [{"id": "neighbour", "url": str(PED), "mode": "replay", "realtime": True, "loop": True}],
    })  # fmt: skip
    answers: list[tuple[str, str, int]] = []
    try:
        svc.start()
        wait_for(lambda: len(sub.of("/tracks", "neighbour")) > 25, 30, "the neighbour's tracks")
        t0 = time.time()
        time.sleep(3)
        base = len([m for m in sub.messages if m[0].endswith("neighbour/tracks") and m[2] >= t0]) / 3

        def probe(method: str, path: str, body: bytes | None, ctype: str, bad: bool) -> None:
            status, data = send(svc.port, method, path, body, ctype)
            answers.append((method, path[:60], status))
            assert status < 500, (method, path, body[:200] if body else None, status, data[:300])
            if bad:
                assert 400 <= status < 500, (method, path, status, data[:300])
                if status != 413:
                    assert "error" in json.loads(data), data[:300]
            if status == 201 and path == "/streams":
                sid = json.loads(data)["id"]
                assert send(svc.port, "DELETE", "/streams/" + quote(sid))[0] == 204
            assert send(svc.port, "GET", "/healthz")[0] == 200

        t_start = time.time()
        for method, path, body, ctype in KNOWN_BAD:
            probe(method, path, body, ctype, bad=True)
        # an over-long request line and a malformed header, on a raw socket
        for raw in (
            b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as s:
                s.sendall(raw)
                line = s.recv(200).split(b"\r\n", 1)[0]
            assert line.startswith((b"HTTP/1.0 4", b"HTTP/1.1 4")), line

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(requests)
        def fuzz(req: tuple[str, str, bytes | None, str]) -> None:
            probe(*req, bad=False)

        fuzz()
        t_end = time.time()
        status, streams = svc.get("/streams")
        assert status == 200 and [s["id"] for s in streams] == ["neighbour"]
        _, metrics = send(svc.port, "GET", "/metrics")
        assert b"\ntrackcast_mqtt_connected 1.0\n" in metrics
        log = svc.log()
        assert svc.stop() == 0
    finally:
        svc.kill()
        sub.close()
        broker.stop()
    got = [m[2] for m in sub.messages if m[0].endswith("neighbour/tracks") and t_start <= m[2] <= t_end]
    rate = len(got) / (t_end - t_start)
    assert rate >= 0.8 * base, (rate, base)
    gaps = [b - a for a, b in itertools.pairwise([t_start, *got, t_end])]
    assert max(gaps) < 1.0, max(gaps)
    assert "Traceback" not in log, log[-4000:]
    assert "MQTT" not in "".join(line for line in log.splitlines() if "unavailable" in line)
    assert len(answers) > 250
    print(
        f"{len(answers)} hostile requests over {t_end - t_start:.1f}s; neighbour {rate:.1f}/s (before {base:.1f}/s)"
    )
