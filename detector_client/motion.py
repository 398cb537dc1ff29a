"""Motion detector: OpenCV MOG2 background subtraction + contour boxes. No model weights.

For static cameras and the built-in demo. Each stream keeps its own background model (frames
carry their stream id). Boxes come from the connected foreground blobs of a cleaned mask.

Scores: ``score = fill ** 0.5 * min(1, area / full_area)``, where ``fill`` is the fraction of the
box covered by foreground pixels and ``area`` the box area in input pixels (``full_area`` =
``min_area * 4``). A solid, person-sized blob scores 0.8-1.0, so it starts a track at the default
``track_thresh`` 0.5 (+0.1); ragged, sparse or small blobs (partial occlusion, noise, shadows
MOG2 marks as 127 are excluded) score 0.1-0.5 and can only continue existing tracks through
ByteTrack's low-score second association. The class of every box is ``class_id`` (default 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from detector_client.base import Detections, Detector, InputSpec, PreparedFrame

F64 = npt.NDArray[np.float64]


class MotionDetector(Detector):
    name = "motion"

    def __init__(
        self,
        spec: InputSpec | None = None,
        *,
        min_area: int = 120,
        history: int = 300,
        var_threshold: float = 24.0,
        warmup_frames: int = 5,
        class_id: int = 0,
        max_batch: int = 16,
    ) -> None:
        super().__init__(spec or InputSpec(360, 640), max_batch, max_in_flight=1)
        self.min_area = min_area
        self.history = history
        self.var_threshold = var_threshold
        self.warmup_frames = warmup_frames
        self.class_id = class_id
        self._models: dict[str, tuple[cv2.BackgroundSubtractorMOG2, list[int]]] = {}
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def forget(self, stream: str) -> None:
        """Drop a removed stream's background model."""
        self._models.pop(stream, None)

    def _model(self, stream: str) -> tuple[cv2.BackgroundSubtractorMOG2, list[int]]:
        m = self._models.get(stream)
        if m is None:
            sub = cv2.createBackgroundSubtractorMOG2(
                history=self.history, varThreshold=self.var_threshold, detectShadows=True
            )
            m = (sub, [0])
            self._models[stream] = m
        return m

    def detect_one(self, frame: PreparedFrame) -> F64:
        sub, seen = self._model(frame.stream)
        fg = sub.apply(frame.image)
        seen[0] += 1
        if seen[0] <= self.warmup_frames:
            return np.empty((0, 6))
        mask: Any = np.where(fg == 255, 255, 0).astype(np.uint8)  # 127 = shadow
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._kernel, iterations=2)
        # Only the letterboxed picture, not its padding.
        vh = min(self.spec.height, round(frame.src_height * frame.ratio))
        vw = min(self.spec.width, round(frame.src_width * frame.ratio))
        mask[vh:, :] = 0
        mask[:, vw:] = 0
        n, _labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        rows = []
        full = self.min_area * 4.0
        for i in range(1, n):
            x, y, w, h, count = (int(v) for v in stats[i])
            area = w * h
            if area < self.min_area:
                continue
            fill = count / area
            score = float(np.sqrt(fill) * min(1.0, area / full))
            r = frame.ratio
            rows.append([x / r, y / r, (x + w) / r, (y + h) / r, score, self.class_id])
        if not rows:
            return np.empty((0, 6))
        out = np.asarray(rows, dtype=np.float64)
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, frame.src_width)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, frame.src_height)
        return out

    def detect_sync(self, frames: Sequence[PreparedFrame]) -> list[Detections]:
        return [Detections(self.detect_one(f)) for f in frames]
