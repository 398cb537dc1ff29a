"""Generates the README's configuration reference from the config models (so they cannot drift).

python -m service.docs   # prints the Markdown table
"""

from __future__ import annotations

import json
import sys
from typing import Any, get_args

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from detector_client.config import (
    FakeDetectorConfig,
    MotionDetectorConfig,
    OnnxDetectorConfig,
    SageMakerDetectorConfig,
)
from service.config import (
    BatcherConfig,
    HttpConfig,
    MqttConfig,
    Settings,
    StreamConfig,
    TrackerSettings,
    WebRtcConfig,
)


def _default(name: str, field: Any) -> str:
    if name == "instance":
        return "(host name)"
    if field.default is not PydanticUndefined:
        v = field.default
    elif field.default_factory is not None:
        try:
            v = field.default_factory()
        except TypeError:
            return ""
        if isinstance(v, BaseModel):
            return ""
    else:
        return "(required)"
    if v is None:
        return "null"
    if hasattr(v, "get_secret_value"):
        return "(secret)"
    if isinstance(v, tuple):
        v = list(v)
    return json.dumps(v) if not isinstance(v, str) else v


def _rows(prefix: str, env: str, model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    out = []
    for name, f in model.model_fields.items():
        if name in skip:
            continue
        desc = (f.description or "").replace("|", "\\|")
        if env == "-":
            e = "(JSON list in `TRACKCAST_STREAMS`)"
        else:
            e = f"`TRACKCAST_{env}__{name.upper()}`" if env else f"`TRACKCAST_{name.upper()}`"
        out.append(f"| `{prefix}{name}` | {e} | `{_default(name, f)}` | {desc} |")
    return out


def reference() -> str:
    lines = ["| key | environment variable | default | meaning |", "|---|---|---|---|"]
    lines += _rows(
        "", "", Settings, skip=("mqtt", "detector", "tracker", "http", "batcher", "webrtc", "streams")
    )
    for section, model in (("mqtt", MqttConfig), ("tracker", TrackerSettings), ("http", HttpConfig),
                           ("batcher", BatcherConfig), ("webrtc", WebRtcConfig)):  # fmt: skip
        lines += _rows(f"{section}.", section.upper(), model)
    detectors: tuple[type[BaseModel], ...] = (OnnxDetectorConfig, SageMakerDetectorConfig, MotionDetectorConfig,
                                              FakeDetectorConfig)  # fmt: skip
    for dmodel in detectors:
        kind = get_args(dmodel.model_fields["kind"].annotation)[0]
        lines.append(
            f"| `detector.kind` | `TRACKCAST_DETECTOR__KIND` | `motion` | **`{kind}`**: {dmodel.__doc__ or ''} |".replace(
                "\n", " "
            )
        )
        lines += _rows(f"detector.({kind}) ", "DETECTOR", dmodel, skip=("kind",))
    lines += _rows("streams[].", "-", StreamConfig)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(reference() + "\n")
