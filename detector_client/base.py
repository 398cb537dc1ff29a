"""The detector interface the service calls, and the input contract sources prepare frames for."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from detector_client.errors import DetectorInputError

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

#: ImageNet mean/std used by ByteTrack's exported YOLOX models (RGB order).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What a detector wants: a letterboxed uint8 image of ``height x width`` in ``channels`` order.

    Letterbox: scale by ``r = min(height / h, width / w)`` (bilinear), place top-left, pad with
    ``pad_value``. ``normalize`` says how the detector turns it into floats (done in the detector on
    the whole batch): ``"none"`` (0..255, upstream YOLOX) or ``"imagenet"`` (/255, mean/std,
    ByteTrack's exports).
    """

    height: int
    width: int
    channels: Literal["bgr", "rgb"] = "bgr"
    normalize: Literal["none", "imagenet"] = "none"
    pad_value: int = 114

    def prepare(self, image_bgr: U8, stream: str = "", index: int = 0) -> PreparedFrame:
        """Letterbox a BGR frame (as decoded) into this spec, once, in the caller's thread."""
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            shape = None if image_bgr is None else image_bgr.shape
            raise DetectorInputError(f"frame must be an HxWx3 BGR image, got shape {shape}")
        h, w = image_bgr.shape[:2]
        if h == 0 or w == 0:
            raise DetectorInputError(f"empty frame ({w}x{h})")
        r = min(self.height / h, self.width / w)
        nw, nh = int(w * r), int(h * r)
        if nw == 0 or nh == 0:
            raise DetectorInputError(
                f"frame {w}x{h} is too small to letterbox into {self.width}x{self.height}"
            )
        out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        img = image_bgr if image_bgr.dtype == np.uint8 else np.clip(image_bgr, 0, 255).astype(np.uint8)
        # resize straight into the top-left corner; fill only the padding
        cv2.resize(img, (nw, nh), dst=out[:nh, :nw], interpolation=cv2.INTER_LINEAR)
        out[nh:] = self.pad_value
        out[:nh, nw:] = self.pad_value
        if self.channels == "rgb":
            out = np.ascontiguousarray(out[:, :, ::-1])
        return PreparedFrame(out, r, w, h, stream, index)

    def to_tensor(self, images: U8) -> F32:
        """[N,H,W,3] uint8 (this spec's channel order) -> [N,3,H,W] float32 model input."""
        x = images.astype(np.float32)
        if self.normalize == "imagenet":
            x /= 255.0
            x -= np.asarray(IMAGENET_MEAN, dtype=np.float32)
            x /= np.asarray(IMAGENET_STD, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclass(frozen=True, slots=True)
class PreparedFrame:
    """A frame letterboxed for a detector, with what is needed to map boxes back."""

    image: U8  # [H, W, 3] uint8 in the spec's channel order
    ratio: float  # letterbox scale: source pixels = input pixels / ratio
    src_width: int
    src_height: int
    stream: str = ""
    index: int = 0


class Detector(ABC):
    """A detection backend. ``detect`` takes a batch of prepared frames from any mix of streams.

    Returns, per frame, float64 [K,6] ``x1,y1,x2,y2,score,class`` in source pixels. Blocking work
    runs in this detector's own threads; at most ``max_in_flight`` batches run at once.
    """

    name = "detector"

    def __init__(self, spec: InputSpec, max_batch: int, max_in_flight: int) -> None:
        self.spec = spec
        self.max_batch = max(1, int(max_batch))
        self.max_in_flight = max(1, int(max_in_flight))
        self._pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix=f"det-{self.name}")
        self._sem: asyncio.Semaphore | None = None

    @abstractmethod
    def detect_sync(self, frames: Sequence[PreparedFrame]) -> list[npt.NDArray[np.float64]]:
        """Blocking detection of one batch (called from a worker thread, or directly offline)."""

    async def detect(self, frames: Sequence[PreparedFrame]) -> list[npt.NDArray[np.float64]]:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_in_flight)
        async with self._sem:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self.detect_sync, list(frames))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        self.close()
