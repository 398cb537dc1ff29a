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
