"""SageMaker Ground Truth video object tracking labels <-> MOT17.

``gt_to_mot``: ``trackcast convert gt-to-mot --manifest output.manifest --job-name J --out DIR``.
Each line of a Ground Truth output manifest names one sequence::

    {"source-ref": "s3://.../seq1.json",                       # the sequence file
     "J-ref": "s3://.../consolidated-annotation/output/0/SeqLabel.json",
     "J-ref-metadata": {"class-map": {"0": "person", "1": "ball"}, "type": "groundtruth/video-object-tracking", ...}}

The sequence file lists the frames (``{"seq-no", "prefix", "number-of-frames", "frames": [{"frame-no",
"frame", "unix-timestamp"}]}``); ``SeqLabel.json`` holds ``{"tracking-annotations": [{"frame-no",
"frame", "annotations": [{"top", "left", "width", "height", "class-id", "object-id", "object-name",
"label-category-attributes"}]}]}``. ``frame-no`` may be a string or an int, and 0- or 1-based: MOT
frame numbers are the 1-based position in the sequence file, ordered by frame-no; an annotation entry
is matched to its frame by file name, else by frame-no.

What comes out, per sequence (``DIR/<split>/<seq>/``), is the MOT17 layout:

- ``img1/000001.jpg ...`` (JPEG bytes copied as they are; other formats re-encoded),
- ``gt/gt.txt``: ``frame,id,left,top,width,height,1,class,visibility`` sorted by id then frame. Track
  ids are 1.. per sequence in order of first appearance of each ``object-id`` (never the number after
  the ':' of ``object-name``, which repeats across classes); ``class`` is the Ground Truth class-id + 1
  (MOT and COCO count classes from 1); ``visibility`` comes from a numeric ``visibility`` attribute, or
  ``occluded`` (no / partially / yes -> 1 / 0.5 / 0), else 1,
- ``det/det.txt``: the same boxes as detections with score 1 (``frame,-1,x,y,w,h,1,-1,-1,-1``),
- ``seqinfo.ini``: name, imDir, frameRate (from the frames' unix-timestamps when they differ, else
  ``--frame-rate``), seqLength, imWidth, imHeight, imExt,

plus ``DIR/classes.json`` (MOT class -> name) for ``mot-to-coco``.

``mot_to_gt``: ``trackcast convert mot-to-gt --tracks tracks.txt --frames DIR --out DIR`` writes the same
schema back (sequence file, SeqLabel.json, an input manifest and the label category file) from tracker
output, so a Ground Truth adjustment job starts from pre-labels.
"""

from __future__ import annotations

import configparser
import io
import itertools
import json
import math
import random
import re
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracker.mot import parse_mot
from training import storage as st
from training.errors import ConvertError, StorageError
from training.report import Report

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLIT_NAMES = ("train", "val", "test")
TRACKING_TYPE = "groundtruth/video-object-tracking"
#: frames copied concurrently (S3 round trips dominate; local copies do not mind)
COPY_THREADS = 16


@dataclass
class FrameRef:
    no: int  # frame-no as written (0- or 1-based)
    file: str  # file name in the sequence's prefix
    uri: str
    timestamp: float | None


@dataclass
class Sequence:
    name: str
    where: str  # "sequence NAME (manifest line N)" for messages
    frames: list[FrameRef]
    rows: list[tuple[int, int, float, float, float, float, int, float]] = field(default_factory=list)
    fps: float = 30.0
    width: int = 0
    height: int = 0


