"""Hostile values in every config section: a clear ConfigError naming the key, or a config that is safe.

Safe means: ids and names are whole-string matches of their pattern (no newline "before the end"),
every number is finite and within its bounds, ports are in range, and nothing else is raised
(no pydantic internals, no TypeError) whatever the input. Property tests (hypothesis), no I/O.
"""

from __future__ import annotations

import math
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.config import Settings, load_settings, parse_stream
from service.errors import ConfigError

KNOWN = ["cam\n", "cam\r\n", "cam\x00", " cam", "cam/x", "cam#", "cam+", "", "a" * 65, "é", "cam\t", "../../etc",
         "cam\u2028", "%0a", "${jndi:x}"]  # fmt: skip
HOSTILE_TEXT = st.one_of(st.text(max_size=80), st.sampled_from(KNOWN))
HOSTILE_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e400, -1, 0, 1e300, 2**63, -(2**63), 99999]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=10),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
#: Every numeric key of every section (where it lives, how to build a config with it).
NUMERIC = {
    "mqtt": ["keepalive_s", "outbox_events", "outbox_tracks", "reconnect_max_s", "qos_tracks"],
    "tracker": ["track_thresh", "track_buffer", "match_thresh"],
    "http": ["port"],
    "batcher": ["max_batch", "max_wait_ms", "result_timeout_s"],
    "detector": ["latency_ms", "per_frame_ms", "boxes", "max_batch", "max_in_flight"],
    "stream": ["detect_fps", "open_timeout_s", "read_timeout_s", "stall_timeout_s", "reconnect_min_s",
               "reconnect_max_s"],
}  # fmt: skip
TEXT = {
    "top": ["instance", "log_level"],
    "mqtt": ["url", "topic_prefix", "username", "client_id"],
    "http": ["host"],
    "stream": ["id", "url", "mode", "transport"],
    "webrtc": ["ice_servers", "host_addresses"],
}
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _config(section: str, key: str, value: Any) -> dict[str, Any]:
    if section == "top":
        return {key: value}
    if section == "stream":
        return {"streams": [{"id": "cam1", "url": "clip.mp4", key: value}]}
    if section == "detector":
        return {"detector": {"kind": "fake", key: value}}
    if section == "webrtc":
        return {"webrtc": {key: [value]}}
    return {section: {key: value}}


def _load(cfg: dict[str, Any]) -> Settings | ConfigError:
    try:
        return load_settings(None, cfg)
    except ConfigError as exc:
        return exc


def _finite_numbers(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite_numbers(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_finite_numbers(v) for v in obj)
    return True


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([(s, k) for s, ks in NUMERIC.items() for k in ks]), HOSTILE_NUMBER)
def test_hostile_numbers_are_refused_by_key_or_are_finite(where: tuple[str, str], value: Any) -> None:
    section, key = where
    got = _load(_config(section, key, value))
    if isinstance(got, ConfigError):
        assert key in str(got), str(got)
        assert "\n" not in str(got)
    else:
        assert _finite_numbers(got.model_dump()), (section, key, value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([(s, k) for s, ks in TEXT.items() for k in ks]), HOSTILE_TEXT)
def test_hostile_text_is_refused_by_key_or_has_no_control_characters(
    where: tuple[str, str], value: str
) -> None:
    section, key = where
    got = _load(_config(section, key, value))
    if isinstance(got, ConfigError):
        assert key in str(got), str(got)
        return
    dumped = got.model_dump(mode="json")
    text = repr(dumped)
    assert not any(c in value for c in "\n\r\x00\t") or value not in text, (section, key, value)
    assert ID.fullmatch(got.instance)
    for s in got.streams:
        assert ID.fullmatch(s.id)


@settings(max_examples=500, deadline=None)
@given(HOSTILE_TEXT)
def test_stream_ids_are_whole_string_matches(value: str) -> None:
    try:
        cfg = parse_stream({"id": value, "url": "whip"})
    except ConfigError as exc:
        assert "id" in str(exc)
        assert ID.fullmatch(value) is None
        return
    assert ID.fullmatch(cfg.id) and cfg.id == value


def test_the_cases_users_met() -> None:
    """Each accepted before: a trailing newline in an id or instance name, infinity, a port of 99999."""
    cases = {
        "streams.0.id": {"streams": [{"id": "cam\n", "url": "clip.mp4"}]},
        "instance": {"instance": "edge-1\n"},
        "streams.0.detect_fps": {"streams": [{"id": "c", "url": "clip.mp4", "detect_fps": 1e400}]},
        "mqtt.url": {"mqtt": {"url": "mqtt://broker:99999"}},
        "webrtc.host_addresses": {"webrtc": {"host_addresses": ["not-an-ip"]}},
        "webrtc.ice_servers": {"webrtc": {"ice_servers": ["http://stun.example"]}},
        "http.host": {"http": {"host": "0.0.0.0\n"}},
    }
    for key, cfg in cases.items():
        got = _load(cfg)
        assert isinstance(got, ConfigError) and key in str(got), (key, got)
    assert "port 99999 is out of range" in str(_load(cases["mqtt.url"]))
