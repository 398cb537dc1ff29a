"""Shared fixtures. Data in ../shared is read in place; tests needing it skip only when it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.peers import free_port, port_open, trackcast_cmd, wait_for

__all__ = [
    "FIXTURES",
    "ROOT",
    "SEQUENCES",
    "SHARED",
    "SHARED_DATA",
    "aws_client",
    "run_trackcast",
    "trackcast_cmd",
]

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TRACKCAST_SHARED", ROOT.parent / "shared")).resolve()
SHARED_DATA = SHARED / "data"
FIXTURES = SHARED_DATA / "fixtures" / "bytetrack_reference"


def _shared_sequences() -> list[str]:
    if not FIXTURES.is_dir():
        return []
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "meta.json").is_file())


SEQUENCES = _shared_sequences()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared is absent (looked for {SHARED_DATA})")
    return SHARED_DATA


def run_trackcast(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*trackcast_cmd(), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


AWS_REGION = "eu-west-1"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto in server mode: the AWS control plane (S3, SageMaker, ...) over real HTTP."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: port_open(port), 30, "moto server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, for boto3 in this process and in spawned trackcast commands."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)


def aws_client(service: str, url: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=url, region_name=AWS_REGION)


# The test pyramid: every test is unit (pure: no subprocess, broker, server or model; `make check`),
# integration (real local peers: mosquitto, the RTSP server, the ONNX model, moto, a local
# SageMaker Runtime) or system (whole commands, the browser, the load test). A test's own marker
# wins; otherwise its module's level below applies. A new test module must be given a level here.
LEVELS = {
    "unit": ("test_assign", "test_kalman_iou", "test_properties", "test_sampler", "test_tracker", "test_wire",
             "test_rules", "test_architecture", "test_webrtc_ice", "test_config_hostile", "test_geometry", "test_analytics", "test_sharding", "test_oip_wire",
             "test_query", "test_follow_rule"),
    "integration": ("test_app", "test_deploy", "test_detect", "test_differential", "test_eval", "test_handoff",
                    "test_images", "test_motion", "test_parity", "test_publisher", "test_sagemaker",
                    "test_serve_model", "test_service", "test_training", "test_k8s", "test_oip", "test_bags",
                    "test_recordings", "test_follow"),
    "system": ("test_bench", "test_cli", "test_demo", "test_docs", "test_loadtest", "test_service_api", "test_hostile",
               "test_lifecycle", "test_analytics_service", "test_cluster"),
}  # fmt: skip
_LEVEL_OF = {mod: level for level, mods in LEVELS.items() for mod in mods}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(level) for level in LEVELS):
            continue
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        level = _LEVEL_OF.get(module)
        if level is None:
            raise pytest.UsageError(f"{module}: give the module a level in tests/conftest.py LEVELS")
        item.add_marker(getattr(pytest.mark, level))
