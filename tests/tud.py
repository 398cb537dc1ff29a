"""Seeded degradation of real pedestrian ground truth (TUD, shipped with motmetrics) into detections."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tud_gt(name: str) -> np.ndarray:
    import motmetrics

    path = Path(motmetrics.__file__).parent / "data" / name / "gt.txt"
    return np.loadtxt(path, delimiter=",", ndmin=2)


def degrade(
    gt: np.ndarray, seed: int, miss: float = 0.1, low: float = 0.2, fp_rate: float = 0.5, jitter: float = 0.04
) -> np.ndarray:
    """MOT det rows from GT: box jitter (fraction of size), misses, low scores, false positives."""
    rng = np.random.default_rng(seed)
    rows = []
    n_frames = int(gt[:, 0].max())
    w_img = float((gt[:, 2] + gt[:, 4]).max())
    h_img = float((gt[:, 3] + gt[:, 5]).max())
    for f in range(1, n_frames + 1):
        g = gt[gt[:, 0] == f]
        for x, y, w, h in g[:, 2:6]:
            if rng.random() < miss:
                continue
            x2, y2 = x + rng.normal(0, jitter) * w, y + rng.normal(0, jitter) * h
            w2, h2 = w * (1 + rng.normal(0, jitter)), h * (1 + rng.normal(0, jitter))
            s = rng.uniform(0.15, 0.45) if rng.random() < low else rng.uniform(0.6, 0.95)
            rows.append([f, -1, x2, y2, w2, h2, s, -1, -1, -1])
        for _ in range(rng.poisson(fp_rate)):
            w2, h2 = rng.uniform(30, 90), rng.uniform(80, 220)
            rows.append(
                [
                    f,
                    -1,
                    rng.uniform(0, w_img - w2),
                    rng.uniform(0, h_img - h2),
                    w2,
                    h2,
                    rng.uniform(0.1, 0.7),
                    -1,
                    -1,
                    -1,
                ]
            )
    return np.asarray(rows)
