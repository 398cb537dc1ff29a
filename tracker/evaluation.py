"""MOT metrics (HOTA, MOTA, IDF1, ID switches, ...) computed by TrackEval's implementations.

Two ways in:

- ``evaluate(gt, hyp)``: two MOTChallenge arrays (``frame,id,x,y,w,h,conf,...``), no benchmark
  preprocessing: ground-truth rows whose 7th column is 0 (the "consider" flag) are ignored, every
  other row is scored. On TUD-Campus / TUD-Stadtmitte this is the MOTChallenge devkit's result.
- ``evaluate_sequences(seqs, benchmark)``: one or more sequences read from MOTChallenge files,
  with a benchmark's official preprocessing for ``mot17``/``mot20`` (TrackEval's
  ``MotChallenge2DBox`` dataset, through its public methods, as its ``run_mot_challenge.py``
  does): tracker boxes matched to distractor ground truth (static person, person on vehicle,
  reflection, distractor; MOT20 also non-MOT vehicle) are removed, then only pedestrians with the
  consider flag set are scored. ``none`` is ``evaluate`` on each sequence. Per sequence, and
  ``COMBINED`` over them (TrackEval's own combination: sums and detection-weighted means).

``find_sequences`` reads the MOTChallenge layout: sequence folders ``<seq>/gt/gt.txt`` with
``seqinfo.ini`` (``seqLength``), seqmaps (``seqmaps/<split>.txt``) and tracker files ``<seq>.txt``.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import tempfile
from collections.abc import Sequence as Seq
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tracker.errors import EvalError
from tracker.mot import read_mot

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MotMetrics:
    HOTA: float
    DetA: float
    AssA: float
    MOTA: float
    MOTP: float
    IDF1: float
    IDSW: int
    FP: int
    FN: int
    gt_dets: int
    hyp_dets: int
    gt_ids: int
    hyp_ids: int
    frames: int
    LocA: float = float("nan")
    TP: int = 0
    MT: int = 0
    PT: int = 0
    ML: int = 0
    Frag: int = 0
    IDTP: int = 0
    IDFN: int = 0
    IDFP: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def table(self) -> str:
        rows = [
            ("HOTA", f"{100 * self.HOTA:.2f}"),
            ("DetA", f"{100 * self.DetA:.2f}"),
            ("AssA", f"{100 * self.AssA:.2f}"),
            ("MOTA", f"{100 * self.MOTA:.2f}"),
            ("MOTP", f"{100 * self.MOTP:.2f}"),
            ("IDF1", f"{100 * self.IDF1:.2f}"),
            ("IDSW", str(self.IDSW)),
            ("FP", str(self.FP)),
            ("FN", str(self.FN)),
            ("GT boxes / ids", f"{self.gt_dets} / {self.gt_ids}"),
            ("hyp boxes / ids", f"{self.hyp_dets} / {self.hyp_ids}"),
            ("frames", str(self.frames)),
        ]
        return "\n".join(f"{k:<16}{v:>12}" for k, v in rows)


def _dense_ids(ids: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], int]:
    uniq, inv = np.unique(ids.astype(np.int64), return_inverse=True)
    return inv.astype(np.int64), len(uniq)


_EPS = float(np.finfo(np.float64).eps)


def box_iou_xywh(a: F64, b: F64) -> F64:
    """IoU of every box in ``a`` [K,4] with every box in ``b`` [M,4], both (x, y, w, h).

    The MOTChallenge devkit's definition (TrackEval's): plain areas (no "+1 pixel"), and a pair
    involving a box of (near) zero area, or with a (near) zero union, has IoU 0.
    """
    a1 = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:4]], axis=1)
    b1 = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], axis=1)
    lo = np.minimum(a1[:, None, :], b1[None, :, :])
    hi = np.maximum(a1[:, None, :], b1[None, :, :])
    inter = np.maximum(lo[..., 2] - hi[..., 0], 0) * np.maximum(lo[..., 3] - hi[..., 1], 0)
    area_a = (a1[:, 2] - a1[:, 0]) * (a1[:, 3] - a1[:, 1])
    area_b = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    inter[area_a <= _EPS, :] = 0
    inter[:, area_b <= _EPS] = 0
    inter[union <= _EPS] = 0
    union[union <= _EPS] = 1
    out: F64 = inter / union
    return out


BENCHMARKS = ("mot17", "mot20", "none")
COMBINED = "COMBINED"


@dataclass(frozen=True)
class Sequence:
    """One sequence to score: its ground truth, the tracker's file, its length (None: the last frame)."""

    name: str
    gt: Path
    hyp: Path
    length: int | None = None


