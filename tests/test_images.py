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


def test_the_image_is_built_with_the_kernels_the_service_loads(tmp_path: Path) -> None:
    """The Dockerfile compiles the kernels into $NUMBA_CACHE_DIR as the service's user; the
    service's start-up (``load_kernels``) in a new process then loads every one from that cache
    and compiles none (numba says which it does with NUMBA_DEBUG_CACHE)."""
    import shlex

    (cache_dir,) = re.findall(r"NUMBA_CACHE_DIR=(\S+)", DOCKERFILE)
    (build,) = re.findall(r"^RUN cd / && (python -c .*load_kernels.*)$", DOCKERFILE, re.M)
    assert DOCKERFILE.index("USER trackcast") < DOCKERFILE.index(build), "built as the user that runs it"
    assert 'install -d -o trackcast -g trackcast "$NUMBA_CACHE_DIR"' in DOCKERFILE and cache_dir.startswith(
        "/opt/"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_DEBUG_CACHE": "1"}
    argv = [sys.executable, *shlex.split(build)[1:]]
    built = subprocess.run(argv, cwd="/", env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "data saved to" in built.stdout
    start = subprocess.run(
        [sys.executable, "-c", "from service.app import load_kernels; load_kernels()"],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    # lines "[cache] data loaded from '.../analytics._frame_geometry-651.py311.1.nbc'"
    loaded = {Path(ln.split()[-1].strip("'")).name.split("-")[0]
              for ln in start.stdout.splitlines() if "data loaded from" in ln}  # fmt: skip
    assert {"analytics._frame_geometry", "kinematics._motion_step", "_kernels.byte_step"} <= loaded, (
        start.stdout
    )
    assert "data saved to" not in start.stdout, "the service's start compiled a kernel the image lacks"


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
