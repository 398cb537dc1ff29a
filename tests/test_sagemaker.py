"""The SageMaker detector end to end through boto3, against a local server running the real handler."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from deploy.sagemaker import inference
from detector_client import PostProcess, SageMakerDetectorConfig, create_detector
from detector_client.errors import (
    DetectorInputError,
    EndpointModelError,
    EndpointRequestError,
    EndpointResponseError,
    EndpointThrottled,
    EndpointTimeout,
)
from detector_client.onnx_backend import OnnxModel
from detector_client.remote import RetryPolicy
from detector_client.sagemaker_backend import SageMakerDetector
from service.media.video import iter_frames
from tests.sm_runtime import RuntimeServer

KEY_ID = "AKIATESTKEYID0000001"
SECRET = "testsecret/doNotLeakThis+0123456789abcdef"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for v in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(v, raising=False)


@pytest.fixture(scope="module")
def models_dir() -> Path:
    from tests.conftest import SHARED_DATA

    d = SHARED_DATA / "models"
    if not (d / "yolox_nano_416x416.onnx").is_file():
        pytest.skip(f"../shared is absent (looked for {d})")
    return d


@pytest.fixture(scope="module")
def model(models_dir: Path) -> OnnxModel:
    return inference.model_fn(str(models_dir))  # the handler's own model loading


@pytest.fixture(scope="module")
def frames(models_dir: Path, model: OnnxModel) -> list:  # type: ignore[type-arg]
    video = models_dir.parent / "video" / "futsal_broadcast_720x1280p30.mp4"
    return [model.spec.prepare(f.image, "futsal", f.index) for f in iter_frames(str(video), max_frames=10)]


@pytest.fixture
def server(model: OnnxModel):  # type: ignore[no-untyped-def]
    with RuntimeServer(model) as srv:
        yield srv


def _client(server: RuntimeServer, **kw) -> SageMakerDetector:  # type: ignore[no-untyped-def]
    cfg = SageMakerDetectorConfig(
        endpoint=kw.pop("endpoint", "yolox"), endpoint_url=server.url, classes=[0], **kw
    )
    det = create_detector(cfg)
    assert isinstance(det, SageMakerDetector)
    det._sleep = lambda s: None  # no real backoff waits in tests
    return det


def test_detections_equal_local_onnx_backend(server: RuntimeServer, model: OnnxModel, frames: list) -> None:  # type: ignore[type-arg]
    det = _client(server, max_batch=4)
    remote = det.detect_sync(frames)
    local = model.detect(frames, PostProcess(0.1, 0.45, (0,)))
    assert len(remote) == len(frames) == 10
    for r, loc in zip(remote, local, strict=True):
        assert r.rows.shape == loc.shape and len(r) > 0
        np.testing.assert_allclose(r.xyxy, loc[:, :4], atol=1e-3)  # wire rounding: 3 decimals
        np.testing.assert_allclose(r.scores, loc[:, 4], atol=1e-5)
        np.testing.assert_array_equal(r.classes, loc[:, 5])
    assert len(server.requests) == 3  # 10 frames at max_batch 4
    assert all(q["content_type"] == "application/x-trackcast-batch" for q in server.requests)


def test_async_detect_and_target_variant(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    import asyncio

    det = _client(server, variant="blue", max_in_flight=2)
    out = asyncio.run(det.detect(frames[:3]))
    assert len(out) == 3
    assert server.requests[-1]["variant"] == "blue"


def test_oversized_batch_is_split_under_the_payload_limit(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    det = _client(server, max_batch=64)
    det.max_payload = 1_200_000  # 2 raw 416x416 frames (519 KB each) per request
    out = det.detect_sync(frames)
    assert len(out) == 10
    assert len(server.requests) == 5
    assert all(q["bytes"] <= 1_200_000 for q in server.requests)


def test_jpeg_encoding_is_smaller_and_close(server: RuntimeServer, model: OnnxModel, frames: list) -> None:  # type: ignore[type-arg]
    det = _client(server, encoding="jpeg", jpeg_quality=90)
    out = det.detect_sync(frames[:4])
    raw_bytes = 4 * 416 * 416 * 3
    assert server.requests[-1]["bytes"] < raw_bytes / 4
    local = model.detect(frames[:4], PostProcess(0.1, 0.45, (0,)))
    # lossy: every confident local box is still found (IoU > 0.5), most almost unchanged
    ious = []
    for dets, loc in zip(out, local, strict=True):
        r = dets.xyxy
        for b in loc[loc[:, 4] > 0.5]:
            iw = np.clip(np.minimum(r[:, 2], b[2]) - np.maximum(r[:, 0], b[0]), 0, None)
            ih = np.clip(np.minimum(r[:, 3], b[3]) - np.maximum(r[:, 1], b[1]), 0, None)
            inter = iw * ih
            union = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            ious.append((inter / union).max())
    assert len(ious) > 10 and min(ious) > 0.5 and float(np.median(ious)) > 0.9


def test_single_image_requests_for_existing_clients(
    server: RuntimeServer, models_dir: Path, model: OnnxModel
) -> None:
    import boto3
    import cv2

    video = models_dir.parent / "video" / "pedestrians_720p25.mp4"
    img = next(iter_frames(str(video))).image
    _ok, jpg = cv2.imencode(".jpg", img)
    client = boto3.client("sagemaker-runtime", endpoint_url=server.url)
    resp = client.invoke_endpoint(EndpointName="yolox", Body=jpg.tobytes(), ContentType="application/x-image")
    import json

    body = json.loads(resp["Body"].read())
    assert body["version"] == 1 and len(body["detections"]) > 10
    assert all(len(row) == 6 for row in body["detections"])


def test_throttling_is_retried_then_succeeds(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    server.fail_next(2, status=400, error_type="ThrottlingException", message="Rate exceeded")
    server.fail_next(1, status=429, error_type="ModelNotReadyException", message="Model not ready")
    server.fail_next(1, status=503, error_type="ServiceUnavailable", message="busy")
    server.fail_next(1, status=500, error_type="InternalFailure", message="oops")
    det = _client(server, max_retries=6)
    out = det.detect_sync(frames[:2])
    assert len(out) == 2 and det.stats["retries"] == 5
    assert len(server.requests) == 6


def test_retries_are_capped(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    server.fail_next(10, status=503, error_type="ServiceUnavailable", message="busy")
    det = _client(server, max_retries=2)
    with pytest.raises(EndpointThrottled, match=r"after 3 attempts") as ei:
        det.detect_sync(frames[:1])
    assert ei.value.status == 503 and ei.value.endpoint == "yolox"
    assert len(server.requests) == 3


def test_backoff_is_jittered_and_capped(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    server.fail_next(6, status=400, error_type="ThrottlingException", message="slow down")
    det = _client(server, max_retries=6)
    det.retry = RetryPolicy(6, backoff_base_s=0.1, backoff_cap_s=0.5)
    waits: list[float] = []
    det._sleep = waits.append
    det.detect_sync(frames[:1])
    assert len(waits) == 6
    assert all(0 <= w <= 0.5 for w in waits)
    assert len(set(waits)) > 1


def test_model_error_424_is_not_retried(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    server.fail_next(
        1, status=424, error_type="ModelError", message="container crashed", extra={"OriginalStatusCode": 500}
    )
    det = _client(server, max_retries=4)
    with pytest.raises(EndpointModelError) as ei:
        det.detect_sync(frames[:1])
    assert ei.value.status == 424 and ei.value.original_status == 500
    assert len(server.requests) == 1


def test_container_rejects_a_bad_request_with_4xx(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    """A frame of the wrong size reaches the handler, which answers 400; SageMaker relays it as 424."""
    det = _client(server, input_size=(320, 320))
    wrong = [det.spec.prepare(np.zeros((240, 320, 3), np.uint8))]
    with pytest.raises(EndpointModelError, match="takes 416x416") as ei:
        det.detect_sync(wrong)
    assert ei.value.original_status == 400


def test_validation_error_is_not_retried(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    det = _client(server, endpoint="no-such-endpoint")
    with pytest.raises(EndpointRequestError, match="not found") as ei:
        det.detect_sync(frames[:1])
    assert ei.value.code == "ValidationError" and ei.value.status == 400
    assert len(server.requests) == 1


def test_timeout(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    server.fail_next(2, sleep=1.5)
    det = _client(server, read_timeout_s=0.5, max_retries=1)
    t0 = time.monotonic()
    with pytest.raises(EndpointTimeout, match="after 2 attempts"):
        det.detect_sync(frames[:1])
    assert time.monotonic() - t0 < 5


def test_malformed_response(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    det = _client(server)
    for body in (
        b"<html>gateway</html>",
        b'{"version": 1, "detections": []}',
        b'{"version": 1, "detections": [[["a"]]]}',
    ):
        server.fail_next(1, body=body)
        with pytest.raises(EndpointResponseError, match="MalformedResponse"):
            det.detect_sync(frames[:1])


def test_frame_over_the_limit_is_a_clear_error(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    det = _client(server)
    det.max_payload = 100_000
    with pytest.raises(DetectorInputError, match="over the endpoint's 100000-byte payload limit"):
        det.detect_sync(frames[:1])


def test_credentials_never_appear_in_errors(server: RuntimeServer, frames: list) -> None:  # type: ignore[type-arg]
    server.fail_next(1, status=424, error_type="ModelError", message="boom")
    det = _client(server)
    with pytest.raises(EndpointModelError) as ei:
        det.detect_sync(frames[:1])
    text = str(ei.value) + repr(ei.value.args)
    assert KEY_ID not in text and SECRET not in text
    cfg = SageMakerDetectorConfig(endpoint="e", aws_secret_access_key=SECRET)
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.model_dump())


def test_missing_region_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(EndpointRequestError, match="no AWS region"):
        create_detector(SageMakerDetectorConfig(endpoint="e"))


def test_detect_cli_with_sagemaker_backend_equals_onnx_backend(
    server: RuntimeServer, models_dir: Path, tmp_path: Path
) -> None:
    from tests.conftest import run_trackcast
    from tracker.mot import read_mot

    video = models_dir.parent / "video" / "futsal_broadcast_720x1280p30.mp4"
    sm_out, onnx_out = tmp_path / "sm.txt", tmp_path / "onnx.txt"
    res = run_trackcast(
        "detect", str(video), "--max-frames", "12", "--classes", "0", "--detector", "sagemaker",
        "--endpoint", "yolox", "--endpoint-url", server.url, "--region", "eu-west-1", "--out", str(sm_out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = run_trackcast(
        "detect", str(video), "--max-frames", "12", "--classes", "0", "--model",
        str(models_dir / "yolox_nano_416x416.onnx"), "--out", str(onnx_out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    a, b = read_mot(sm_out), read_mot(onnx_out)
    assert a.shape == b.shape and len(a) > 50
    np.testing.assert_allclose(a, b, atol=2e-3)
