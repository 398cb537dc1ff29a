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