def _metrics() -> tuple[Any, Any, Any]:
    from trackeval.metrics import CLEAR, HOTA, Identity

    quiet = {"PRINT_CONFIG": False, "THRESHOLD": 0.5}
    return HOTA(), CLEAR(quiet), Identity(quiet)


def _seq_data(gt: F64, hyp: F64, n_frames: int | None = None) -> dict[str, Any]:
    """TrackEval's per-sequence input from two arrays (consider flag applied, no other preprocessing)."""
    if len(gt) and gt.shape[1] >= 7:
        gt = gt[gt[:, 6] != 0]
    last = int(max(gt[:, 0].max() if len(gt) else 0, hyp[:, 0].max() if len(hyp) else 0))
    n = max(last, n_frames or 0)
    gt_dense, n_gt_ids = _dense_ids(gt[:, 1]) if len(gt) else (np.empty(0, np.int64), 0)
    hyp_dense, n_hyp_ids = _dense_ids(hyp[:, 1]) if len(hyp) else (np.empty(0, np.int64), 0)
    gt_ids, hyp_ids, sims = [], [], []
    gt_f = gt[:, 0].astype(np.int64)
    hyp_f = hyp[:, 0].astype(np.int64)
    for f in range(1, n + 1):
        gm = gt_f == f
        hm = hyp_f == f
        gt_ids.append(gt_dense[gm])
        hyp_ids.append(hyp_dense[hm])
        sims.append(box_iou_xywh(gt[gm, 2:6], hyp[hm, 2:6]))
    return {
        "num_timesteps": n,
        "num_gt_ids": n_gt_ids,
        "num_tracker_ids": n_hyp_ids,
        "num_gt_dets": len(gt),
        "num_tracker_dets": len(hyp),
        "gt_ids": gt_ids,
        "tracker_ids": hyp_ids,
        "similarity_scores": sims,
        "seq": "seq",
    }


def _result(res: dict[str, dict[str, Any]], counts: dict[str, int]) -> MotMetrics:
    hota, clear, ident = res["HOTA"], res["CLEAR"], res["Identity"]
    return MotMetrics(
        HOTA=float(np.mean(hota["HOTA"])),
        DetA=float(np.mean(hota["DetA"])),
        AssA=float(np.mean(hota["AssA"])),
        MOTA=float(clear["MOTA"]),
        MOTP=float(clear["MOTP"]),
        IDF1=float(ident["IDF1"]),
        IDSW=int(clear["IDSW"]),
        FP=int(clear["CLR_FP"]),
        FN=int(clear["CLR_FN"]),
        gt_dets=counts["gt_dets"],
        hyp_dets=counts["hyp_dets"],
        gt_ids=counts["gt_ids"],
        hyp_ids=counts["hyp_ids"],
        frames=counts["frames"],
        LocA=float(np.mean(hota["LocA"])),
        TP=int(clear["CLR_TP"]),
        MT=int(clear["MT"]),
        PT=int(clear["PT"]),
        ML=int(clear["ML"]),
        Frag=int(clear["Frag"]),
        IDTP=int(ident["IDTP"]),
        IDFN=int(ident["IDFN"]),
        IDFP=int(ident["IDFP"]),
    )


