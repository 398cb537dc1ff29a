"""``trackcast deploy package``: model.tar.gz for SageMaker, optionally uploaded to S3.

Layout (what SageMaker's PyTorch/ONNX inference containers expect)::

    model.onnx                  the model, at the root
    trackcast-model.json        preprocessing convention, classes, thresholds
    code/inference.py           model_fn / input_fn / predict_fn / output_fn (imports the packages below)
    code/requirements.txt       what the handler needs on top of the container
    code/tracker/ code/detector_client/    the pure packages
    code/service/errors.py code/service/media/   the offline layer (decode, letterbox, track_video)
    code/service/rules/                         the pure rules (analytics: zones, lines, calibration)
    code/deploy/sagemaker/inference.py processing.py   the handler and the processing job

Only what the handler and the processing job run is shipped (``SHIPPED``), copied from this
installation (sources only), so the endpoint runs exactly the pre/post-processing and tracking
code of the client, and none of the service runtime (MQTT, HTTP, WebRTC, the demo).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from detector_client.yolox import DEFAULT_NMS_THRESH, DEFAULT_SCORE_THRESH

ROOT = Path(__file__).resolve().parents[2]
#: Files and folders (relative to the project root) that model.tar.gz carries under code/.
SHIPPED = (
    "tracker",
    "detector_client",
    "service/__init__.py",
    "service/errors.py",
    "service/media",
    "service/rules",
    "deploy/__init__.py",
    "deploy/errors.py",
    "deploy/sagemaker/__init__.py",
    "deploy/sagemaker/inference.py",
    "deploy/sagemaker/processing.py",
)
REQUIREMENTS = """numpy>=1.26
lap>=0.5.12
numba>=0.60
scipy>=1.11
onnx>=1.15
onnxruntime-gpu>=1.18
opencv-python-headless>=4.8
av>=12
pydantic>=2.6
pydantic-settings>=2.2
pyyaml>=6
"""
INFERENCE_SHIM = '''"""SageMaker entry point: the handler lives in deploy/sagemaker/inference.py (shipped beside this file)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from deploy.sagemaker.inference import input_fn, model_fn, output_fn, predict_fn  # noqa: E402,F401
'''


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def build(model: Path, out: Path, preprocess: str = "yolox", classes: list[int] | None = None,
          score_thresh: float = DEFAULT_SCORE_THRESH, nms_thresh: float = DEFAULT_NMS_THRESH) -> Path:  # fmt: skip
    """Write model.tar.gz; returns its path. Raises FileNotFoundError for a missing model."""
    if not model.is_file():
        raise FileNotFoundError(f"model {model} does not exist")
    cfg: dict[str, Any] = {"preprocess": preprocess, "classes": classes, "score_thresh": score_thresh,
                           "nms_thresh": nms_thresh}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        tar.add(model, arcname="model.onnx")
        _add_bytes(tar, "trackcast-model.json", json.dumps(cfg, indent=2).encode())
        _add_bytes(tar, "code/inference.py", INFERENCE_SHIM.encode())
        _add_bytes(tar, "code/requirements.txt", REQUIREMENTS.encode())
        for f in shipped_files():
            tar.add(f, arcname=f"code/{f.relative_to(ROOT)}")
    return out


def shipped_files() -> list[Path]:
    out: list[Path] = []
    for entry in SHIPPED:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        out += [f for f in files if "__pycache__" not in f.parts]
    return out


def upload(path: Path, s3_uri: str, clients: Any) -> str:
    """Upload to ``s3://bucket/prefix/`` (or a full key); returns the object's S3 URI."""
    from deploy.sagemaker.manage import explain_aws_error

    bucket, _, key = s3_uri.removeprefix("s3://").partition("/")
    if not key or key.endswith("/"):
        key = f"{key}{path.name}"
    try:
        clients("s3").upload_file(str(path), bucket, key)
    except Exception as exc:
        raise explain_aws_error(exc, f"upload to bucket {bucket}") from exc
    return f"s3://{bucket}/{key}"
