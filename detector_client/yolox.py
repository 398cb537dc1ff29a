"""YOLOX post-processing, shared by every backend and by the SageMaker serving handler.

Head output per anchor: ``cx, cy, w, h, objectness, class probabilities...``. A model exported with
``decode_in_inference=False`` (upstream's and ByteTrack's default) outputs raw values: for the
anchor at grid cell (gx, gy) of stride s, ``cx = (out_x + gx) * s``, ``w = exp(out_w) * s``.
Grids cover strides 8, 16 and 32 of the input, in that order, row-major. Then, as upstream's
``postprocess``: each anchor keeps its most likely class, score = objectness x that class's
probability, anchors under ``score_thresh`` or outside ``classes`` go, and class-aware NMS (IoU
without the "+1 pixel" convention) keeps the best box of each cluster. Boxes are divided by the
letterbox ratio and clipped to the source frame (``PostProcess.clip``; ByteTrack's own pipeline
leaves them unclipped, so boxes may start at negative coordinates there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from detector_client.base import PreparedFrame

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

STRIDES = (8, 16, 32)


def anchor_count(height: int, width: int, strides: Sequence[int] = STRIDES) -> int:
    return sum((height // s) * (width // s) for s in strides)


def make_grids(height: int, width: int, strides: Sequence[int] = STRIDES) -> tuple[F32, F32]:
    """(grid xy [A,2], stride [A,1]) for every anchor, in the head's output order."""
    grids, expanded = [], []
    for s in strides:
        gh, gw = height // s, width // s
        yv, xv = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        g = np.stack((xv, yv), axis=2).reshape(-1, 2)
        grids.append(g)
        expanded.append(np.full((g.shape[0], 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(expanded).astype(np.float32)


def probe_frames(height: int, width: int) -> npt.NDArray[np.uint8]:
    """Two fixed letterboxed frames (noise; grey with a dark block) to check a model with at load time."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    b = np.full((height, width, 3), 114, dtype=np.uint8)
    b[: height // 2, : width // 3] = 30
    return np.stack([a, b])


def looks_raw(out: F32) -> bool:
    """Whether one frame's head output [anchors, 5+classes] needs grid decoding (``raw``).

    Decoded centres span the input (hundreds of pixels); raw offsets stay within a cell or two.
    """
    return bool(np.abs(out[:, 0:2]).max() < 2 * max(STRIDES))


#: The defaults of every detector's post-processing (config, CLI, wire format, SageMaker handler).
DEFAULT_SCORE_THRESH = 0.1
DEFAULT_NMS_THRESH = 0.45


@dataclass(frozen=True, slots=True)
class PostProcess:
    """Score filtering, class filtering and NMS settings."""

    score_thresh: float = DEFAULT_SCORE_THRESH
    nms_thresh: float = DEFAULT_NMS_THRESH
    classes: tuple[int, ...] | None = None  # None: every class
    clip: bool = True  # clip boxes to the source frame (ByteTrack's own pipeline does not)
    max_det: int | None = None  # keep at most this many boxes per frame, best first (None: all)


def rows_after_nms(
    boxes: F32, score: F32, cls_id: npt.NDArray[np.int64], frame: PreparedFrame, pp: PostProcess
) -> F64:
    """Class-aware NMS of input-pixel boxes, then rows x1,y1,x2,y2,score,class in source pixels."""
    kept = batched_nms(boxes, score, cls_id, pp.nms_thresh)
    if pp.max_det is not None:
        kept = kept[: pp.max_det]
    b = boxes[kept]
    frame.to_source(b, pp.clip)  # in float32, as the boxes came
    res = np.empty((len(kept), 6))
    res[:, 0:4] = b
    res[:, 4] = score[kept]
    res[:, 5] = cls_id[kept]
    return res


class YoloxDecoder:
    """Turns head outputs of a ``height x width`` YOLOX model into source-pixel detections."""

    def __init__(self, height: int, width: int, raw: bool = True) -> None:
        self.height = height
        self.width = width
        self.raw = raw
        self.grid, self.stride = make_grids(height, width)

    def decode(self, out: F32, anchors: npt.NDArray[np.bool_] | None = None) -> F32:
        """Head output rows (of ``anchors``, default all) -> cx, cy, w, h in input pixels."""
        if not self.raw:
            return out
        grid = self.grid if anchors is None else self.grid[anchors]
        stride = self.stride if anchors is None else self.stride[anchors]
        dec = out.copy()
        dec[:, 0:2] = (out[:, 0:2] + grid) * stride
        dec[:, 2:4] = np.exp(out[:, 2:4]) * stride
        return dec

    def detections(self, out: F32, frame: PreparedFrame, pp: PostProcess) -> F64:
        """One frame's head output -> float64 [K,6] x1,y1,x2,y2,score,class in source pixels."""
        if out.ndim != 2 or out.shape[1] < 6:
            raise ValueError(f"expected [anchors, 5+classes] output, got {out.shape}")
        obj = out[:, 4]
        cls_prob = out[:, 5:]
        cls_id = cls_prob.argmax(axis=1)
        score = obj * cls_prob[np.arange(len(cls_id)), cls_id]
        keep = score >= pp.score_thresh
        if pp.classes is not None:
            keep &= np.isin(cls_id, pp.classes)
        if not keep.any():
            return np.empty((0, 6))
        sel = self.decode(out[keep], keep)
        score, cls_id = score[keep], cls_id[keep]
        boxes = np.empty((len(sel), 4), dtype=np.float32)
        boxes[:, 0:2] = sel[:, 0:2] - sel[:, 2:4] / 2
        boxes[:, 2:4] = sel[:, 0:2] + sel[:, 2:4] / 2
        return rows_after_nms(boxes, score, cls_id, frame, pp)

    def frames(self, out: F32, frames: Sequence[PreparedFrame], pp: PostProcess) -> list[F64]:
        """A batch's head outputs [N, anchors, 5+classes] -> detections per frame, in source pixels."""
        return [self.detections(o, f, pp) for o, f in zip(out, frames, strict=True)]


def nms(boxes: F32, scores: F32, thresh: float) -> npt.NDArray[np.int64]:
    """Greedy NMS: indices of kept boxes, best score first; drops IoU > thresh with a kept box."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= thresh]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: F32, scores: F32, classes: npt.NDArray[np.int64], thresh: float
) -> npt.NDArray[np.int64]:
    """Class-aware NMS (boxes of different classes never suppress each other), best score first."""
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    keep = [
        idx[nms(boxes[idx], scores[idx], thresh)]
        for idx in (np.flatnonzero(classes == c) for c in np.unique(classes))
    ]
    kept = np.concatenate(keep)
    return kept[np.argsort(-scores[kept], kind="stable")]
