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
