"""MOT metrics (MOTA, IDF1, HOTA, ID switches, ...) computed by TrackEval's implementations.

``evaluate(gt, hyp)`` takes two MOTChallenge arrays (``frame,id,x,y,w,h,conf,...``). Ground-truth
rows whose 7th column is 0 are ignored (MOTChallenge's "not to be considered" flag); there is no
distractor-class handling, so numbers on full MOT17 ground truth differ slightly from the
benchmark's official preprocessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

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


def evaluate(gt: F64, hyp: F64) -> MotMetrics:
    """Compare tracker output ``hyp`` with ground truth ``gt`` (both MOTChallenge arrays)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    if len(gt) and gt.shape[1] >= 7:
        gt = gt[gt[:, 6] != 0]
    n_frames = int(max(gt[:, 0].max() if len(gt) else 0, hyp[:, 0].max() if len(hyp) else 0))
    gt_dense, n_gt_ids = _dense_ids(gt[:, 1]) if len(gt) else (np.empty(0, np.int64), 0)
    hyp_dense, n_hyp_ids = _dense_ids(hyp[:, 1]) if len(hyp) else (np.empty(0, np.int64), 0)
    gt_ids, hyp_ids, sims = [], [], []
    gt_f = gt[:, 0].astype(np.int64)
    hyp_f = hyp[:, 0].astype(np.int64)
    for f in range(1, n_frames + 1):
        gm = gt_f == f
        hm = hyp_f == f
        gt_ids.append(gt_dense[gm])
        hyp_ids.append(hyp_dense[hm])
        sims.append(box_iou_xywh(gt[gm, 2:6], hyp[hm, 2:6]))
    data = {
        "num_timesteps": n_frames,
        "num_gt_ids": n_gt_ids,
        "num_tracker_ids": n_hyp_ids,
        "num_gt_dets": len(gt),
        "num_tracker_dets": len(hyp),
        "gt_ids": gt_ids,
        "tracker_ids": hyp_ids,
        "similarity_scores": sims,
        "seq": "seq",
    }
    quiet = {"PRINT_CONFIG": False, "THRESHOLD": 0.5}
    hota = HOTA().eval_sequence(data)
    clear = CLEAR(quiet).eval_sequence(data)
    ident = Identity(quiet).eval_sequence(data)
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
        gt_dets=len(gt),
        hyp_dets=len(hyp),
        gt_ids=n_gt_ids,
        hyp_ids=n_hyp_ids,
        frames=n_frames,
    )