def _score(data: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    res = {type(m).__name__: m.eval_sequence(data) for m in _metrics()}
    counts = {
        "gt_dets": int(data["num_gt_dets"]),
        "hyp_dets": int(data["num_tracker_dets"]),
        "gt_ids": int(data["num_gt_ids"]),
        "hyp_ids": int(data["num_tracker_ids"]),
        "frames": int(data["num_timesteps"]),
    }
    return res, counts


def evaluate(gt: F64, hyp: F64) -> MotMetrics:
    """Compare tracker output ``hyp`` with ground truth ``gt`` (both MOTChallenge arrays)."""
    return _result(*_score(_seq_data(gt, hyp)))


def _combine(per_seq: dict[str, tuple[dict[str, dict[str, Any]], dict[str, int]]]) -> MotMetrics:
    res = {}
    for m in _metrics():
        name = type(m).__name__
        res[name] = m.combine_sequences({seq: r[name] for seq, (r, _) in per_seq.items()})
    counts = {
        k: sum(c[k] for _, c in per_seq.values())
        for k in ("gt_dets", "hyp_dets", "gt_ids", "hyp_ids", "frames")
    }
    return _result(res, counts)


def evaluate_sequences(seqs: Seq[Sequence], benchmark: str = "none") -> dict[str, MotMetrics]:
    """Score each sequence (and ``COMBINED`` when there are several) under ``benchmark``'s rules."""
    if benchmark not in BENCHMARKS:
        raise EvalError(f"unknown benchmark {benchmark!r} (one of {', '.join(BENCHMARKS)})")
    if not seqs:
        raise EvalError("no sequences to evaluate")
    names = [s.name for s in seqs]
    if len(set(names)) != len(names):
        raise EvalError(f"sequence names must be unique, got {names}")
    arrays = {s.name: (read_mot(s.gt), read_mot(s.hyp)) for s in seqs}  # clear format errors first
    if benchmark == "none":
        per_seq = {s.name: _score(_seq_data(*arrays[s.name], s.length)) for s in seqs}
    else:
        per_seq = _benchmark_scores(seqs, arrays, benchmark.upper())
    out = {name: _result(*r) for name, r in per_seq.items()}
    if len(seqs) > 1:
        out[COMBINED] = _combine(per_seq)
    return out


def _benchmark_scores(
    seqs: Seq[Sequence], arrays: dict[str, tuple[F64, F64]], benchmark: str
) -> dict[str, tuple[dict[str, dict[str, Any]], dict[str, int]]]:
    """TrackEval's MOTChallenge dataset with the benchmark's preprocessing, on a layout of links."""
    from trackeval.datasets import MotChallenge2DBox
    from trackeval.utils import TrackEvalException

    info: dict[str, int] = {}
    for s in seqs:
        gt, hyp = arrays[s.name]
        if len(gt) and gt.shape[1] < 9:
            raise EvalError(f"{s.gt}: {benchmark} ground truth has 9 columns "
                            f"(frame,id,x,y,w,h,consider,class,visibility), this one {gt.shape[1]}")  # fmt: skip
        last = int(max(gt[:, 0].max() if len(gt) else 0, hyp[:, 0].max() if len(hyp) else 0))
        if s.length is not None and last > s.length:
            where = s.gt if len(gt) and gt[:, 0].max() > s.length else s.hyp
            raise EvalError(f"{where}: frame {last} is beyond the sequence's length {s.length} (seqinfo.ini)")
        info[s.name] = s.length if s.length is not None else max(last, 1)
    with tempfile.TemporaryDirectory(prefix="trackcast-eval-") as tmp:
        root = Path(tmp)
        for s in seqs:
            (root / "gt" / s.name / "gt").mkdir(parents=True)
            (root / "gt" / s.name / "gt" / "gt.txt").symlink_to(s.gt.resolve())
            (root / "trackers" / "hyp" / "data").mkdir(parents=True, exist_ok=True)
            (root / "trackers" / "hyp" / "data" / f"{s.name}.txt").symlink_to(s.hyp.resolve())
        config = {
            "GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"),
            "OUTPUT_FOLDER": str(root / "out"), "TRACKERS_TO_EVAL": ["hyp"], "BENCHMARK": benchmark,
            "SPLIT_TO_EVAL": "train", "SKIP_SPLIT_FOL": True, "SEQ_INFO": info, "DO_PREPROC": True,
            "PRINT_CONFIG": False,
        }  # fmt: skip
        per_seq = {}
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # TrackEval prints its progress
                ds = MotChallenge2DBox(config)
                for s in seqs:
                    raw = ds.get_raw_seq_data("hyp", s.name)
                    per_seq[s.name] = _score(ds.get_preprocessed_seq_data(raw, "pedestrian"))
        except TrackEvalException as exc:
            raise EvalError(f"{benchmark} evaluation: {exc}") from exc
    return per_seq


