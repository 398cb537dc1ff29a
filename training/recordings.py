"""Recordings to frames: ``trackcast bag list`` and ``trackcast bag extract`` (local folders or s3://).

``extract`` writes one image per message of a bag's image topic: ``frame_000001.jpg`` (a
CompressedImage's bytes as they are) or ``.png`` (raw images, lossless; ``--format jpg`` for
JPEG), and ``frames.jsonl``: one line per frame ``{"frame", "file", "t_ns", "stamp_ns", "bag",
"topic"}`` (record and header timestamps). It is resumable: a frame whose file is already there is
not written again (files appear whole: a temporary name renamed locally, one PUT on S3), so a run
that was stopped picks up where it left off; ``frames.jsonl`` is written last, when every frame is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.errors import SourceError
from service.media.bag import Bag
from training import storage as st
from training.errors import TrainingError

INDEX = "frames.jsonl"


def frame_name(index: int, ext: str) -> str:
    return f"frame_{index:06d}{ext}"


def list_topics(bag: str) -> dict[str, Any]:
    """What ``trackcast bag list`` prints: the bag's ROS version, duration and topics."""
    try:
        with Bag(bag) as b:
            return {
                "bag": bag,
                "ros": b.ros_version,
                "duration_s": round(b.duration_s, 3),
                "topics": [
                    {"topic": t.topic, "type": t.msgtype, "count": t.count, "rate_hz": t.rate_hz, "image": t.is_image}
                    for t in b.topics()
                ],
            }  # fmt: skip
    except SourceError as exc:
        raise TrainingError(str(exc)) from exc


def _write_local_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def extract(
    bag: str,
    out: str,
    topic: str | None = None,
    fmt: str = "png",
    every: int = 1,
    max_frames: int | None = None,
    store: st.Storage | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Every ``every``-th frame of the topic into ``out``; returns counts (written, already there)."""
    import cv2

    if fmt not in ("png", "jpg"):
        raise TrainingError(f"--format {fmt!r}: png or jpg")
    if every < 1:
        raise TrainingError(f"--every {every}: must be 1 or more")
    store = store or st.Storage()
    try:
        _dirs, present = store.listdir(out) if store.exists(out) else ([], [])
    except TrainingError:
        present = []
    have = set(present)
    rows: list[dict[str, Any]] = []
    written = kept = 0
    try:
        with Bag(bag) as b:
            info = b.image_topic(topic)
            for f in b.raw_frames(info.topic, max_frames):
                if (f.index - 1) % every:
                    continue
                ext = f.ext or f".{fmt}"
                name = frame_name(f.index, ext)
                rows.append({"frame": f.index, "file": name, "t_ns": f.t_ns, "stamp_ns": f.stamp_ns,
                             "bag": Path(bag).name, "topic": info.topic})  # fmt: skip
                if name in have:
                    kept += 1
                    continue
                if f.encoded is not None:
                    data = f.encoded
                else:
                    assert f.image is not None
                    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == "jpg" else []
                    ok, buf = cv2.imencode(ext, f.image, params)
                    if not ok:
                        raise TrainingError(f"{bag}: frame {f.index} cannot be encoded as {fmt}")
                    data = buf.tobytes()
                if st.is_s3(out):
                    store.write(st.join(out, name), data)
                else:
                    try:
                        _write_local_atomic(Path(out) / name, data)
                    except OSError as exc:
                        raise TrainingError(f"write {Path(out) / name}: {exc.strerror or exc}") from exc
                written += 1
                if on_frame is not None:
                    on_frame(f.index)
    except SourceError as exc:
        raise TrainingError(str(exc)) from exc
    store.write(st.join(out, INDEX), "".join(json.dumps(r) + "\n" for r in rows))
    return {"bag": bag, "topic": info.topic, "out": out, "frames": len(rows), "written": written,
            "already_there": kept, "index": st.join(out, INDEX)}  # fmt: skip


def read_index(store: st.Storage, folder: str) -> list[dict[str, Any]]:
    """The ``frames.jsonl`` of an extracted folder ([] when there is none)."""
    uri = st.join(folder, INDEX)
    if not store.exists(uri):
        return []
    out = []
    for n, line in enumerate(store.read_text(uri).splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise TrainingError(f"{uri}, line {n}: not JSON ({exc})") from exc
    return out