def _as_int(value: Any, what: str, where: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        f = float(value)
        if f != int(f):
            raise ValueError
        return int(f)
    except (TypeError, ValueError):
        raise ConvertError(
            f"{where}: {what} must be an integer (a number or a string of one), got {value!r}"
        ) from None


def _as_float(value: Any, what: str, where: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        f = float(value)
    except (TypeError, ValueError):
        raise ConvertError(f"{where}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise ConvertError(f"{where}: {what} must be finite, got {value!r}")
    return f


def _load_json(store: st.Storage, uri: str, where: str) -> Any:
    try:
        text = store.read_text(uri)
    except StorageError as exc:
        raise ConvertError(f"{where}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{where}: {uri} is not JSON ({exc.msg}, line {exc.lineno})") from exc


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "seq"


def image_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) of an encoded image; a clear error when it is not one."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise ConvertError(f"{where}: not an image file (cannot decode {len(data)} bytes)")
    return int(img.shape[1]), int(img.shape[0])


def _to_jpeg(data: bytes, where: str) -> bytes:
    if data[:3] == b"\xff\xd8\xff":
        return data
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ConvertError(f"{where}: not an image file")
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ConvertError(f"{where}: could not encode as JPEG")
    return bytes(buf)


def _visibility(attrs: Any) -> float:
    if not isinstance(attrs, dict):
        return 1.0
    for key in ("visibility", "ratio_vis"):
        if key in attrs:
            try:
                return min(1.0, max(0.0, float(attrs[key])))
            except (TypeError, ValueError):
                pass
    occl = str(attrs.get("occluded", "")).strip().lower()
    return {"no": 1.0, "partially": 0.5, "partial": 0.5, "yes": 0.0, "fully": 0.0}.get(occl, 1.0)


def _clip_box(
    left: float, top: float, w: float, h: float, width: int, height: int
) -> tuple[float, float, float, float]:
    """The box clipped to the image; the same numbers when it is inside (no float round trip)."""
    if left >= 0 and top >= 0 and left + w <= width and top + h <= height:
        return left, top, w, h
    x1, y1 = max(0.0, left), max(0.0, top)
    x2, y2 = min(float(width), left + w), min(float(height), top + h)
    return x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)


# --------------------------------------------------------------------------------------- reading


def _read_sequence(store: st.Storage, seq_uri: str, name: str, where: str, default_fps: float) -> Sequence:
    doc = _load_json(store, seq_uri, f"{where}: sequence file")
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list):
        raise ConvertError(f"{where}: sequence file {seq_uri} has no 'frames' list")
    prefix = doc.get("prefix") or st.parent(seq_uri)
    prefix = st.resolve(str(prefix), st.parent(seq_uri))
    frames: list[FrameRef] = []
    seen: set[int] = set()
    for i, fr in enumerate(doc["frames"]):
        fwhere = f"{where}, sequence file frame entry {i}"
        if not isinstance(fr, dict) or "frame" not in fr or "frame-no" not in fr:
            raise ConvertError(f"{fwhere}: needs 'frame-no' and 'frame', got {fr!r}")
        no = _as_int(fr["frame-no"], "frame-no", fwhere)
        if no in seen:
            raise ConvertError(f"{fwhere}: frame-no {no} appears twice")
        seen.add(no)
        ts = fr.get("unix-timestamp")
        frames.append(FrameRef(no, str(fr["frame"]), st.join(prefix, str(fr["frame"])),
                               float(ts) if isinstance(ts, int | float) else None))  # fmt: skip
    if not frames:
        raise ConvertError(f"{where}: sequence file {seq_uri} lists no frames")
    frames.sort(key=lambda f: f.no)
    fps = default_fps
    stamps = [f.timestamp for f in frames if f.timestamp is not None]
    if len(stamps) == len(frames) and len(frames) > 1:
        diffs = [b - a for a, b in itertools.pairwise(stamps) if b > a]
        if diffs:
            fps = round(1.0 / statistics.median(diffs), 3)
    declared = doc.get("number-of-frames")
    if declared is not None and _as_int(declared, "number-of-frames", where) != len(frames):
        raise ConvertError(
            f"{where}: number-of-frames says {declared} but the sequence file lists {len(frames)} frames"
        )
    return Sequence(name, where, frames, fps=fps)


