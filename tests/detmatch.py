"""Matching detections row by row, as the acceptance criteria state them (box within 1 px, score 0.01)."""

from __future__ import annotations

import numpy as np


def match_fraction(
    ours: np.ndarray, ref: np.ndarray, px: float = 1.0, score: float = 0.01
) -> tuple[float, float]:
    """(fraction of reference rows with a matching row of ours, extra rows of ours / reference rows).

    Rows are MOT det rows (frame, -1, x, y, w, h, score, ...); each of our rows matches at most once.
    """
    hit = 0
    frames = np.union1d(np.unique(ref[:, 0]), np.unique(ours[:, 0])) if len(ours) else np.unique(ref[:, 0])
    for f in frames:
        r = ref[ref[:, 0] == f]
        o = ours[ours[:, 0] == f] if len(ours) else np.empty((0, ref.shape[1]))
        used = np.zeros(len(o), dtype=bool)
        for row in r:
            if not len(o):
                break
            ok = (
                (np.abs(o[:, 2:6] - row[2:6]).max(axis=1) <= px) & (np.abs(o[:, 6] - row[6]) <= score) & ~used
            )
            idx = np.flatnonzero(ok)
            if len(idx):
                used[idx[0]] = True
                hit += 1
    return hit / len(ref), max(0, len(ours) - hit) / len(ref)


def iou_agreement(ours: np.ndarray, ref: np.ndarray, min_score: float, iou: float, score: float) -> float:
    """Fraction of reference rows scoring >= ``min_score`` that one of our rows (any score) overlaps
    by IoU >= ``iou`` with a score within ``score``; each of our rows matches at most once."""
    hit = total = 0
    for f in np.unique(ref[:, 0]):
        r = ref[(ref[:, 0] == f) & (ref[:, 6] >= min_score)]
        o = ours[ours[:, 0] == f] if len(ours) else np.empty((0, ref.shape[1]))
        total += len(r)
        used = np.zeros(len(o), dtype=bool)
        for row in r:
            if not len(o):
                break
            x1 = np.maximum(o[:, 2], row[2])
            y1 = np.maximum(o[:, 3], row[3])
            x2 = np.minimum(o[:, 2] + o[:, 4], row[2] + row[4])
            y2 = np.minimum(o[:, 3] + o[:, 5], row[3] + row[5])
            inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
            ov = inter / (o[:, 4] * o[:, 5] + row[4] * row[5] - inter)
            ok = (ov >= iou) & (np.abs(o[:, 6] - row[6]) <= score) & ~used
            if ok.any():
                used[np.flatnonzero(ok)[np.argmax(ov[ok])]] = True
                hit += 1
    return hit / max(total, 1)
