"""The detector interface the service calls, and the input contract sources prepare frames for."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
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

#: Luma weights (Kr, Kb) of the YCbCr matrices video is tagged with (ITU-T H.273 matrix_coefficients).
YCBCR_MATRICES: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "fcc": (0.30, 0.11),
    "smpte240m": (0.212, 0.087),
    "bt2020": (0.2627, 0.0593),
}


@lru_cache(maxsize=32)
def ycbcr_matrix(matrix: str, full_range: bool, channels: str = "bgr") -> F32:
    """The 3x4 affine map from (Y, Cb, Cr, 1) to 8-bit colour in ``channels`` order.

    Limited ("tv") range scales Y from 16..235 and chroma from 16..240; full ("pc", JPEG) range
    takes all 0..255. Same conversion as swscale's for the same tags.
    """
    if matrix not in YCBCR_MATRICES:
        raise DetectorInputError(f"unknown YCbCr matrix {matrix!r} (known: {', '.join(YCBCR_MATRICES)})")
    kr, kb = YCBCR_MATRICES[matrix]
    kg = 1.0 - kr - kb
    ys, cs, y0 = (1.0, 1.0, 0.0) if full_range else (255 / 219, 255 / 224, 16.0)
    rows = {
        "r": (ys, 0.0, cs * 2 * (1 - kr)),
        "g": (ys, -cs * 2 * (1 - kb) * kb / kg, -cs * 2 * (1 - kr) * kr / kg),
        "b": (ys, cs * 2 * (1 - kb), 0.0),
    }
    m = np.zeros((3, 4), dtype=np.float32)
    for i, ch in enumerate(channels):
        a, b, c = rows[ch]
        m[i] = (a, b, c, -a * y0 - (b + c) * 128.0)
    m.setflags(write=False)  # cached and shared by every caller
    return m


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What a detector wants: a uint8 image of ``height x width`` in ``channels`` order.

    ``resize`` says how a frame is brought to that size: ``"letterbox"`` scales by ``r = min(height
    / h, width / w)`` (bilinear), places the image top-left and pads with ``pad_value`` (YOLOX,
    ByteTrack); ``"center"`` letterboxes with the image centred (Ultralytics); ``"stretch"`` resizes
    to the full size, aspect ratio not kept (GluonCV SSD/YOLOv3). ``normalize`` says how the
    detector turns it into floats (on the whole batch): ``"none"`` (0..255, upstream YOLOX,
    Detectron2), ``"unit"`` (/255: Ultralytics, torchvision) or ``"imagenet"`` (/255, then mean/std:
    ByteTrack's exports, GluonCV). ``letterbox`` says how decoded video frames are resized:
    ``"fast"`` scales their Y/U/V planes and converts once at this size (``prepare_yuv420``);
    ``"exact"`` converts the whole frame to BGR first and resizes that (``prepare``), which is
    ByteTrack's own preprocessing pixel for pixel.
    """

    height: int
    width: int
    channels: Literal["bgr", "rgb"] = "bgr"
    normalize: Literal["none", "unit", "imagenet"] = "none"
    pad_value: int = 114
    letterbox: Literal["fast", "exact"] = "fast"
    resize: Literal["letterbox", "center", "stretch"] = "letterbox"

    def fit(self, w: int, h: int) -> tuple[float, int, int]:
        """Letterbox geometry of a ``w x h`` frame: scale ``r`` and the scaled size ``nw x nh``."""
        if h <= 0 or w <= 0:
            raise DetectorInputError(f"empty frame ({w}x{h})")
        r = min(self.height / h, self.width / w)
        nw, nh = int(w * r), int(h * r)
        if nw == 0 or nh == 0:
            raise DetectorInputError(
                f"frame {w}x{h} is too small to letterbox into {self.width}x{self.height}"
            )
        return r, nw, nh

    def layout(self, w: int, h: int) -> tuple[float, float, int, int, int, int]:
        """Where a ``w x h`` frame goes: x and y scale, scaled size ``nw x nh``, top-left offset."""
        if self.resize == "stretch":
            if h <= 0 or w <= 0:
                raise DetectorInputError(f"empty frame ({w}x{h})")
            return self.width / w, self.height / h, self.width, self.height, 0, 0
        r, nw, nh = self.fit(w, h)
        if self.resize == "center":
            return r, r, nw, nh, (self.width - nw) // 2, (self.height - nh) // 2
        return r, r, nw, nh, 0, 0

    def _padded(self, nw: int, nh: int, px: int = 0, py: int = 0) -> U8:
        """The output image with only its padding filled (the caller writes the nw x nh at px, py)."""
        out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        out[:py] = self.pad_value
        out[py + nh :] = self.pad_value
        out[py : py + nh, :px] = self.pad_value
        out[py : py + nh, px + nw :] = self.pad_value
        return out

    def prepare(self, image_bgr: U8, stream: str = "", index: int = 0) -> PreparedFrame:
        """Letterbox a BGR frame (as decoded) into this spec, once, in the caller's thread."""
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            shape = None if image_bgr is None else image_bgr.shape
            raise DetectorInputError(f"frame must be an HxWx3 BGR image, got shape {shape}")
        h, w = image_bgr.shape[:2]
        rx, ry, nw, nh, px, py = self.layout(w, h)
        out = self._padded(nw, nh, px, py)
        img = image_bgr if image_bgr.dtype == np.uint8 else np.clip(image_bgr, 0, 255).astype(np.uint8)
        # resize straight into place
        cv2.resize(img, (nw, nh), dst=out[py : py + nh, px : px + nw], interpolation=cv2.INTER_LINEAR)
        if self.channels == "rgb":
            out = np.ascontiguousarray(out[:, :, ::-1])
        return PreparedFrame(out, rx, w, h, stream, index, px, py, ry)

    def prepare_yuv420(
        self,
        y: U8,
        u: U8,
        v: U8,
        matrix: str = "bt601",
        full_range: bool = False,
        stream: str = "",
        index: int = 0,
    ) -> PreparedFrame:
        """Letterbox a frame straight from its 4:2:0 planes (as most video decodes): scale, then convert.

        The three planes are scaled to the letterbox size (bilinear, as ``prepare``: the luma
        plane on the same sampling grid as a full-size BGR frame would be) and converted to
        colour there, so the full-size BGR image is never made: on 720p frames about half the
        work of converting first. ``matrix``/``full_range``: the frame's YCbCr tags. Pixels are
        within a few levels of ``prepare`` on the frame converted by swscale (the differences sit
        on sharp colour edges, where chroma is interpolated rather than repeated).
        """
        for name, p in (("y", y), ("u", u), ("v", v)):
            if p is None or p.ndim != 2 or p.dtype != np.uint8:
                desc = None if p is None else f"{p.shape} {p.dtype}"
                raise DetectorInputError(f"plane {name} must be a 2-D uint8 array, got {desc}")
        h, w = y.shape
        if u.shape != v.shape or u.shape != ((h + 1) // 2, (w + 1) // 2):
            raise DetectorInputError(f"chroma planes {u.shape}/{v.shape} do not fit a 4:2:0 frame of {w}x{h}")
        rx, ry, nw, nh, px, py = self.layout(w, h)
        out = self._padded(nw, nh, px, py)
        size = (nw, nh)
        planes = (
            cv2.resize(y, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(u, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(v, size, interpolation=cv2.INTER_LINEAR),
        )
        m = ycbcr_matrix(matrix, full_range, self.channels)
        cv2.transform(cv2.merge(planes), m, dst=out[py : py + nh, px : px + nw])
        return PreparedFrame(out, rx, w, h, stream, index, px, py, ry)

    def to_tensor(self, images: U8) -> F32:
        """[N,H,W,3] uint8 (this spec's channel order) -> [N,3,H,W] float32 model input."""
        x = images.astype(np.float32)
        if self.normalize != "none":
            x /= 255.0
        if self.normalize == "imagenet":
            x -= np.asarray(IMAGENET_MEAN, dtype=np.float32)
            x /= np.asarray(IMAGENET_STD, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclass(frozen=True, slots=True)
class PreparedFrame:
    """A frame resized for a detector, with what is needed to map boxes back."""

    image: U8  # [H, W, 3] uint8 in the spec's channel order
    ratio: float  # scale: source x = (input x - pad_x) / ratio
    src_width: int
    src_height: int
    stream: str = ""
    index: int = 0
    pad_x: int = 0  # where the scaled frame starts in the input (a centred letterbox)
    pad_y: int = 0
    ratio_y: float = 0.0  # y scale when it differs from x (a stretched resize); 0: same as ratio

    def to_source(self, boxes: npt.NDArray[np.floating], clip: bool = True) -> None:
        """Map ``[K, >=4]`` x1, y1, x2, y2 rows from input pixels to this frame's pixels, in place."""
        ry = self.ratio_y or self.ratio
        if self.pad_x:
            boxes[:, [0, 2]] -= self.pad_x
        if self.pad_y:
            boxes[:, [1, 3]] -= self.pad_y
        boxes[:, [0, 2]] /= self.ratio
        boxes[:, [1, 3]] /= ry
        if clip:
            np.clip(boxes[:, 0], 0, self.src_width, out=boxes[:, 0])
            np.clip(boxes[:, 2], 0, self.src_width, out=boxes[:, 2])
            np.clip(boxes[:, 1], 0, self.src_height, out=boxes[:, 1])
            np.clip(boxes[:, 3], 0, self.src_height, out=boxes[:, 3])


@dataclass(frozen=True, slots=True)
class Detections:
    """One frame's detections in source pixels, what every detector returns (like ``Tracks``).

    ``rows`` is the float [N,6] array ``x1, y1, x2, y2, score, class`` that the tracker takes
    (``ByteTracker.update(d.rows)``) and the det.txt writer reads; the named views below share its
    memory, so wrapping a backend's output costs nothing per frame.
    """

    rows: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.rows.ndim != 2 or self.rows.shape[1] != 6:
            raise ValueError(
                f"detections are [N,6] rows (x1,y1,x2,y2,score,class), got shape {self.rows.shape}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.empty((0, 6)))

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def xyxy(self) -> npt.NDArray[np.float64]:
        return self.rows[:, :4]

    @property
    def scores(self) -> npt.NDArray[np.float64]:
        return self.rows[:, 4]

    @property
    def classes(self) -> npt.NDArray[np.int64]:
        return self.rows[:, 5].astype(np.int64)


def stack_frames(frames: Sequence[PreparedFrame], spec: InputSpec, where: str) -> U8:
    """The batch's letterboxed images as one [N,H,W,3] array; a frame of the wrong size is refused.

    ``where`` names the model the frames go to (in the error).
    """
    for f in frames:
        if f.image.shape != (spec.height, spec.width, 3):
            raise DetectorInputError(
                f"frame {f.stream}#{f.index} is {f.image.shape[1]}x{f.image.shape[0]}, "
                f"{where} takes {spec.width}x{spec.height}"
            )
    return np.stack([f.image for f in frames])


def as_detections(rows: Sequence[npt.NDArray[np.float64]]) -> list[Detections]:
    return [Detections(r) for r in rows]


class Detector(ABC):
    """A detection backend. ``detect`` takes a batch of prepared frames from any mix of streams.

    Returns, per frame, float64 [K,6] ``x1,y1,x2,y2,score,class`` in source pixels. Blocking work
    runs in this detector's own threads; at most ``max_in_flight`` batches run at once.
    """

    name = "detector"
    #: The model's class names by id, where it says (events, the live view and videos show them).
    class_names: list[str] | None = None

    def __init__(self, spec: InputSpec, max_batch: int, max_in_flight: int) -> None:
        self.spec = spec
        self.max_batch = max(1, int(max_batch))
        self.max_in_flight = max(1, int(max_in_flight))
        self._pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix=f"det-{self.name}")
        self._sem: asyncio.Semaphore | None = None

    @abstractmethod
    def detect_sync(self, frames: Sequence[PreparedFrame]) -> list[Detections]:
        """Blocking detection of one batch (called from a worker thread, or directly offline)."""

    async def detect(self, frames: Sequence[PreparedFrame]) -> list[Detections]:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_in_flight)
        async with self._sem:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self.detect_sync, list(frames))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        self.close()
