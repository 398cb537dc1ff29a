"""SageMaker serving handler for YOLOX on ONNX Runtime (``code/inference.py`` of model.tar.gz).

The inference toolkits of SageMaker's PyTorch/ONNX containers call ``model_fn``, ``input_fn``,
``predict_fn`` and ``output_fn``; ``trackcast serve-model`` calls the same functions through
``handle``. Requests: the trackcast batch wire format (``detector_client.wire``), a single image
(``application/x-image``, ``image/jpeg``, ``image/png``), or, on an asynchronous endpoint, a whole
video (``video/mp4``, ``video/*``, ``application/octet-stream``; SageMaker reads it from the S3
input location and hands it over as the body), or a tar archive (``application/x-tar``) of a video
and an ``analytics.yaml`` (or ``.json``: zones, lines, calibration, the format of ``trackcast
track --analytics``). A video is tracked with the same code as ``trackcast track`` and the answer
is a tar archive (``application/x-tar``) holding ``tracks.txt`` (MOT), ``annotated.mp4`` and
``summary.json``, and with analytics ``tracks.analytics.csv`` and ``tracks.events.jsonl``. Pre/post-processing is
``detector_client``'s, the same code the client runs locally.

Model directory: one ``*.onnx`` file (``model.onnx`` preferred) and optionally
``trackcast-model.json`` with ``{"preprocess": "yolox"|"bytetrack", "classes": [0],
"score_thresh": 0.1, "nms_thresh": 0.45, "providers": ["cuda", "cpu"]}``; the environment
variables ``TRACKCAST_PREPROCESS``, ``TRACKCAST_CLASSES`` (comma-separated), ``TRACKCAST_PROVIDERS``
override it. Bad requests are 4xx with a message saying what is wrong, never a crash.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from detector_client import wire
from detector_client.config import OnnxDetectorConfig, onnx_model
from detector_client.errors import DetectorInputError, ModelLoadError
from detector_client.onnx_backend import OnnxModel
from detector_client.yolox import PostProcess

log = logging.getLogger(__name__)
MODEL_CONFIG = "trackcast-model.json"
F64 = npt.NDArray[np.float64]


class RequestError(Exception):
    """A client error with its HTTP status (400 bad payload, 415 unsupported content type)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _client_error(status: int, message: str) -> Exception:
    """The toolkit's own error type where it is installed (so it answers ``status``), else ours."""
    try:
        from sagemaker_inference.errors import GenericInferenceToolkitError

        return GenericInferenceToolkitError(status, message)  # type: ignore[no-any-return]
    except ImportError:
        return RequestError(status, message)


VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/x-matroska", "video/webm", "application/octet-stream")


@dataclass
class Request:
    frames: list[Any]
    postprocess: PostProcess | None
    single: bool
    video: bytes | None = None
    analytics: Any = None  # service.rules.analytics.AnalyticsSpec


