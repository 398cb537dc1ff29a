"""`trackcast serve-model`: the SageMaker container contract over real HTTP, bad requests are 4xx."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector_client import wire
from detector_client.onnx_backend import spec_for
from tests.conftest import ROOT, SHARED_DATA, trackcast_cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
    if not model.is_file():
        pytest.skip(f"../shared is absent (looked for {model})")
    port = _free_port()
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port)}  # the port comes from the container contract
    log_path = tmp_path_factory.mktemp("serve-model") / "log.txt"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [*trackcast_cmd(), "serve-model", "--model", str(model), "--host", "127.0.0.1", "--classes", "0"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                log.close()
                pytest.fail(f"serve-model exited: {log_path.read_text()}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("serve-model did not answer /ping")
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def _post(url: str, body: bytes, ctype: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    req = urllib.request.Request(
        url + "/invocations", data=body, headers={"Content-Type": ctype}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _frame() -> np.ndarray:
    from service.media.video import iter_frames

    return next(iter_frames(str(SHARED_DATA / "video" / "pedestrians_720p25.mp4"))).image


def test_batch_request(endpoint: str) -> None:
    spec = spec_for(416, 416, "yolox")
    frames = [spec.prepare(_frame(), index=i) for i in range(3)]
    status, body = _post(endpoint, wire.encode_batch(frames), wire.CONTENT_TYPE)
    assert status == 200 and body["version"] == 1
    assert len(body["detections"]) == 3 and len(body["detections"][0]) > 10
    assert all(row[5] == 0 for row in body["detections"][0])  # --classes 0


def test_single_image_request(endpoint: str) -> None:
    _ok, jpg = cv2.imencode(".jpg", _frame())
    status, body = _post(endpoint, jpg.tobytes(), "application/x-image")
    assert status == 200 and len(body["detections"]) > 10
    assert all(0 <= r[0] <= r[2] <= 1280 and 0 <= r[1] <= r[3] <= 720 for r in body["detections"])


@pytest.mark.parametrize(
    ("body", "ctype", "status", "message"),
    [
        (b"\xff\xd8\xff\xe0 not really a jpeg", "application/x-image", 400, "corrupt or unsupported image"),
        (b"", "image/jpeg", 400, "empty image body"),
        (b"TCB1\x05\x00\x00\x00{bad}", wire.CONTENT_TYPE, 400, "header is not JSON"),
        (b"XXXXsomething", wire.CONTENT_TYPE, 400, "does not start with"),
        (b"{}", "application/json", 415, "unsupported content type"),
    ],
)
def test_bad_requests_are_4xx_with_a_reason(
    endpoint: str, body: bytes, ctype: str, status: int, message: str
) -> None:
    got, reply = _post(endpoint, body, ctype)
    assert got == status and message in reply["error"]


def test_wrong_frame_size_is_400(endpoint: str) -> None:
    frames = [spec_for(320, 320, "yolox").prepare(_frame())]
    got, reply = _post(endpoint, wire.encode_batch(frames), wire.CONTENT_TYPE)
    assert got == 400 and "takes 416x416" in reply["error"]


def test_still_serving_after_bad_requests(endpoint: str) -> None:
    _post(endpoint, b"garbage", wire.CONTENT_TYPE)
    with urllib.request.urlopen(endpoint + "/ping", timeout=5) as r:
        assert r.status == 200


def test_missing_model_is_a_clear_cli_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [*trackcast_cmd(), "serve-model", "--model", str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "m.onnx: no such file" in res.stderr
