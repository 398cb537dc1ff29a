"""The MQTT messages' JSON Schemas are generated from service.messages and checked in; they stay
current, and what the service builds validates against them."""

from __future__ import annotations

import json

import pytest

from service.messages import SCHEMA_DIR, json_schemas, parse, schema_text
from service.rules.lifecycle import TrackLifecycle

pytestmark = pytest.mark.unit


def test_checked_in_schemas_are_current() -> None:
    generated = json_schemas()
    on_disk = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert on_disk == set(generated), "run: python -m service.messages"
    for name, schema in generated.items():
        assert (SCHEMA_DIR / f"{name}.schema.json").read_text() == schema_text(schema), (
            f"{name}.schema.json is stale: run python -m service.messages"
        )


def test_events_the_lifecycle_builds_parse_as_their_types_and_bad_ones_do_not() -> None:
    life = TrackLifecycle("cam")
    started = life.update(3, 10.0, [(7, [1.0, 2.0, 3.0, 4.0], 0.9, 0)], [], now=11.0)[0]
    ended = life.end_all("shutdown", now=12.0)[0]
    assert parse("track_started", json.dumps(started))["id"] == 7
    assert parse("track_ended", json.dumps(ended))["reason"] == "shutdown"
    with pytest.raises(ValueError, match="event"):
        parse("track_started", json.dumps({**started, "event": "track_ended"}))
    with pytest.raises(ValueError, match="frame"):
        parse("track_started", json.dumps({k: v for k, v in started.items() if k != "frame"}))
    with pytest.raises(KeyError):
        parse("no_such_message", b"{}")


def test_the_wire_encoding_is_compact_utf8_json_with_null_for_non_finite_numbers() -> None:
    import math

    import numpy as np

    from service.messages import SCHEMA_VERSION, dumps

    body = {
        "v": SCHEMA_VERSION, "stream": "caf\u00e9", "frame": 12, "pts": 0.48, "capture_ts": 1764680000.1234,
        "size": [1280, 720], "latency_ms": {"decode": 4.125, "pipeline": 30.5},
        "tracks": [{"id": 1, "box": [1.5, 2.25, 100.0, 1.5e-7], "score": np.float64(0.9), "class": 0}],
    }  # fmt: skip
    wire = dumps(body)
    assert b" " not in wire and "caf\u00e9".encode() in wire  # compact; UTF-8, not \u escapes
    assert json.loads(wire) == body  # every number as written (numpy scalars too)
    assert parse("tracks", wire)["tracks"][0]["box"][3] == 1.5e-7
    # NaN and infinity are not JSON: they go out as null, which a strict parser still reads
    odd = json.loads(dumps({"speed": math.nan, "distance": math.inf, "max": -math.inf}))
    assert odd == {"speed": None, "distance": None, "max": None}
