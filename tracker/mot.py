"""MOTChallenge text files: detections (``det.txt``) in, tracking results out.

Rows are ``frame,id,x,y,w,h,score,...`` with 1-based frames; detection files carry ``-1`` as id.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from tracker.byte_tracker import Tracks
from tracker.errors import MotFormatError

F64 = npt.NDArray[np.float64]

#: The largest frame number a file may hold: 10 million frames is 4.6 days at 25 frames/s (a
#: frame number is an index into per-frame arrays, so 1e12 would ask for terabytes).
MAX_FRAME = 10_000_000


def read_mot(path: str | Path, min_cols: int = 7) -> F64:
    """Read a MOT text file into a float array [rows, cols] (at least ``min_cols`` columns)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise MotFormatError(str(p), 0, f"cannot read: {exc.strerror or exc}") from exc
    return parse_mot(text, str(p), min_cols)


def parse_mot(text: str, source: str, min_cols: int = 7) -> F64:
    """Parse MOT text (``source`` names it in errors) into a float array [rows, cols]."""
    rows: list[list[float]] = []
    width = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(" ", "").split(",")
        if len(parts) < min_cols:
            raise MotFormatError(
                source, lineno, f"expected at least {min_cols} comma-separated values, got {len(parts)}"
            )
        try:
            vals = [float(v) for v in parts]
        except ValueError as exc:
            raise MotFormatError(source, lineno, f"not a number: {exc}") from exc
        if not (1 <= vals[0] <= MAX_FRAME) or vals[0] != int(vals[0]):
            raise MotFormatError(
                source, lineno, f"frame must be an integer from 1 to {MAX_FRAME}, got {parts[0]}"
            )
        if not math.isfinite(vals[1]):
            raise MotFormatError(source, lineno, f"id must be a finite number, got {parts[1]}")
        if width and len(vals) != width:
            raise MotFormatError(
                source, lineno, f"expected {width} values like the lines above, got {len(vals)}"
            )
        width = len(vals)
        rows.append(vals)
    if not rows:
        return np.empty((0, min_cols))
    return np.asarray(rows, dtype=np.float64)


def iter_frames(det: F64, n_frames: int | None = None) -> Iterator[tuple[int, F64]]:
    """Yield ``(frame, dets [N,5] x1,y1,x2,y2,score)`` for frames 1..last (empty frames included)."""
    last = int(det[:, 0].max()) if len(det) else 0
    if n_frames is not None:
        last = max(last, n_frames)
    order = np.argsort(det[:, 0], kind="stable")
    det = det[order]
    frames = det[:, 0].astype(np.int64)
    bounds = np.searchsorted(frames, np.arange(1, last + 2))
    for f in range(1, last + 1):
        rows = det[bounds[f - 1] : bounds[f]]
        out = np.empty((len(rows), 5))
        out[:, 0:2] = rows[:, 2:4]
        out[:, 2:4] = rows[:, 2:4] + rows[:, 4:6]
        out[:, 4] = rows[:, 6]
        yield f, out


def format_tracks(frame: int, tracks: Tracks) -> list[str]:
    """MOT result lines ``frame,id,x,y,w,h,score,-1,-1,-1`` (4 decimals) for one frame."""
    return [
        f"{frame},{tid},{x:.4f},{y:.4f},{w:.4f},{h:.4f},{s:.4f},-1,-1,-1"
        for tid, (x, y, w, h), s in zip(
            tracks.ids.tolist(), tracks.tlwh.tolist(), tracks.scores.tolist(), strict=True
        )
    ]


def write_lines(out: TextIO, lines: list[str]) -> None:
    for line in lines:
        out.write(line)
        out.write("\n")