def _read_labels(
    store: st.Storage, seq: Sequence, label_uri: str, class_map: dict[int, str], report: Report
) -> None:
    doc = _load_json(store, label_uri, f"{seq.where}: label file")
    if not isinstance(doc, dict) or not isinstance(doc.get("tracking-annotations"), list):
        raise ConvertError(
            f"{seq.where}: {label_uri} has no 'tracking-annotations' list (is this a video object tracking job?)"
        )
    by_file = {f.file: i for i, f in enumerate(seq.frames)}
    by_no = {f.no: i for i, f in enumerate(seq.frames)}
    track_of: dict[str, int] = {}
    seen_in_frame: set[tuple[int, str]] = set()
    entries = []
    for entry in doc["tracking-annotations"]:
        if not isinstance(entry, dict):
            raise ConvertError(f"{seq.where}: a tracking-annotations entry is not an object: {entry!r}")
        fname = entry.get("frame")
        idx = by_file.get(str(fname)) if fname is not None else None
        if idx is None and "frame-no" in entry:
            idx = by_no.get(_as_int(entry["frame-no"], "frame-no", f"{seq.where}, frame {fname}"))
        if idx is None:
            raise ConvertError(
                f"{seq.where}, frame {entry.get('frame-no')!r} ({fname}): annotated frame is not in the sequence file"
            )
        entries.append((idx, entry))
    entries.sort(key=lambda e: e[0])  # first appearance in frame order gives the track ids
    for idx, entry in entries:
        frame = idx + 1
        fwhere = f"{seq.where}, frame {frame} ({seq.frames[idx].file})"
        anns = entry.get("annotations", [])
        if not isinstance(anns, list):
            raise ConvertError(f"{fwhere}: 'annotations' must be a list")
        for a in anns:
            if not isinstance(a, dict):
                raise ConvertError(f"{fwhere}: an annotation is not an object: {a!r}")
            obj = a.get("object-id") or a.get("object-name")
            if not obj:
                raise ConvertError(f"{fwhere}: an annotation has neither object-id nor object-name: {a!r}")
            obj = str(obj)
            if "class-id" not in a:
                raise ConvertError(f"{fwhere}: object {obj} has no class-id")
            cid = _as_int(a["class-id"], "class-id", f"{fwhere}, object {obj}")
            if cid not in class_map:
                raise ConvertError(
                    f"{fwhere}: object {obj} has class-id {cid}, which is not in the class map {class_map}"
                )
            left, top, w, h = (
                _as_float(a.get(k), k, f"{fwhere}, object {obj}") for k in ("left", "top", "width", "height")
            )
            if (frame, obj) in seen_in_frame:
                report.warn(
                    "duplicate_object", fwhere, f"object {obj} is boxed twice; the second box is skipped"
                )
                continue
            if w <= 0 or h <= 0:
                report.warn("empty_box", fwhere, f"object {obj} has a box of size {w}x{h}; skipped")
                continue
            cx, cy, cw, ch = _clip_box(left, top, w, h, seq.width, seq.height)
            if cw <= 0 or ch <= 0:
                report.warn("box_outside_image", fwhere,
                            f"object {obj}: box left={left} top={top} {w}x{h} is outside the {seq.width}x{seq.height} image; skipped")  # fmt: skip
                continue
            if (cx, cy, cw, ch) != (left, top, w, h):
                report.warn("box_clipped", fwhere,
                            f"object {obj}: box left={left} top={top} {w}x{h} reaches outside the {seq.width}x{seq.height} image; clipped")  # fmt: skip
            seen_in_frame.add((frame, obj))
            tid = track_of.setdefault(obj, len(track_of) + 1)
            seq.rows.append(
                (frame, tid, cx, cy, cw, ch, cid + 1, _visibility(a.get("label-category-attributes")))
            )


