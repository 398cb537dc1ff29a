"""MOT17 tree -> the COCO JSON that ByteTrack/YOLOX training reads.

``trackcast convert mot-to-coco --mot DIR [--out DIR] [--half]``. ``DIR`` holds split folders
(``train/``, ``val/``, ``test/``, as ``gt-to-mot`` writes them) of sequences, or is itself one split.
For each split, ``OUT/annotations/<split>.json`` has:

- ``images``: file_name (``<seq>/img1/000001.jpg``, relative to the split folder), id (1.. across the
  file), frame_id (1-based within its sequence, or within its half), prev_image_id / next_image_id (the
  neighbouring frame of the same sequence, -1 at either end), video_id, height, width;
- ``annotations``: id, category_id (the MOT class), image_id, track_id (unique across the file:
  each sequence's ids are offset past the previous sequence's), bbox [x, y, w, h], area, iscrowd 0;
- ``videos`` (id, file_name) and ``categories`` (from ``classes.json``, else ``--classes``, else
  ``{1: person}``).

``--half`` also writes ``<split>_half1.json`` and ``<split>_half2.json``: the first and second half of
every sequence (ByteTrack's way to validate on MOT17's train set). Rows marked "ignore" (column 7 = 0)
are skipped and counted.
"""

from __future__ import annotations

import configparser
import json
from typing import Any

import numpy as np

from tracker.errors import MotFormatError
from tracker.mot import parse_mot
from training import storage as st
from training.errors import ConvertError, StorageError
from training.report import Report

REQUIRED_INFO = ("seqLength", "imWidth", "imHeight")


def _seqinfo(store: st.Storage, seq_dir: str, seq: str) -> dict[str, str]:
    ini = configparser.ConfigParser()
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        ini.read_string(store.read_text(st.join(seq_dir, "seqinfo.ini")))
    except (configparser.Error, StorageError) as exc:
        raise ConvertError(f"sequence {seq}: seqinfo.ini: {exc}") from exc
    if "Sequence" not in ini:
        raise ConvertError(f"sequence {seq}: seqinfo.ini has no [Sequence] section")
    info = dict(ini["Sequence"])
    for key in REQUIRED_INFO:
        if key not in info or not info[key].strip().isdigit():
            raise ConvertError(f"sequence {seq}: seqinfo.ini needs an integer {key}, got {info.get(key)!r}")
    return info


def _find_splits(store: st.Storage, mot: str) -> dict[str, str]:
    try:
        dirs, _files = store.listdir(mot)
    except StorageError as exc:
        raise ConvertError(f"--mot: {exc}") from exc
    if any(store.exists(st.join(mot, d, "seqinfo.ini")) for d in dirs):
        return {st.name(mot): mot}
    splits = {d: st.join(mot, d) for d in dirs if d != "annotations"}
    if not splits:
        raise ConvertError(f"--mot: {mot} has no sequences (folders with seqinfo.ini) and no split folders")
    return splits


def _categories(store: st.Storage, mot: str, classes: dict[int, str] | None) -> dict[int, str]:
    if classes:
        return classes
    path = st.join(mot, "classes.json")
    if store.exists(path):
        try:
            raw = json.loads(store.read_text(path))
            return {int(k): str(v) for k, v in raw.items()}
        except (ValueError, AttributeError) as exc:
            raise ConvertError(f'{path}: expected {{"1": "name", ...}}: {exc}') from exc
    return {1: "person"}


class _Seq:
    def __init__(self, name: str, info: dict[str, str], gt: np.ndarray) -> None:
        self.name = name
        self.length = int(info["seqLength"])
        self.width = int(info["imWidth"])
        self.height = int(info["imHeight"])
        self.im_dir = info.get("imDir", "img1")
        self.ext = info.get("imExt", ".jpg")
        self.gt = gt


