"""Shared fixtures. Data in ../shared is read in place; tests needing it skip only when it is absent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from loadtest.peers import trackcast_cmd

__all__ = ["FIXTURES", "ROOT", "SEQUENCES", "SHARED", "SHARED_DATA", "run_trackcast", "trackcast_cmd"]

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