def _fmt(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def _seqinfo(seq: Sequence) -> str:
    ini = configparser.ConfigParser()
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini["Sequence"] = {
        "name": seq.name, "imDir": "img1", "frameRate": _fmt(seq.fps), "seqLength": str(len(seq.frames)),
        "imWidth": str(seq.width), "imHeight": str(seq.height), "imExt": ".jpg",
    }  # fmt: skip
    buf = io.StringIO()
    ini.write(buf, space_around_delimiters=False)
    return buf.getvalue()


def _assign_splits(names: list[str], fractions: list[float], seed: int) -> dict[str, str]:
    order = sorted(names)
    random.Random(seed).shuffle(order)
    n = len(order)
    exact = [f * n for f in fractions]
    counts = [math.floor(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))[: n - sum(counts)]:
        counts[i] += 1
    out: dict[str, str] = {}
    start = 0
    for split, c in zip(SPLIT_NAMES, counts, strict=False):
        for nm in order[start : start + c]:
            out[nm] = split
        start += c
    return out


def _parallel(fn: Callable[[int], None], n: int) -> None:
    with ThreadPoolExecutor(max_workers=COPY_THREADS) as pool:
        for _ in pool.map(fn, range(n)):
            pass


def gt_to_mot(manifest: str, job_name: str, out: str, split: list[float] | None = None,
              frame_rate: float = 30.0, seed: int = 0, strict: bool = False,
              store: st.Storage | None = None, raw_of: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Convert a Ground Truth video object tracking output manifest to a MOT17 tree under ``out``.

    ``raw_of`` maps a frame's location (an anonymised copy) to the frame to copy (the raw one).
    """
    store = store or st.Storage()
    report = Report(strict)
    fractions = split or [1.0]
    if len(fractions) > len(SPLIT_NAMES) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConvertError(
            f"--split must be up to 3 non-negative fractions summing to 1 (train,val,test), got {fractions}"
        )
    text = _load_lines(store, manifest)
    ref_key, meta_key = f"{job_name}-ref", f"{job_name}-ref-metadata"
    base = st.parent(manifest)
    sequences: list[tuple[Sequence, str, dict[int, str]]] = []
    class_map: dict[int, str] = {}
    used: set[str] = set()
    for lineno, line in text:
        where = f"manifest line {lineno}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConvertError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(item, dict) or "source-ref" not in item:
            raise ConvertError(f"{where}: no 'source-ref' (the sequence file)")
        seq_uri = st.resolve(str(item["source-ref"]), base)
        stem = st.name(seq_uri).rsplit(".", 1)[0]
        where = f"sequence {stem} (manifest line {lineno})"
        raw_meta = item.get(meta_key)
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        if ref_key not in item:
            refs = sorted(k for k in item if k.endswith("-ref") and k != "source-ref")
            hint = f"; this line has {refs}: is --job-name one of {[r[:-4] for r in refs]}?" if refs else ""
            reason = f" (Ground Truth says: {meta['failure-reason']})" if "failure-reason" in meta else ""
            raise ConvertError(f"{where}: no '{ref_key}' (the SeqLabel.json of this sequence){reason}{hint}")
        cmap_raw = meta.get("class-map")
        if not isinstance(cmap_raw, dict) or not cmap_raw:
            raise ConvertError(f"{where}: '{meta_key}' has no class-map")
        cmap = {_as_int(k, "class-map key", where): str(v) for k, v in cmap_raw.items()}
        for k, v in cmap.items():
            if class_map.setdefault(k, v) != v:
                raise ConvertError(
                    f"{where}: class-id {k} is {v!r} here but {class_map[k]!r} on an earlier line"
                )
        name = _safe_name(stem)
        if name in used:
            name = f"{name}-{lineno}"
        used.add(name)
        seq = _read_sequence(store, seq_uri, name, where, frame_rate)
        if raw_of:
            for fr in seq.frames:
                fr.uri = raw_of.get(
                    fr.uri,
                    raw_of.get(str(Path(fr.uri).resolve()) if not st.is_s3(fr.uri) else fr.uri, fr.uri),
                )
            report.count("raw_frames", sum(1 for fr in seq.frames if fr.uri in raw_of.values()))
        sequences.append((seq, st.resolve(str(item[ref_key]), base), cmap))
    if not sequences:
        raise ConvertError(f"{manifest}: the manifest has no lines")
    splits = _assign_splits([s.name for s, _, _ in sequences], fractions, seed)
    for nm, frac in zip(SPLIT_NAMES, fractions, strict=False):
        if frac > 0 and nm not in splits.values():
            report.warn(
                "empty_split", f"split {nm}", f"{len(sequences)} sequence(s) leave no sequence for {frac:.2f}"
            )
    per_split: dict[str, list[str]] = {}
    for seq, label_uri, cmap in sequences:
        split_name = splits[seq.name]
        per_split.setdefault(split_name, []).append(seq.name)
        seq_out = st.join(out, split_name, seq.name)
        # the image size is needed to check boxes: read the first frame before the labels
        first = _read_frame(store, seq, 0)
        seq.width, seq.height = image_size(first, f"{seq.where}, frame 1 ({seq.frames[0].file})")
        _read_labels(store, seq, label_uri, cmap, report)

        def copy(i: int, seq: Sequence = seq, seq_out: str = seq_out, first: bytes = first) -> None:
            data = first if i == 0 else _read_frame(store, seq, i)
            where = f"{seq.where}, frame {i + 1} ({seq.frames[i].file})"
            size = image_size(data, where)
            if size != (seq.width, seq.height):
                raise ConvertError(
                    f"{where}: image is {size[0]}x{size[1]}, frame 1 is {seq.width}x{seq.height}"
                )
            store.write(st.join(seq_out, "img1", f"{i + 1:06d}.jpg"), _to_jpeg(data, where))

        _parallel(copy, len(seq.frames))
        rows = sorted(seq.rows, key=lambda r: (r[1], r[0]))
        gt = "".join(
            f"{f},{t},{_fmt(x)},{_fmt(y)},{_fmt(w)},{_fmt(h)},1,{c},{_fmt(v)}\n"
            for f, t, x, y, w, h, c, v in rows
        )
        det = "".join(f"{f},-1,{_fmt(x)},{_fmt(y)},{_fmt(w)},{_fmt(h)},1,-1,-1,-1\n"
                      for f, _t, x, y, w, h, _c, _v in sorted(seq.rows, key=lambda r: (r[0], r[1])))  # fmt: skip
        store.write(st.join(seq_out, "gt", "gt.txt"), gt)
        store.write(st.join(seq_out, "det", "det.txt"), det)
        store.write(st.join(seq_out, "seqinfo.ini"), _seqinfo(seq))
        report.count("sequences")
        report.count("frames", len(seq.frames))
        report.count("boxes", len(rows))
        report.count("tracks", len({r[1] for r in rows}))
    classes = {str(k + 1): v for k, v in sorted(class_map.items())}
    store.write(st.join(out, "classes.json"), json.dumps(classes, indent=2) + "\n")
    return report.summary(out=out, splits=per_split, classes=classes)


def _load_lines(store: st.Storage, manifest: str) -> list[tuple[int, str]]:
    try:
        text = store.read_text(manifest)
    except StorageError as exc:
        raise ConvertError(f"manifest: {exc}") from exc
    return [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _read_frame(store: st.Storage, seq: Sequence, i: int) -> bytes:
    fr = seq.frames[i]
    try:
        return store.read(fr.uri)
    except StorageError as exc:
        raise ConvertError(
            f"{seq.where}, frame {i + 1} ({fr.file}): the frame file is missing or unreadable: {exc}"
        ) from exc


# --------------------------------------------------------------------------------------- writing


def _image_files(store: st.Storage, frames: str) -> list[str]:
    try:
        _dirs, files = store.listdir(frames)
    except StorageError as exc:
        raise ConvertError(f"--frames: {exc}") from exc
    images = [f for f in files if f.lower().endswith(IMAGE_EXTS)]
    if not images:
        raise ConvertError(f"--frames: no images ({', '.join(IMAGE_EXTS)}) in {frames}")
    return images


def mot_to_gt(tracks: str, frames: str, out: str, label_attribute: str = "trackcast-prelabels",
              class_names: list[str] | None = None, seq_name: str | None = None, frame_rate: float = 30.0,
              strict: bool = False, store: st.Storage | None = None) -> dict[str, Any]:  # fmt: skip
    """Tracker output (MOT results) + the frames it ran on -> a Ground Truth adjustment-job input."""
    store = store or st.Storage()
    report = Report(strict)
    names = class_names or ["person"]
    if not re.fullmatch(r"[A-Za-z0-9](-*[A-Za-z0-9])*", label_attribute) or len(label_attribute) > 122:
        raise ConvertError(
            f"--label-attribute {label_attribute!r}: letters, digits and '-' only (Ground Truth's rule)"
        )
    try:
        data = parse_mot(store.read_text(tracks), tracks)
    except StorageError as exc:
        raise ConvertError(f"--tracks: {exc}") from exc
    images = _image_files(store, frames)
    prefix = frames if st.is_s3(frames) else str(Path(frames).resolve())
    prefix = prefix.rstrip("/") + "/"
    seq = _safe_name(seq_name or st.name(frames) or "sequence")
    width, height = image_size(store.read(st.join(frames, images[0])), f"--frames: {images[0]}")
    n = len(images)
    per_frame: dict[int, list[dict[str, Any]]] = {}
    for row in data:
        frame, tid = int(row[0]), int(row[1])
        where = f"sequence {seq}, frame {frame}"
        if frame > n:
            raise ConvertError(
                f"{where}: {tracks} has a row for frame {frame}, but {frames} has only {n} images"
            )
        if tid < 0:
            raise ConvertError(f"{where}: track id {tid}: mot-to-gt needs tracker output, not detections")
        cls = int(row[7]) - 1 if len(row) > 7 and row[7] >= 1 else 0
        if cls >= len(names):
            raise ConvertError(
                f"{where}: class {cls + 1} but only {len(names)} class name(s) given ({names}); pass --classes"
            )
        left, top, w, h = (float(v) for v in row[2:6])
        x, y, cw, ch = _clip_box(left, top, w, h, width, height)
        if cw <= 0 or ch <= 0:
            report.warn(
                "box_outside_image", where, f"track {tid} is outside the {width}x{height} image; skipped"
            )
            continue
        if (x, y, cw, ch) != (left, top, w, h):
            report.warn(
                "box_clipped", where, f"track {tid} reaches outside the {width}x{height} image; clipped"
            )
        per_frame.setdefault(frame, []).append({
            "object-id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"trackcast:{seq}:{tid}")),
            "object-name": f"{names[cls]}:{tid}",
            "class-id": str(cls),
            "left": round(x, 4), "top": round(y, 4), "width": round(cw, 4), "height": round(ch, 4),
            "label-category-attributes": {},
        })  # fmt: skip
        report.count("boxes")
    seq_file = st.join(out, f"{seq}.json")
    label_file = st.join(out, seq, "SeqLabel.json")
    store.write(seq_file, json.dumps({
        "seq-no": 1, "prefix": prefix, "number-of-frames": n,
        "frames": [{"frame-no": i, "unix-timestamp": round(i / frame_rate, 6), "frame": f} for i, f in enumerate(images)],
    }, indent=1) + "\n")  # fmt: skip
    store.write(label_file, json.dumps({"tracking-annotations": [
        {"frame-no": str(i), "frame": f, "annotations": per_frame.get(i + 1, [])} for i, f in enumerate(images)
    ]}) + "\n")  # fmt: skip
    used = sorted({int(a["class-id"]) for anns in per_frame.values() for a in anns}) or [0]
    line = {
        "source-ref": seq_file,
        f"{label_attribute}-ref": label_file,
        f"{label_attribute}-ref-metadata": {
            "class-map": {str(c): names[c] for c in used},
            "job-name": f"labeling-job/{label_attribute}",
            "human-annotated": "no",
            "creation-date": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime()),
            "type": TRACKING_TYPE,
        },
    }
    store.write(st.join(out, "input.manifest"), json.dumps(line) + "\n")
    store.write(st.join(out, "label-categories.json"), json.dumps({
        "document-version": "2020-08-15",
        "labels": [{"label": nm} for nm in names],
        "instructions": {"shortInstruction": "Adjust the pre-labelled boxes; keep each object's ID across frames.",
                         "fullInstruction": "Boxes come from a tracker. Fix boxes, merge IDs that belong to one object, split IDs that jump between objects, and add missed objects."},
    }, indent=2) + "\n")  # fmt: skip
    report.count("frames", n)
    report.count("tracks", len({int(r[1]) for r in data}))
    return report.summary(out=out, manifest=st.join(out, "input.manifest"), label_attribute=label_attribute,
                          sequence=seq, image_size=[width, height])  # fmt: skip
