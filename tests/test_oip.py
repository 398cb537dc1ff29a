"""The Open Inference Protocol detector against a real NVIDIA Triton Inference Server started here.

The model repository is the one ``trackcast triton-repo`` writes (UINT8 input, normalised in the
graph), plus the network as exported (FP32 NCHW, batch made symbolic) for the plain-model path.
Detections must equal local ONNX Runtime's on the shared clips; failures must be typed, retried
only where that can help, and never show credentials.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deploy.triton import write_model_repository
from detector_client import OipDetectorConfig, OnnxDetectorConfig, PreparedFrame, create_detector
from detector_client.errors import (
    DetectorInputError,
    EndpointRequestError,
    EndpointResponseError,
    EndpointThrottled,
    EndpointTimeout,
)
from detector_client.oip_backend import OipDetector
from service.media.video import iter_frames
from tests.infra import Collector, Mosquitto, ServiceProc, TritonServer, free_port, wait_for

CLIPS = ("pedestrians_720p25.mp4", "futsal_broadcast_720x1280p30.mp4")


@pytest.fixture(scope="module")
def data() -> Path:
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared is absent (looked for {SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="module")
def model_path(data: Path) -> Path:
    return data / "models" / "yolox_nano_416x416.onnx"


@pytest.fixture(scope="module")
def repo(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import onnx

    from detector_client.onnx_backend import make_batchable

    root = tmp_path_factory.mktemp("repo")
    write_model_repository(model_path, root, device="cpu", max_batch=16)
    # the network as exported, batchable: the client sends the normalised FP32 tensor
    plain = root / "yolox-f32"
    (plain / "1").mkdir(parents=True)
    onnx.save(make_batchable(onnx.load(str(model_path)))[0], str(plain / "1" / "model.onnx"))
    (plain / "config.pbtxt").write_text(
        'name: "yolox-f32"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
        'input [ { name: "images" data_type: TYPE_FP32 dims: [ 3, 416, 416 ] } ]\n'
        'output [ { name: "output" data_type: TYPE_FP32 dims: [ 3549, 85 ] } ]\n'
    )
    return root


@pytest.fixture(scope="module")
def triton(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    srv = TritonServer(repo, tmp_path_factory.mktemp("triton"), faults=True, slow_s=3.0).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def local(model_path: Path):  # type: ignore[no-untyped-def]
    det = create_detector(OnnxDetectorConfig(model=model_path))
    yield det
    det.close()


@pytest.fixture(scope="module")
def frames(data: Path, local) -> dict[str, list[PreparedFrame]]:  # type: ignore[no-untyped-def]
    out = {}
    for clip in CLIPS:
        src = iter_frames(str(data / "video" / clip), max_frames=60)
        out[clip] = [local.spec.prepare(f.image, clip, f.index) for f in src if f.index % 3 == 0]
    return out


def _client(url: str, **kw) -> OipDetector:  # type: ignore[no-untyped-def]
    det = create_detector(OipDetectorConfig(url=url, **kw))
    assert isinstance(det, OipDetector)
    det._sleep = lambda s: None  # no real backoff waits in tests
    return det


def test_detections_equal_local_onnx_on_the_shared_clips(triton: TritonServer, local, frames) -> None:  # type: ignore[no-untyped-def]
    det = _client(triton.url, model="yolox", max_batch=8)
    for clip, fs in frames.items():
        want = local.detect_sync(fs)
        got = det.detect_sync(fs)
        assert sum(len(w) for w in want) > 10 * len(fs), f"{clip}: the clip has people to find"
        for f, w, g in zip(fs, want, got, strict=True):
            # float32 tensors travel bit for bit: the same boxes, to float rounding
            assert g.rows.shape == w.rows.shape, f"{clip}#{f.index}"
            np.testing.assert_allclose(g.rows, w.rows, rtol=0, atol=1e-4, err_msg=f"{clip}#{f.index}")
    m = det.remote_model()
    assert (m.layout, m.datatype, m.batched, m.raw) == ("nhwc", "UINT8", True, True)
    # a frame is sent as its uint8 letterbox: about 3 bytes a pixel, not 12
    n = sum(len(fs) for fs in frames.values())
    assert det.stats["bytes_sent"] < (n + 1) * 416 * 416 * 3 * 1.01
    det.close()


def test_the_exported_fp32_model_and_json_tensors_give_the_same_boxes(
    triton: TritonServer, local, frames
) -> None:  # type: ignore[no-untyped-def]
    fs = frames[CLIPS[1]][:4]
    want = local.detect_sync(fs)
    plain = _client(triton.url, model="yolox-f32")
    assert plain.remote_model().layout == "nchw"
    for w, g in zip(want, plain.detect_sync(fs), strict=True):
        np.testing.assert_allclose(g.rows, w.rows, rtol=0, atol=1e-4)
    # JSON tensors (for servers without the binary extension): equal to the wire's decimal rounding
    js = _client(triton.url, model="yolox", binary=False)
    for w, g in zip(want, js.detect_sync(fs), strict=True):
        assert g.rows.shape == w.rows.shape
        np.testing.assert_allclose(g.rows, w.rows, rtol=1e-5, atol=1e-3)


def test_async_detect_and_triton_batches_concurrent_requests(triton: TritonServer, frames) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    det = _client(triton.url, model="yolox", max_batch=2, max_in_flight=4)
    fs = frames[CLIPS[0]][:8]

    async def run() -> list:  # type: ignore[type-arg]
        return await asyncio.gather(*(det.detect(fs[i : i + 2]) for i in range(0, 8, 2)))

    out = asyncio.run(run())
    assert [len(o) for o in out] == [2, 2, 2, 2]
    text = triton.metrics()
    # Triton's own counters: every request and every frame went through its scheduler
    assert 'nv_inference_request_success{model="yolox"' in text
    det.close()


def test_unreachable_server_is_retried_then_a_typed_error(frames) -> None:  # type: ignore[no-untyped-def]
    det = _client(f"http://127.0.0.1:{free_port()}", model="yolox", max_retries=2)
    with pytest.raises(EndpointThrottled) as ei:
        det.detect_sync(frames[CLIPS[0]][:1])
    assert ei.value.code == "ConnectionError" and "after 3 attempts" in str(ei.value)
    assert det.stats["retries"] == 2


def test_slow_server_times_out_after_retries(triton: TritonServer, frames) -> None:  # type: ignore[no-untyped-def]
    det = _client(triton.url, model="yolox-slow", read_timeout_s=0.5, max_retries=1, output="raw")
    t = time.monotonic()
    with pytest.raises(EndpointTimeout) as ei:
        det.detect_sync(frames[CLIPS[0]][:1])
    assert "after 2 attempts" in str(ei.value) and time.monotonic() - t < 5


def test_a_failing_model_5xx_is_retried_and_typed(triton: TritonServer, frames) -> None:  # type: ignore[no-untyped-def]
    det = _client(triton.url, model="yolox-broken", max_retries=2, output="raw")
    with pytest.raises(EndpointThrottled) as ei:
        det.detect_sync(frames[CLIPS[0]][:1])
    assert ei.value.status == 500 and "broken on purpose" in str(ei.value)
    assert "Traceback" not in str(ei.value) and len(str(ei.value)) < 400, (
        "the server's trace, cut to its point"
    )
    assert det.stats["retries"] == 2


def test_unknown_model_4xx_is_not_retried(triton: TritonServer, frames) -> None:  # type: ignore[no-untyped-def]
    det = _client(triton.url, model="no-such-model")
    with pytest.raises(EndpointRequestError) as ei:
        det.detect_sync(frames[CLIPS[0]][:1])
    assert ei.value.status in (400, 404) and "no-such-model" in str(ei.value)
    assert det.stats["requests"] == 1


def test_a_model_of_another_size_is_refused_by_name(triton: TritonServer) -> None:
    det = _client(triton.url, model="yolox", input_size=(320, 320))
    img = np.zeros((320, 320, 3), np.uint8)
    with pytest.raises(EndpointRequestError) as ei:
        det.detect_sync([PreparedFrame(img, 1.0, 320, 320, "cam", 0)])
    assert ei.value.code == "NotAYoloxModel" and "416x416" in str(ei.value) and "320x320" in str(ei.value)
    with pytest.raises(DetectorInputError, match="takes 320x320"):
        det.detect_sync([PreparedFrame(np.zeros((10, 10, 3), np.uint8), 1.0, 10, 10, "cam", 1)])


def test_malformed_answer_is_a_typed_error_not_retried(triton: TritonServer, frames) -> None:  # type: ignore[no-untyped-def]
    det = _client(triton.url, model="yolox-garbage", output="raw")
    with pytest.raises(EndpointResponseError) as ei:
        det.detect_sync(frames[CLIPS[0]][:2])
    assert ei.value.code == "MalformedResponse" and "[2, 3549, 5+classes]" in str(ei.value)
    assert det.stats["retries"] == 0


def test_credentials_never_appear_in_errors_or_logs(triton: TritonServer, frames, caplog) -> None:  # type: ignore[no-untyped-def]
    secret_url = triton.url.replace("http://", "http://admin:hunter2-pw@")
    det = _client(secret_url, model="yolox-broken", token="tok-SECRET-123", max_retries=1, output="raw")
    with pytest.raises(EndpointThrottled) as ei:
        det.detect_sync(frames[CLIPS[0]][:1])
    text = str(ei.value) + caplog.text + repr(det.where)
    assert "hunter2" not in text and "tok-SECRET" not in text and "admin" not in text
    assert "127.0.0.1" in str(ei.value)


@pytest.mark.serial
def test_the_service_rides_out_a_triton_restart(tmp_path: Path, repo: Path) -> None:
    """Two streams on one Triton; Triton dies: frames fail as detector errors, the streams and the
    process stay; Triton comes back on the same port: tracks flow again on both streams."""
    only = tmp_path / "repo"
    only.mkdir()
    (only / "yolox").symlink_to(repo / "yolox", target_is_directory=True)
    srv = TritonServer(only, tmp_path / "triton").start()
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port)
    streams = ["left", "right"]
    svc = ServiceProc(tmp_path / "svc", {
        "mqtt": {"url": broker.url},
        "detector": {"kind": "oip", "url": srv.url, "model": "yolox", "classes": [0], "max_retries": 1,
                     "read_timeout_s": 5},
        "streams": [{"id": s, "url": f"synthetic://pitch?players=5&fps=5&width=640&height=360&seed={i}"}
                    for i, s in enumerate(streams)],
    })  # fmt: skip
    try:
        svc.start()
        wait_for(lambda: all(len(sub.of("/tracks", s)) > 5 for s in streams), 60, "tracks on both streams")
        srv.stop()
        wait_for(lambda: "detector_error" in svc.get("/metrics")[1], 30, "detector errors counted")
        assert svc.get("/healthz")[0] == 200
        assert {s["id"] for s in svc.get("/streams")[1]} == set(streams)
        srv.start()
        t_back = time.time()

        def flowing() -> bool:
            return all(any(t > t_back + 1 for _, t in sub.timed("/tracks", s)) for s in streams)

        wait_for(flowing, 60, "tracks again on both streams after Triton came back")
        assert "Traceback" not in svc.log()
    finally:
        svc.kill()
        srv.stop()
        sub.close()
        broker.stop()


def test_the_gpu_repository_config_parses_with_tritons_schema(model_path: Path, tmp_path: Path) -> None:
    """The GPU config (TensorRT FP16, KIND_GPU) cannot be served here; Triton's own model_config.proto
    (from tritonclient, in the Triton venv) must still read every field of it."""
    import subprocess

    from loadtest.peers import TRITON_VENV

    python = TRITON_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Triton venv at {TRITON_VENV} (make test builds it)")
    repo = write_model_repository(
        model_path, tmp_path, name="people", max_batch=32, device="gpu", instances=2
    )
    code = (
        "import sys; from google.protobuf import text_format; from tritonclient.grpc import model_config_pb2 as m;"
        "c = text_format.Parse(open(sys.argv[1]).read(), m.ModelConfig());"
        "a = c.optimization.execution_accelerators.gpu_execution_accelerator[0];"
        "print(c.name, c.max_batch_size, m.ModelInstanceGroup.Kind.Name(c.instance_group[0].kind),"
        " c.instance_group[0].count, a.name, a.parameters['precision_mode'], list(c.dynamic_batching.preferred_batch_size))"
    )
    out = subprocess.run(
        [str(python), "-c", code, str(repo.config)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "people",
        "32",
        "KIND_GPU",
        "2",
        "tensorrt",
        "FP16",
        "[4,",
        "8,",
        "16,",
        "32]",
    ]
