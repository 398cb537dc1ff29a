"""A procedurally generated scene: players moving, crossing and occluding each other.

Used by ``trackcast demo`` (no camera, model or data needed) and by tests. Everything is
deterministic for a given seed. ``Scene.step()`` returns the ground-truth boxes of the next frame;
``noisy_detections`` turns them into what a detector would report (jitter, misses, low scores on
occluded players, false positives).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass
class Scene:
    width: int = 1280
    height: int = 720
    players: int = 12
    seed: int = 0
    rng: np.random.Generator = field(init=False)
    pos: F64 = field(init=False)
    vel: F64 = field(init=False)
    size: F64 = field(init=False)
    ids: npt.NDArray[np.int64] = field(init=False)
    frame: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        n = self.players
        self.size = np.stack([self.rng.uniform(28, 44, n), self.rng.uniform(70, 110, n)], axis=1)
        self.pos = np.stack(
            [self.rng.uniform(60, self.width - 60, n), self.rng.uniform(80, self.height - 80, n)], axis=1
        )
        self.vel = self.rng.normal(0, 3.0, (n, 2))
        self.ids = np.arange(1, n + 1)

    def step(self) -> tuple[npt.NDArray[np.int64], F64]:
        """Advance one frame; returns (ids, boxes x1,y1,x2,y2) of every player."""
        self.frame += 1
        # Smooth random steering, bounded speed, bounce off the touchlines.
        self.vel += self.rng.normal(0, 0.35, self.vel.shape)
        speed = np.linalg.norm(self.vel, axis=1, keepdims=True)
        self.vel *= np.minimum(1.0, 6.0 / np.maximum(speed, 1e-9))
        self.pos += self.vel
        half = self.size / 2
        lo, hi = half, np.array([self.width, self.height]) - half
        out_lo, out_hi = self.pos < lo, self.pos > hi
        self.vel[out_lo | out_hi] *= -1
        self.pos = np.clip(self.pos, lo, hi)
        boxes = np.concatenate([self.pos - half, self.pos + half], axis=1)
        return self.ids.copy(), boxes


def occlusion(boxes: F64) -> F64:
    """Fraction of each box covered by boxes lower in the image (nearer the camera)."""
    n = len(boxes)
    cover = np.zeros(n)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(n):
        for j in range(n):
            if i == j or boxes[j, 3] <= boxes[i, 3]:
                continue
            iw = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            ih = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            if iw > 0 and ih > 0:
                cover[i] = max(cover[i], iw * ih / area[i])
    return cover


def noisy_detections(
    boxes: F64,
    rng: np.random.Generator,
    jitter: float = 0.03,
    miss_rate: float = 0.05,
    false_positives: float = 0.3,
    width: int = 1280,
    height: int = 720,
) -> F64:
    """Detector-like output [N,5] (x1,y1,x2,y2,score) for ground-truth ``boxes``."""
    occ = occlusion(boxes)
    wh = boxes[:, 2:] - boxes[:, :2]
    noisy = boxes + rng.normal(0, jitter, boxes.shape) * np.concatenate([wh, wh], axis=1)
    score = np.clip(0.9 - 0.6 * occ + rng.normal(0, 0.06, len(boxes)), 0.05, 0.99)
    keep = rng.random(len(boxes)) >= miss_rate + 0.5 * occ**2
    dets = np.concatenate([noisy, score[:, None]], axis=1)[keep]
    n_fp = rng.poisson(false_positives)
    if n_fp:
        xy = rng.uniform([0, 0], [width - 40, height - 90], (n_fp, 2))
        fp = np.concatenate(
            [xy, xy + rng.uniform([20, 50], [40, 90], (n_fp, 2)), rng.uniform(0.1, 0.55, (n_fp, 1))], axis=1
        )
        dets = np.concatenate([dets, fp])
    return dets


def pitch(width: int, height: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A static background: mown grass stripes, touchlines and a little texture noise (BGR)."""
    rng = np.random.default_rng(seed)
    img: Any = np.empty((height, width, 3), dtype=np.uint8)
    stripe = (np.arange(width) // max(1, width // 12)) % 2
    img[:, :, 0] = 40 + 8 * stripe
    img[:, :, 1] = 120 + 18 * stripe
    img[:, :, 2] = 45 + 6 * stripe
    noise = rng.integers(-6, 7, (height, width, 1))
    img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    import cv2

    cv2.rectangle(img, (20, 20), (width - 21, height - 21), (235, 235, 235), 3)
    cv2.line(img, (width // 2, 20), (width // 2, height - 21), (235, 235, 235), 3)
    cv2.circle(img, (width // 2, height // 2), min(width, height) // 7, (235, 235, 235), 3)
    out: npt.NDArray[np.uint8] = img
    return out


#: Shirt colours (BGR) of the two teams and a referee.
KITS = [(40, 40, 200), (200, 90, 30), (20, 20, 20)]


def render(
    background: npt.NDArray[np.uint8], ids: npt.NDArray[np.int64], boxes: F64
) -> npt.NDArray[np.uint8]:
    """Draw players (shirt, shorts, head) over the background, far ones first (BGR)."""
    import cv2

    img: Any = background.copy()
    for k in np.argsort(boxes[:, 3]):
        x1, y1, x2, y2 = (round(v) for v in boxes[k])
        h = y2 - y1
        kit = KITS[int(ids[k]) % len(KITS)]
        head = y1 + h // 6
        cv2.ellipse(img, ((x1 + x2) // 2, y1 + h // 12), (max(2, (x2 - x1) // 4), max(2, h // 12)), 0, 0, 360,
                    (120, 160, 210), -1)  # fmt: skip
        cv2.rectangle(img, (x1, head), (x2, y1 + h * 3 // 5), kit, -1)
        cv2.rectangle(img, (x1 + 2, y1 + h * 3 // 5), (x2 - 2, y2), (230, 230, 230), -1)
    out: npt.NDArray[np.uint8] = img
    return out