def _load_split(store: st.Storage, split_dir: str, cats: dict[int, str], report: Report) -> list[_Seq]:
    dirs, _files = store.listdir(split_dir)
    seqs = []
    for name in dirs:
        seq_dir = st.join(split_dir, name)
        if not store.exists(st.join(seq_dir, "seqinfo.ini")):
            report.warn("not_a_sequence", f"{split_dir}/{name}", "no seqinfo.ini; folder skipped")
            continue
        info = _seqinfo(store, seq_dir, name)
        seq = _Seq(name, info, np.empty((0, 9)))
        _d, images = store.listdir(st.join(seq_dir, seq.im_dir))
        have = set(images)
        for f in range(1, seq.length + 1):
            if f"{f:06d}{seq.ext}" not in have:
                raise ConvertError(
                    f"sequence {name}, frame {f}: {seq.im_dir}/{f:06d}{seq.ext} is missing (seqLength {seq.length})"
                )
        gt_path = st.join(seq_dir, "gt", "gt.txt")
        if store.exists(gt_path):
            try:
                gt = parse_mot(store.read_text(gt_path), f"sequence {name}: gt/gt.txt", min_cols=6)
            except MotFormatError as exc:
                raise ConvertError(str(exc)) from exc
            for r in gt:
                f = int(r[0])
                if f > seq.length:
                    raise ConvertError(
                        f"sequence {name}, frame {f}: gt.txt has a row past seqLength {seq.length}"
                    )
                cls = int(r[7]) if gt.shape[1] > 7 else 1
                if cls not in cats and not (gt.shape[1] > 6 and r[6] == 0):
                    raise ConvertError(f"sequence {name}, frame {f}: class {cls} is not a category {cats}")
            seq.gt = gt
        else:
            report.warn("no_gt", f"sequence {name}", "no gt/gt.txt: images only")
        seqs.append(seq)
    if not seqs:
        raise ConvertError(f"{split_dir}: no sequences")
    return seqs


def _coco(seqs: list[_Seq], cats: dict[int, str], part: str, report: Report | None) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    videos = []
    track_offset = 0
    for vid, seq in enumerate(seqs, start=1):
        videos.append({"id": vid, "file_name": seq.name})
        half = seq.length // 2
        lo, hi = {"all": (1, seq.length), "half1": (1, half), "half2": (half + 1, seq.length)}[part]
        first_id = len(images) + 1
        n = hi - lo + 1
        for k in range(n):
            images.append({
                "file_name": f"{seq.name}/{seq.im_dir}/{lo + k:06d}{seq.ext}", "id": first_id + k,
                "frame_id": k + 1, "prev_image_id": first_id + k - 1 if k > 0 else -1,
                "next_image_id": first_id + k + 1 if k < n - 1 else -1, "video_id": vid,
                "height": seq.height, "width": seq.width,
            })  # fmt: skip
        max_tid = 0
        for r in seq.gt:
            f, tid = int(r[0]), int(r[1])
            max_tid = max(max_tid, tid)
            if not lo <= f <= hi:
                continue
            if seq.gt.shape[1] > 6 and r[6] == 0:
                if report is not None:
                    report.warn(
                        "ignored_row",
                        f"sequence {seq.name}, frame {f}",
                        f"track {tid} is marked ignore (column 7 = 0); skipped",
                    )
                continue
            x, y, w, h = (float(v) for v in r[2:6])
            anns.append({
                "id": len(anns) + 1, "category_id": int(r[7]) if seq.gt.shape[1] > 7 else 1,
                "image_id": first_id + f - lo, "track_id": track_offset + tid, "bbox": [x, y, w, h],
                "area": w * h, "iscrowd": 0,
            })  # fmt: skip
        track_offset += max_tid
    return {
        "images": images, "annotations": anns, "videos": videos,
        "categories": [{"id": k, "name": v} for k, v in sorted(cats.items())],
    }  # fmt: skip


def mot_to_coco(mot: str, out: str | None = None, half: bool = False, classes: dict[int, str] | None = None,
                strict: bool = False, store: st.Storage | None = None) -> dict[str, Any]:  # fmt: skip
    store = store or st.Storage()
    report = Report(strict)
    out = out or mot
    cats = _categories(store, mot, classes)
    written: dict[str, dict[str, int]] = {}
    for split, split_dir in _find_splits(store, mot).items():
        seqs = _load_split(store, split_dir, cats, report)
        parts = [("all", split)] + (
            [("half1", f"{split}_half1"), ("half2", f"{split}_half2")] if half else []
        )
        for part, fname in parts:
            doc = _coco(seqs, cats, part, report if part == "all" else None)
            store.write(st.join(out, "annotations", f"{fname}.json"), json.dumps(doc))
            written[fname] = {k: len(doc[k]) for k in ("images", "annotations", "videos")}
        report.count("sequences", len(seqs))
    return report.summary(
        out=st.join(out, "annotations"), files=written, categories={str(k): v for k, v in cats.items()}
    )
