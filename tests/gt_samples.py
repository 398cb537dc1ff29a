"""Hand-written Ground Truth video object tracking outputs, following the documented schema.

Three sequences, two classes, frame-no as strings and ints, 0- and 1-based, frames without
annotations, a frame listed out of order, JPEG and PNG frames, and object names that repeat
across classes (``person:1`` and ``ball:1`` are different objects). ``EXPECTED_GT`` is the
MOT17 ``gt.txt`` each sequence must give, written by hand from the labels below.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np

from training import storage as st

JOB = "players"
W, H = 64, 48


def frame_image(value: int, ext: str) -> bytes:
    """A W x H frame of one grey level (so the frame order can be checked after conversion)."""
    img = np.full((H, W, 3), value, np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return bytes(buf)


def grey(value_index: int) -> int:
    return 20 + 40 * value_index


def box(
    left: float, top: float, w: float, h: float, cls: int, obj: str, name: str, **attrs: str
) -> dict[str, Any]:
    return {"left": left, "top": top, "width": w, "height": h, "class-id": str(cls), "object-id": obj,
            "object-name": name, "label-category-attributes": attrs}  # fmt: skip


# sequence -> (frames [(frame-no as written, file, timestamp)], tracking-annotations, class-map)
SEQUENCES: dict[str, tuple[list[tuple[Any, str, float | None]], list[dict[str, Any]], dict[str, str]]] = {
    # 0-based frame-no (ints in the sequence file, strings in SeqLabel), 10 fps timestamps, JPEG frames
    "alley": (
        [
            (0, "frame_0000.jpeg", 100.0),
            (1, "frame_0001.jpeg", 100.1),
            (2, "frame_0002.jpeg", 100.2),
            (3, "frame_0003.jpeg", 100.3),
        ],
        [
            {
                "frame-no": "0",
                "frame": "frame_0000.jpeg",
                "annotations": [
                    box(10, 5, 20, 30, 0, "uuid-a", "person:1", occluded="no"),
                    box(40, 20, 4, 4, 1, "uuid-b", "ball:1"),
                ],
            },
            # frame 1 has no entry at all; frame 2 is matched by frame-no only (an int here)
            {"frame-no": 2, "annotations": [box(12, 6, 20, 30, 0, "uuid-a", "person:1")]},
            {
                "frame-no": "3",
                "frame": "frame_0003.jpeg",
                "annotations": [
                    box(1, 2, 3, 4, 0, "uuid-c", "person:2", occluded="partially"),
                ],
            },
        ],
        {"0": "person", "1": "ball"},
    ),
    # 1-based frame-no as strings, listed out of order, no timestamps, PNG frames
    "court": (
        [("2", "f2.png", None), ("1", "f1.png", None), ("3", "f3.png", None)],
        [
            {"frame-no": "2", "frame": "f2.png", "annotations": [box(0, 0, 64, 48, 0, "uuid-d", "person:1")]},
            {"frame-no": "3", "frame": "f3.png", "annotations": []},
        ],
        {"0": "person"},
    ),
    # 1-based ints, only a ball
    "gate": (
        [(1, "a.jpg", None), (2, "b.jpg", None)],
        [{"frame-no": 1, "frame": "a.jpg", "annotations": [box(30, 30, 5, 5, 1, "uuid-e", "ball:1")]}],
        {"1": "ball"},
    ),
}

EXPECTED_GT = {
    "alley": "1,1,10,5,20,30,1,1,1\n3,1,12,6,20,30,1,1,1\n1,2,40,20,4,4,1,2,1\n4,3,1,2,3,4,1,1,0.5\n",
    "court": "2,1,0,0,64,48,1,1,1\n",
    "gate": "1,1,30,30,5,5,1,2,1\n",
}
EXPECTED_LENGTH = {"alley": 4, "court": 3, "gate": 2}
EXPECTED_FPS = {"alley": "10", "court": "30", "gate": "30"}


def write_job(store: st.Storage, base: str, job: str = JOB,
              edit: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Write frames, sequence files, SeqLabel.json files and the output manifest under ``base``.

    ``edit`` maps a sequence name to a function that changes its SeqLabel dict (bad-input tests).
    Returns the manifest's location.
    """
    lines = []
    for n, (name, (frames, tracking, cmap)) in enumerate(SEQUENCES.items()):
        prefix = st.join(base, "frames", name) + "/"
        order = sorted(frames, key=lambda f: int(f[0]))
        for file_no, (_no, file, _ts) in enumerate(order):
            store.write(st.join(prefix, file), frame_image(grey(file_no), "." + file.rsplit(".", 1)[1]))
        seq_doc = {
            "seq-no": n + 1, "prefix": prefix, "number-of-frames": len(frames),
            "frames": [{"frame-no": no, "frame": file, **({"unix-timestamp": ts} if ts is not None else {})}
                       for no, file, ts in frames],
        }  # fmt: skip
        seq_uri = st.join(base, "input", f"{name}.json")
        store.write(seq_uri, json.dumps(seq_doc))
        labels = {"tracking-annotations": json.loads(json.dumps(tracking))}
        if edit and name in edit:
            edit[name](labels)
        label_uri = st.join(
            base, "output", job, "annotations", "consolidated-annotation", "output", str(n), "SeqLabel.json"
        )
        store.write(label_uri, json.dumps(labels))
        lines.append({
            "source-ref": seq_uri, f"{job}-ref": label_uri,
            f"{job}-ref-metadata": {"class-map": cmap, "job-name": f"labeling-job/{job}", "human-annotated": "yes",
                                    "creation-date": "2026-11-20T08:01:16+0000", "type": "groundtruth/video-object-tracking"},
        })  # fmt: skip
    manifest = st.join(base, "output", job, "manifests", "output", "output.manifest")
    store.write(manifest, "".join(json.dumps(line) + "\n" for line in lines))
    return manifest