def seq_length(folder: Path) -> int | None:
    ini = folder / "seqinfo.ini"
    if not ini.is_file():
        return None
    cp = configparser.ConfigParser()
    try:
        cp.read(ini)
        return int(cp["Sequence"]["seqLength"])
    except (configparser.Error, KeyError, ValueError) as exc:
        raise EvalError(f"{ini}: no integer seqLength in [Sequence] ({exc})") from exc


def _seqmap(path: Path) -> list[str]:
    names = [line.split(",")[0].strip() for line in path.read_text().splitlines()[1:]]
    return [n for n in names if n]


def find_sequences(gt: Path, hyp: Path, seqmap: Path | None = None) -> list[Sequence]:
    """The sequences of a ground truth and a tracker's output, in MOTChallenge files or folders.

    ``gt``: a ``gt.txt`` (its sequence is named after the folder above ``gt/``, with
    ``seqinfo.ini`` beside that, or after the file), or a folder searched for ``<seq>/gt/gt.txt``;
    sequences of a split folder with a seqmap (``seqmaps/<split>.txt`` in ``gt``) are limited
    to those it lists, as is every sequence with ``seqmap``. ``hyp``: a file (with a ``gt.txt``)
    or a folder holding exactly one ``<seq>.txt`` per sequence.
    """
    if not gt.exists():
        raise EvalError(f"{gt}: no such file or folder")
    if not hyp.exists():
        raise EvalError(f"{hyp}: no such file or folder")
    if gt.is_file():
        folder = gt.parent.parent if gt.parent.name == "gt" else gt.parent
        name = folder.name if gt.parent.name == "gt" else gt.stem
        found = [(name, gt, seq_length(folder) if gt.parent.name == "gt" else None)]
    else:
        found = []
        for g in sorted(gt.rglob("gt/gt.txt")):
            folder = g.parent.parent
            found.append((folder.name, g, seq_length(folder)))
        maps = gt / "seqmaps"
        if seqmap is None and maps.is_dir():
            splits = {g.parent.parent.parent.name for _, g, _ in found}
            listed = [set(_seqmap(maps / f"{sp}.txt")) for sp in splits if (maps / f"{sp}.txt").is_file()]
            if listed:
                keep = set().union(*listed)
                found = [f for f in found if f[0] in keep]
        if not found:
            raise EvalError(f"{gt}: no sequences (<seq>/gt/gt.txt) in this folder")
    if seqmap is not None:
        keep_list = _seqmap(seqmap)
        missing = sorted(set(keep_list) - {n for n, _, _ in found})
        if missing:
            raise EvalError(f"{seqmap}: no ground truth for {', '.join(missing)} under {gt}")
        found = [f for f in found if f[0] in set(keep_list)]
    if hyp.is_file():
        if len(found) != 1:
            raise EvalError(
                f"{hyp} is one file but {gt} holds {len(found)} sequences: give a folder of <seq>.txt"
            )
        name, g, length = found[0]
        return [Sequence(name, g, hyp, length)]
    out = []
    for name, g, length in found:
        files = sorted(p for p in hyp.rglob(f"{name}.txt") if p.is_file())
        if not files:
            raise EvalError(f"{hyp}: no tracker file {name}.txt for sequence {name}")
        if len(files) > 1:
            raise EvalError(
                f"{hyp}: several files for sequence {name} ({', '.join(map(str, files))}): give one tracker's folder"
            )
        out.append(Sequence(name, g, files[0], length))
    return out


def table(results: dict[str, MotMetrics]) -> str:
    """One row per sequence (and COMBINED): the headline metrics, in percent where they are ratios."""
    cols = ("HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDSW", "FP", "FN", "MT", "ML", "Frag")
    width = max(12, *(len(n) for n in results))
    lines = [f"{'sequence':<{width}}" + "".join(f"{c:>9}" for c in cols)]
    for name, m in results.items():
        d = m.as_dict()
        cells = [f"{100 * d[c]:9.2f}" if isinstance(d[c], float) else f"{d[c]:9d}" for c in cols]
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)
