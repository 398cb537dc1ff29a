"""A fixed-latency fake detector for benchmarks and load tests (``kind: fake``).

It waits ``latency_ms`` per batch (plus ``per_frame_ms`` per frame) without using the CPU, like a
remote endpoint or a GPU would (``detect`` awaits on the event loop; ``detect_sync`` sleeps), and returns ``boxes`` synthetic detections per frame that drift
slowly, so the tracker and the publisher do realistic work. Never used in place of a real detector
in integration tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detector_client.base import Detections, Detector, InputSpec, PreparedFrame, as_detections

F64 = npt.NDArray[np.float64]


class FakeDetector(Detector):
    name = "fake"

    def __init__(
        self,
        latency_ms: float = 20.0,
        per_frame_ms: float = 0.0,
        boxes: int = 10,
        spec: InputSpec | None = None,
        max_batch: int = 8,
        max_in_flight: int = 2,
    ) -> None:
        super().__init__(spec or InputSpec(416, 416), max_batch, max_in_flight)
        self.latency_s = latency_ms / 1000
        self.per_frame_s = per_frame_ms / 1000
        self.boxes = boxes

    def _boxes(self, frames: Sequence[PreparedFrame]) -> list[F64]:
        """``boxes`` detections per frame, spread across the frame and drifting with its index
        (one vectorised computation per batch: the fake should cost the caller almost nothing)."""
        n = self.boxes
        if n == 0 or not frames:
            return [np.empty((0, 6)) for _ in frames]
        k = np.arange(n, dtype=np.float64)
        meta = np.array([(f.src_width, f.src_height, f.index) for f in frames], dtype=np.float64)
        w, h, idx = meta[:, 0:1], meta[:, 1:2], meta[:, 2:3]
        cx = (w * (k + 0.5) / n + 2.0 * idx) % w
        cy = h * (0.3 + 0.4 * ((k * 37) % n) / n)
        bw, bh = np.maximum(8.0, w / (3 * n)), np.maximum(16.0, h / 6)
        out = np.empty((len(frames), n, 6))
        out[:, :, 0] = np.clip(cx - bw / 2, 0, w - 2)
        out[:, :, 1] = np.clip(cy - bh / 2, 0, h - 2)
        out[:, :, 2] = np.minimum(out[:, :, 0] + bw, w)
        out[:, :, 3] = np.minimum(out[:, :, 1] + bh, h)
        out[:, :, 4] = 0.9
        out[:, :, 5] = 0
        return list(out)

    def detect_sync(self, frames: Sequence[PreparedFrame]) -> list[Detections]:
        time.sleep(self.latency_s + self.per_frame_s * len(frames))
        return as_detections(self._boxes(frames))

    async def detect(self, frames: Sequence[PreparedFrame]) -> list[Detections]:
        """Waits like a remote endpoint would (no worker thread), bounded in flight."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_in_flight)
        async with self._sem:
            await asyncio.sleep(self.latency_s + self.per_frame_s * len(frames))
            return as_detections(self._boxes(frames))
