"""The container images, tested outside Docker: the Dockerfile's contract and the entry commands it runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from loadtest.peers import free_port, wait_for
from tests.conftest import ROOT, SHARED_DATA, trackcast_cmd

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_dockerfile_contract() -> None:
    assert re.search(r"^ARG BASE=python:3\.11", DOCKERFILE, re.M), "CPU base by default, BASE overridable"
    assert 'pip install ".[${ORT}]"' in DOCKERFILE and "ARG ORT=cpu" in DOCKERFILE, (
        "onnxruntime-gpu with --build-arg ORT=gpu"
    )
    assert "USER trackcast" in DOCKERFILE and "useradd" in DOCKERFILE, "runs as a non-root user"
    assert 'ENTRYPOINT ["trackcast", "serve"]' in DOCKERFILE
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    assert "FROM base AS sagemaker" in DOCKERFILE and 'CMD ["serve"]' in DOCKERFILE
    # every package the distribution installs is copied into the image
    for pkg in ("tracker", "detector_client", "service", "deploy", "training", "loadtest"):
        assert f"COPY {pkg} {pkg}" in DOCKERFILE
    # the extras it names exist
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^cpu = \[", pyproject, re.M) and re.search(r"^gpu = \[", pyproject, re.M)


@pytest.mark.skipif(
    not (SHARED_DATA / "models").is_dir(), reason=f"../shared is absent (looked for {SHARED_DATA})"
)
def test_sagemaker_serve_entry_on_a_model_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").symlink_to(SHARED_DATA / "models" / "yolox_nano_416x416.onnx")
    (model_dir / "trackcast-model.json").write_text(json.dumps({"preprocess": "yolox", "classes": [0]}))
    port = free_port()
    env = {**os.environ, "SM_MODEL_DIR": str(model_dir), "SAGEMAKER_BIND_TO_PORT": str(port),
           "PATH": f"{Path(trackcast_cmd()[0]).parent}:{os.environ['PATH']}"}  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        ["sh", str(ROOT / "deploy" / "sagemaker" / "serve.sh")], env=env, stdout=log, stderr=log
    )
    try:

        def ping() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(ping, 60, "serve to answer /ping")
        import cv2

        from service.media.video import iter_frames

        _ok, jpg = cv2.imencode(
            ".jpg", next(iter_frames(str(SHARED_DATA / "video" / "pedestrians_720p25.mp4"))).image
        )
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=jpg.tobytes(),
                                     headers={"Content-Type": "application/x-image"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
        assert len(body["detections"]) > 10 and {row[5] for row in body["detections"]} == {0}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_healthcheck_command(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TRACKCAST_DETECTOR__KIND": "motion", "TRACKCAST_HTTP__PORT": str(port),
           "TRACKCAST_MQTT__URL": "mqtt://127.0.0.1:1"}  # config by environment only, as in the image  # fmt: skip
    log = (tmp_path / "svc.log").open("w")
    proc = subprocess.Popen([*trackcast_cmd(), "serve"], env=env, stdout=log, stderr=log)
    check = [sys.executable, "-m", "service.healthcheck", f"http://127.0.0.1:{port}/healthz"]
    try:
        wait_for(lambda: subprocess.run(check, capture_output=True).returncode == 0, 60, "a healthy service")
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
        log.close()
    assert subprocess.run(check, capture_output=True).returncode == 1