def model_fn(model_dir: str) -> OnnxModel:
    d = Path(model_dir)
    models = sorted(d.glob("*.onnx"))
    if not models:
        raise ModelLoadError(str(d), "no *.onnx model in the model directory")
    path = d / "model.onnx" if (d / "model.onnx").exists() else models[0]
    cfg: dict[str, Any] = {}
    if (d / MODEL_CONFIG).is_file():
        try:
            cfg = json.loads((d / MODEL_CONFIG).read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(str(d / MODEL_CONFIG), f"not valid JSON: {exc}") from exc
    if os.environ.get("TRACKCAST_PREPROCESS"):
        cfg["preprocess"] = os.environ["TRACKCAST_PREPROCESS"]
    if os.environ.get("TRACKCAST_CLASSES"):
        cfg["classes"] = [int(c) for c in os.environ["TRACKCAST_CLASSES"].split(",") if c.strip()]
    if isinstance(cfg.get("class_names"), str) and not Path(cfg["class_names"]).is_absolute():
        cfg["class_names"] = str(d / cfg["class_names"])  # a names file packed beside the model
    if os.environ.get("TRACKCAST_PROVIDERS"):
        cfg["providers"] = [p.strip() for p in os.environ["TRACKCAST_PROVIDERS"].split(",") if p.strip()]
    # The same validated model as the service's ``detector:`` section (every key, clip included).
    try:
        onnx = OnnxDetectorConfig.model_validate({**cfg, "kind": "onnx", "model": path})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ModelLoadError(str(d / MODEL_CONFIG), problems) from exc
    model: OnnxModel = onnx_model(onnx)
    return model


def input_fn(body: bytes | bytearray, content_type: str) -> Request:
    ctype = (content_type or "").split(";")[0].strip().lower()
    data = bytes(body)
    try:
        if ctype == wire.CONTENT_TYPE:
            frames, pp = wire.decode_batch(data)
            return Request(frames, pp, single=False)
        if ctype in wire.IMAGE_TYPES:
            return Request([wire.decode_image(data)], None, single=True)
        if ctype == "application/x-tar":
            video, analytics = _video_and_analytics(data)
            return Request([], None, single=False, video=video, analytics=analytics)
        if ctype in VIDEO_TYPES or ctype.startswith("video/"):
            if not data:
                raise DetectorInputError("empty video body")
            return Request([], None, single=False, video=data)
    except DetectorInputError as exc:
        raise _client_error(400, str(exc)) from exc
    raise _client_error(
        415, f"unsupported content type {content_type!r}: use {wire.CONTENT_TYPE} or an image type"
    )


ANALYTICS_NAMES = ("analytics.yaml", "analytics.yml", "analytics.json")
MAX_ANALYTICS = 1 << 20


def _video_and_analytics(data: bytes) -> tuple[bytes, Any]:
    """A tar body: one video and an analytics file (checked now: a bad one is a 400 naming the key)."""
    import io
    import tarfile

    import yaml

    from service.errors import ConfigError
    from service.rules.analytics import parse_analytics

    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:")  # noqa: SIM115 - closed by the with below
    except tarfile.TarError as exc:
        raise DetectorInputError(f"the body is not a tar archive: {exc}") from exc
    video: bytes | None = None
    spec: Any = None
    with tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            name = Path(m.name).name
            f = tar.extractfile(m)
            if f is None:
                continue
            if name in ANALYTICS_NAMES:
                if m.size > MAX_ANALYTICS:
                    raise DetectorInputError(f"{name} is larger than 1 MiB")
                try:
                    spec = parse_analytics(yaml.safe_load(f.read()), name)
                except yaml.YAMLError as exc:
                    raise DetectorInputError(f"{name} is not valid YAML/JSON: {exc}") from exc
                except ConfigError as exc:
                    raise DetectorInputError(str(exc)) from exc
            elif video is None:
                video = f.read()
            else:
                raise DetectorInputError(f"the tar holds more than one video ({name}); send one per request")
    if not video:
        raise DetectorInputError(
            f"the tar holds no video (expected one video and one of {', '.join(ANALYTICS_NAMES)})"
        )
    return video, spec


def track_video_file(src: Path, model: OnnxModel, out_dir: Path, analytics: Any = None) -> Path:
    """Track a video file (async endpoint) into ``out_dir/result.tar``: tracks.txt, annotated.mp4,
    summary.json (and with ``analytics``: tracks.analytics.csv, tracks.events.jsonl)."""
    import tarfile

    from detector_client.onnx_backend import OnnxDetector
    from service.errors import ConfigError, SourceError
    from service.media.offline import track_video

    det = OnnxDetector(model, max_batch=8)
    try:
        track_video(str(src), det, None, out_dir / "tracks.txt", out_video=out_dir / "annotated.mp4",
                    summary_path=out_dir / "summary.json", analytics=analytics)  # fmt: skip
    except SourceError as exc:
        raise _client_error(400, f"the body is not a readable video: {exc.reason}") from exc
    except ConfigError as exc:  # analytics that do not fit this video's frame size
        raise _client_error(400, str(exc)) from exc
    finally:
        det.close()
    tar_path = out_dir / "result.tar"
    names = ["tracks.txt", "annotated.mp4", "summary.json"]
    if analytics is not None:
        names += ["tracks.analytics.csv", "tracks.events.jsonl"]
    with tarfile.open(tar_path, mode="w") as tar:
        for name in names:
            tar.add(out_dir / name, arcname=name)
    return tar_path


def track_video_bytes(data: bytes, model: OnnxModel, analytics: Any = None) -> bytes:
    """The toolkit path (the body arrives in memory): the result tar as bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="trackcast-async-") as tmp:
        src = Path(tmp) / "input.video"
        src.write_bytes(data)
        return track_video_file(src, model, Path(tmp), analytics).read_bytes()


def predict_fn(req: Request, model: OnnxModel) -> Any:
    if req.video is not None:
        return VideoResult(track_video_bytes(req.video, model, req.analytics))
    try:
        frames = [model.spec.prepare(req.frames[0])] if req.single else req.frames
        return model.detect(frames, req.postprocess), req.single
    except DetectorInputError as exc:
        raise _client_error(400, str(exc)) from exc


@dataclass
class VideoResult:
    tar: bytes


def output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    if isinstance(prediction, VideoResult):
        return prediction.tar, "application/x-tar"
    if accept and not any(a in accept for a in ("application/json", "*/*")):
        raise _client_error(406, f"can only answer application/json, not {accept!r}")
    dets, single = prediction
    return wire.encode_result(dets, single=single), "application/json"


def handle(
    model: OnnxModel, body: bytes, content_type: str, accept: str = "application/json"
) -> tuple[int, bytes, str]:
    """One invocation end to end: (HTTP status, body, content type). Used by serve-model."""
    try:
        out, ctype = output_fn(predict_fn(input_fn(body, content_type), model), accept)
        return 200, out, ctype
    except RequestError as exc:
        return exc.status, json.dumps({"error": exc.message}).encode(), "application/json"
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            return status, json.dumps({"error": str(exc)}).encode(), "application/json"
        log.exception("invocation failed")
        return (
            500,
            json.dumps({"error": f"internal error: {type(exc).__name__}"}).encode(),
            "application/json",
        )
