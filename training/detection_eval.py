"""Detector accuracy the COCO way: AP, AP50, AP75, AR@100 and AP per class, with pycocotools.

``trackcast eval-det --gt GT --dets DET_TXT [--json]`` (or ``--model M --video V`` instead of
``--dets``). Ground truth (``load_gt``):

- a COCO JSON (``images``, ``annotations``, ``categories``; as ``convert mot-to-coco`` writes it);
- a MOT ``gt.txt``, a sequence folder (``gt/gt.txt``, ``seqinfo.ini``) or a folder of sequences (as
  ``convert gt-to-mot`` writes them, or MOTChallenge's layout). The frame number is the image. With a
  ``classes.json`` beside the sequences every class is a category; without one the file is read as
  MOT17: class 1 (pedestrian) is scored, and its distractor classes (person on vehicle, static
  person, distractor, reflection) and rows with the consider flag 0 are crowd regions (a detection
  on them is neither right nor wrong), the other classes are left out. A file with no class column
  is one category.

Detections: MOT det.txt rows ``frame,-1,x,y,w,h,score,class,...`` (``trackcast detect`` writes the
class in column 8; -1 or no column: no class); for a folder of sequences, a folder of
``<seq>.txt``. A detection's class becomes a ground-truth category by ``class_map`` (model class ->
category id); without one: every detection counts as the category when the ground truth has only
one, else by class name (``det_names``) where the names are known, else class + 1 (MOT's classes
start at 1: ``convert gt-to-mot`` writes Ground Truth's class-id + 1).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tracker.errors import MotFormatError
from tracker.evaluation import seq_length
from tracker.mot import read_mot
from training.errors import TrainingError

F64 = npt.NDArray[np.float64]
#: MOT17's classes scored as crowd (ignored) regions: person on vehicle, static person, distractor, reflection.
MOT17_DISTRACTORS = (2, 7, 8, 12)


class EvalError(TrainingError):
    """Ground truth or detections that cannot be evaluated (what and where)."""


@dataclass
class GroundTruth:
    coco: dict[str, Any]
    #: (sequence name or "", frame) -> image id
    images: dict[tuple[str, int], int] = field(default_factory=dict)
    sequences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def categories(self) -> dict[int, str]:
        return {int(c["id"]): str(c["name"]) for c in self.coco["categories"]}


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


# ---------------------------------------------------------------------- ground truth
def load_gt(path: str | Path) -> GroundTruth:
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".json":
        return _coco_gt(p)
    if p.is_file():
        return _mot_gt([("", p, None)], None)
    if not p.is_dir():
        raise EvalError(f"--gt {p}: no such file or folder")
    if (p / "gt" / "gt.txt").is_file():
        return _mot_gt([("", p / "gt" / "gt.txt", seq_length(p))], _classes_json(p.parent))
    if (p / "gt.txt").is_file():
        return _mot_gt([("", p / "gt.txt", seq_length(p))], _classes_json(p))
    seqs = sorted(d for d in p.iterdir() if (d / "gt" / "gt.txt").is_file())
    if not seqs:
        raise EvalError(f"--gt {p}: no gt.txt, gt/gt.txt or sequence folders (<seq>/gt/gt.txt) in it")
    return _mot_gt([(d.name, d / "gt" / "gt.txt", seq_length(d)) for d in seqs], _classes_json(p))


def _coco_gt(p: Path) -> GroundTruth:
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise EvalError(f"--gt {p}: not a readable JSON file ({exc})") from exc
    missing = [
        k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data
    ]
    if missing:
        raise EvalError(f"--gt {p}: a COCO file needs {', '.join(missing)}")
    gt = GroundTruth(data)
    for im in data["images"]:
        seq = ""
        if "video_id" in im and "frame_id" in im:
            vids = {v["id"]: v.get("file_name", str(v["id"])) for v in data.get("videos", [])}
            seq = str(vids.get(im["video_id"], im["video_id"])) if len(vids) > 1 else ""
            gt.images[(seq, int(im["frame_id"]))] = int(im["id"])
        else:  # frame = position in the file (images in order)
            gt.images[(seq, len(gt.images) + 1)] = int(im["id"])
    gt.sequences = sorted({s for s, _ in gt.images})
    return gt


def _classes_json(d: Path) -> dict[int, str] | None:
    p = d / "classes.json"
    if not p.is_file():
        return None
    try:
        return {int(k): str(v) for k, v in json.loads(p.read_text()).items()}
    except (ValueError, AttributeError) as exc:
        raise EvalError(f'{p}: expected {{"1": "name", ...}} ({exc})') from exc


def _read(path: Path, what: str) -> F64:
    try:
        return read_mot(path, min_cols=6)
    except MotFormatError as exc:
        raise EvalError(f"{what}: {exc}") from exc


def _mot_gt(seqs: Sequence[tuple[str, Path, int | None]], classes: dict[int, str] | None) -> GroundTruth:
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    gt = GroundTruth({})
    rows_by_seq = {name: _read(path, f"--gt {path}") for name, path, _n in seqs}
    has_class = any(r.shape[1] > 7 and (r[:, 7] >= 0).any() for r in rows_by_seq.values())
    if classes is None:
        cats = {1: "pedestrian"} if has_class else {1: "object"}
        if has_class:
            gt.notes.append(
                "MOT17 classes: pedestrians scored; distractors and consider=0 rows are crowd regions"
            )
    else:
        cats = classes
    for name, path, n in seqs:
        rows = rows_by_seq[name]
        last = n if n is not None else (int(rows[:, 0].max()) if len(rows) else 0)
        for f in range(1, last + 1):
            gt.images[(name, f)] = len(images) + 1
            images.append({"id": len(images) + 1, "file_name": f"{name}/{f:06d}" if name else f"{f:06d}",
                           "frame_id": f})  # fmt: skip
        for r in rows:
            f = int(r[0])
            if (name, f) not in gt.images:
                raise EvalError(f"--gt {path}: frame {f} is past the sequence's {last} frames")
            cls = int(r[7]) if rows.shape[1] > 7 and r[7] >= 0 else 1
            consider = rows.shape[1] <= 6 or r[6] != 0
            if classes is None and has_class:
                crowd = cls in MOT17_DISTRACTORS or (cls == 1 and not consider)
                if cls != 1 and not crowd:
                    continue
                cls = 1
            else:
                if cls not in cats:
                    raise EvalError(f"--gt {path}: frame {f}: class {cls} is not a category {cats}")
                crowd = not consider
            x, y, w, h = (float(v) for v in r[2:6])
            anns.append({"id": len(anns) + 1, "image_id": gt.images[(name, f)], "category_id": cls,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(crowd)})  # fmt: skip
    gt.coco = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k, "name": v} for k, v in sorted(cats.items())],
    }
    gt.sequences = [s for s, _p, _n in seqs]
    return gt


# ---------------------------------------------------------------------- detections
def category_of(
    gt: GroundTruth,
    det_classes: Sequence[int],
    class_map: Mapping[int, int] | None,
    det_names: Sequence[str] | None,
) -> tuple[dict[int, int], str]:
    """Model class -> ground-truth category (classes missing from the map are not scored), and how."""
    cats = gt.categories
    if class_map:
        bad = sorted(set(class_map.values()) - set(cats))
        if bad:
            raise EvalError(f"--class-map: {bad} are not ground-truth categories {cats}")
        return dict(class_map), "as --class-map says"
    present = sorted(set(det_classes))
    if len(cats) == 1:
        (only,) = cats
        return {c: only for c in present}, f"every detection counts as {cats[only]!r} (the only category)"
    if det_names:
        by_name = {_norm(v): k for k, v in cats.items()}
        m = {
            c: by_name[_norm(det_names[c])]
            for c in present
            if 0 <= c < len(det_names) and _norm(det_names[c]) in by_name
        }
        return m, "by class name"
    return {c: c + 1 for c in present if c + 1 in cats}, "class + 1 (MOT's convention)"


def results_from_rows(
    gt: GroundTruth, seq: str, rows: F64, class_map: Mapping[int, int] | None, det_names: Sequence[str] | None,
    where: str,
) -> tuple[list[dict[str, Any]], str]:  # fmt: skip
    """det.txt rows -> COCO result entries (image_id, category_id, bbox, score)."""
    classes = rows[:, 7].astype(np.int64) if rows.shape[1] > 7 else np.full(len(rows), -1)
    cmap, how = category_of(gt, classes.tolist(), class_map, det_names)
    out = []
    for r, c in zip(rows, classes.tolist(), strict=True):
        image = gt.images.get((seq, int(r[0])))
        if image is None:
            raise EvalError(f"{where}: frame {int(r[0])} has no ground-truth image (sequence {seq or '-'})")
        cat = cmap.get(c)
        if cat is None:
            continue
        out.append(
            {"image_id": image, "category_id": cat, "bbox": [float(v) for v in r[2:6]], "score": float(r[6])}
        )
    return out, how


def load_dets(
    gt: GroundTruth, path: str | Path, class_map: Mapping[int, int] | None = None,
    det_names: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], str]:  # fmt: skip
    p = Path(path)
    seqs = [s for s in gt.sequences if s]
    if p.is_dir():
        if not seqs:
            raise EvalError(f"--dets {p} is a folder; the ground truth is one sequence: give its det.txt")
        results: list[dict[str, Any]] = []
        how = ""
        for s in seqs:
            f = p / f"{s}.txt"
            if not f.is_file():
                raise EvalError(f"--dets {p}: no {s}.txt for ground-truth sequence {s}")
            r, how = results_from_rows(gt, s, _read(f, f"--dets {f}"), class_map, det_names, f"--dets {f}")
            results += r
        return results, how
    if not p.is_file():
        raise EvalError(f"--dets {p}: no such file")
    if len(seqs) > 1:
        raise EvalError(f"--dets {p}: the ground truth has {len(seqs)} sequences; give a folder of <seq>.txt")
    return results_from_rows(
        gt, seqs[0] if seqs else "", _read(p, f"--dets {p}"), class_map, det_names, f"--dets {p}"
    )


# ---------------------------------------------------------------------- evaluation
def evaluate(gt: GroundTruth, results: list[dict[str, Any]]) -> dict[str, Any]:
    """COCO bbox evaluation: AP (0.5:0.95), AP50, AP75, AR100, and AP per category (name -> AP)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt.coco))
        coco.createIndex()
        if results:
            dt = coco.loadRes(results)
        else:
            dt = COCO()
            dt.dataset = {"images": gt.coco["images"], "annotations": [], "categories": gt.coco["categories"]}
            dt.createIndex()
        ev = COCOeval(coco, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats]
    per_class: dict[str, float] = {}
    prec = ev.eval["precision"]  # [T, R, K, A, M]: area "all" (0), maxDets 100 (2)
    for k, cid in enumerate(ev.params.catIds):
        p = prec[:, :, k, 0, 2]
        valid = p[p > -1]
        per_class[gt.categories[cid]] = float(valid.mean()) if valid.size else -1.0
    return {
        "AP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR100": stats[8], "per_class": per_class,
        "images": len(gt.coco["images"]), "gt_boxes": sum(1 for a in gt.coco["annotations"] if not a["iscrowd"]),
        "detections": len(results), "summary": quiet.getvalue(),
    }  # fmt: skip


def parse_class_map(items: Sequence[str] | None) -> dict[int, int] | None:
    """``["0:1", "2:3"]`` -> {0: 1, 2: 3}."""
    if not items:
        return None
    out = {}
    for it in items:
        try:
            a, b = it.split(":")
            out[int(a)] = int(b)
        except ValueError as exc:
            raise EvalError(f"--class-map {it!r}: expected MODEL_CLASS:GT_CATEGORY, e.g. 0:1") from exc
    return out
