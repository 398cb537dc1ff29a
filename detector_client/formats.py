"""Detector model formats: which family an ONNX model is, its preprocessing, and its decoding.

Pure code (numpy only): ``recognise`` reads a model's inputs, outputs and metadata (as
``TensorInfo`` values and a dict, so it is tested without files) and says which family it is and
how to feed it; ``decode`` turns one frame's outputs into source-pixel detections. The ONNX backend,
the offline commands and the SageMaker handler all load models through ``OnnxModel``, which uses
this module, so a family behaves the same everywhere.

Families (``format:`` in the detector config; ``auto`` recognises them):

=========  ======================================================  ===========================
family     outputs                                                 default preprocessing
=========  ======================================================  ===========================
yolox      ``[N, anchors, 5+C]`` raw or decoded (YOLOX, ByteTrack)   ``yolox`` (or ``bytetrack``)
yolov5     ``[N, anchors, 5+C]`` decoded, objectness (YOLOv5)        ``ultralytics``
yolov8     ``[N, 4+C, anchors]`` no objectness (YOLOv5u/v8/v9/11)    ``ultralytics``
end2end    NMS in the graph: ``[N, max_det, 6]`` (YOLO ``nms=True``,   ``ultralytics`` / ``torchvision``
           YOLOv10/26) or boxes / scores / labels (torchvision and
           Detectron2 Faster R-CNN, RetinaNet, SSD; TensorRT-style
           ``num_dets`` first)
ssd        ids ``[N, K, 1]``, scores ``[N, K, 1]``, boxes ``[N, K, 4]``   ``gluoncv``
           (GluonCV SSD and YOLOv3 exports, padded with id -1)
=========  ======================================================  ===========================

Preprocessing presets (``preprocess:``): ``yolox`` BGR 0..255, top-left letterbox, pad 114;
``bytetrack`` RGB /255 ImageNet mean/std, top-left letterbox; ``ultralytics`` RGB /255, centred
letterbox, pad 114; ``torchvision`` RGB /255, top-left letterbox, pad 0 (the graph normalises and
resizes itself); ``detectron2`` BGR 0..255, top-left letterbox, pad 0; ``gluoncv`` RGB /255 ImageNet
mean/std, stretched to the input size.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from detector_client.base import InputSpec, PreparedFrame
from detector_client.errors import ModelLoadError
from detector_client.yolox import PostProcess, YoloxDecoder, anchor_count, rows_after_nms

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Dim = int | str | None

Family = Literal["yolox", "yolov5", "yolov8", "end2end", "ssd"]
FormatName = Literal["auto", "yolox", "yolov5", "yolov8", "end2end", "ssd"]
Preprocess = Literal["auto", "yolox", "bytetrack", "ultralytics", "torchvision", "detectron2", "gluoncv"]
FAMILIES: tuple[str, ...] = get_args(Family)
PREPROCESS_NAMES: tuple[str, ...] = get_args(Preprocess)

#: Each preprocessing preset as ``InputSpec`` fields: the one place they are written down.
PRESETS: dict[str, dict[str, Any]] = {
    "yolox": {"channels": "bgr", "normalize": "none", "resize": "letterbox", "pad_value": 114},
    "bytetrack": {"channels": "rgb", "normalize": "imagenet", "resize": "letterbox", "pad_value": 114},
    "ultralytics": {"channels": "rgb", "normalize": "unit", "resize": "center", "pad_value": 114},
    "torchvision": {"channels": "rgb", "normalize": "unit", "resize": "letterbox", "pad_value": 0},
    "detectron2": {"channels": "bgr", "normalize": "none", "resize": "letterbox", "pad_value": 0},
    "gluoncv": {"channels": "rgb", "normalize": "imagenet", "resize": "stretch", "pad_value": 0},
}

#: The 80 COCO classes in the order of their ids (YOLOX, ByteTrack and Ultralytics COCO models).
COCO_CLASSES: tuple[str, ...] = tuple(
    [
        "person",
        "bicycle",
        "car",
        "motorcycle",
        "airplane",
        "bus",
        "train",
        "truck",
        "boat",
        "traffic_light",
        "fire_hydrant",
        "stop_sign",
        "parking_meter",
        "bench",
        "bird",
        "cat",
        "dog",
        "horse",
        "sheep",
        "cow",
        "elephant",
        "bear",
        "zebra",
        "giraffe",
        "backpack",
        "umbrella",
        "handbag",
        "tie",
        "suitcase",
        "frisbee",
        "skis",
        "snowboard",
        "sports_ball",
        "kite",
        "baseball_bat",
        "baseball_glove",
        "skateboard",
        "surfboard",
        "tennis_racket",
        "bottle",
        "wine_glass",
        "cup",
        "fork",
        "knife",
        "spoon",
        "bowl",
        "banana",
        "apple",
        "sandwich",
        "orange",
        "broccoli",
        "carrot",
        "hot_dog",
        "pizza",
        "donut",
        "cake",
        "chair",
        "couch",
        "potted_plant",
        "bed",
        "dining_table",
        "toilet",
        "tv",
        "laptop",
        "mouse",
        "remote",
        "keyboard",
        "cell_phone",
        "microwave",
        "oven",
        "toaster",
        "sink",
        "refrigerator",
        "book",
        "clock",
        "vase",
        "scissors",
        "teddy_bear",
        "hair_drier",
        "toothbrush",
    ]
)

BOX_NAMES = ("boxes", "bboxes", "det_boxes", "pred_boxes", "detection_boxes")
SCORE_NAMES = ("scores", "det_scores", "detection_scores")
LABEL_NAMES = ("labels", "classes", "class_ids", "det_classes", "pred_classes", "detection_classes")
COUNT_NAMES = ("num_dets", "num_detections", "num")
EXPECTED = (
    "[N, anchors, 5+classes] (YOLOX, YOLOv5), [N, 4+classes, anchors] (YOLOv8, YOLO11), "
    "[N, max_det, 6] (YOLO exported with NMS), boxes/scores/labels (Faster R-CNN, RetinaNet, "
    "Detectron2) or ids/scores/bboxes [N, K, 1|1|4] (GluonCV SSD, YOLOv3)"
)


def spec_for(height: int, width: int, preprocess: str) -> InputSpec:
    """The input spec of a preset (``yolox``, ``bytetrack``, ``ultralytics``, ...) at a size."""
    if preprocess not in PRESETS:
        raise ValueError(f"preprocess must be one of {', '.join(PRESETS)}, got {preprocess!r}")
    return InputSpec(height, width, **PRESETS[preprocess])


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A model input or output: name, dims (int, a symbolic name, or None) and element type."""

    name: str
    dims: tuple[Dim, ...]
    dtype: str  # numpy name: float32, float16, uint8, int64, ...

    def fixed(self, i: int) -> int | None:
        d = self.dims[i]
        return d if isinstance(d, int) and d > 0 else None

    def shape_text(self) -> str:
        return "[" + ", ".join(str(d) if d not in (None, "") else "?" for d in self.dims) + "]"


@dataclass(frozen=True, slots=True)
class ModelFormat:
    """What ``recognise`` found: the family, how to feed the model and which outputs to read."""

    family: Family
    preprocess: str  # a PRESETS key
    input: TensorInfo
    height: int
    width: int
    batched_input: bool  # [N,3,H,W]; False: [3,H,W], one frame per run
    batch_fixed: int | None  # the model's fixed batch size, None when dynamic
    outputs: tuple[str, ...]  # read in this order by ``decode``
    num_classes: int | None
    how: str  # how it was recognised (for the log)

    def spec(self) -> InputSpec:
        return spec_for(self.height, self.width, self.preprocess)


def _err(where: str, msg: str) -> ModelLoadError:
    return ModelLoadError(where, msg)


def is_ultralytics(metadata: Mapping[str, str]) -> bool:
    text = (metadata.get("author", "") + " " + metadata.get("description", "")).lower()
    return "ultralytics" in text


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("true", "1", "yes")


def recognise(
    where: str,
    inputs: Sequence[TensorInfo],
    outputs: Sequence[TensorInfo],
    metadata: Mapping[str, str] | None = None,
    family: str = "auto",
    preprocess: str = "auto",
    input_size: tuple[int, int] | None = None,
) -> ModelFormat:
    """The model's format, or a ``ModelLoadError`` naming ``where`` and what was expected."""
    md = dict(metadata or {})
    if family not in ("auto", *FAMILIES):
        raise _err(where, f"unknown format {family!r} (one of auto, {', '.join(FAMILIES)})")
    if preprocess not in ("auto", *PRESETS):
        raise _err(where, f"unknown preprocess {preprocess!r} (one of auto, {', '.join(PRESETS)})")
    task = md.get("task")
    if task and task not in ("detect", "detection"):
        raise _err(where, f"an Ultralytics {task!r} model; trackcast runs detection models (task 'detect')")
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs)
        raise _err(where, f"expected one image input, found {len(inputs)} ({names})")
    inp = inputs[0]
    rank = len(inp.dims)
    if rank not in (3, 4) or (rank == 3 and inp.dims[0] != 3):
        raise _err(
            where,
            f"input {inp.name!r} has rank {rank} ({inp.shape_text()}); expected [N, 3, H, W] "
            "(or [3, H, W] for a torchvision-style end-to-end model)",
        )
    c_axis = rank - 3
    if inp.dims[c_axis] != 3:
        what = "a dynamic channel count" if inp.fixed(c_axis) is None else f"{inp.dims[c_axis]} channels"
        raise _err(where, f"input {inp.name!r} {inp.shape_text()} has {what}; expected 3 (colour images)")
    if inp.dtype not in ("float32", "float16", "uint8"):
        raise _err(where, f"input {inp.name!r} is {inp.dtype}; expected float32, float16 or uint8 images")
    h, w = inp.fixed(rank - 2), inp.fixed(rank - 1)
    if h is None or w is None:
        if input_size is None:
            raise _err(
                where,
                f"input {inp.name!r} {inp.shape_text()} has a dynamic height/width; set the size to run "
                "it at (detector input_size: [height, width], or --input-size)",
            )
        h, w = input_size
    elif input_size is not None and tuple(input_size) != (h, w):
        raise _err(
            where,
            f"input {inp.name!r} is fixed at {w}x{h}; input_size {input_size[1]}x{input_size[0]} differs",
        )
    batch_fixed = inp.fixed(0) if rank == 4 else 1
    fam, outs, ncls, how = _outputs(where, outputs, md, family, h, w)
    if rank == 3 and fam != "end2end":
        raise _err(
            where, f"input {inp.name!r} {inp.shape_text()} has no batch axis; only end-to-end models may"
        )
    if preprocess == "auto":
        preprocess = _default_preprocess(fam, md, rank)
    return ModelFormat(fam, preprocess, inp, h, w, rank == 4, batch_fixed, outs, ncls, how)


def _default_preprocess(fam: Family, md: Mapping[str, str], rank: int) -> str:
    if fam == "yolox":
        return "yolox"
    if fam in ("yolov5", "yolov8"):
        return "ultralytics"
    if fam == "ssd":
        return "gluoncv"
    return "ultralytics" if is_ultralytics(md) else "torchvision"


def _find(outputs: Sequence[TensorInfo], names: Sequence[str]) -> TensorInfo | None:
    for o in outputs:
        low = o.name.lower()
        if low in names or any(low.endswith(n) for n in names if len(n) > 4):
            return o
    return None


def _outputs(
    where: str, outputs: Sequence[TensorInfo], md: Mapping[str, str], family: str, h: int, w: int
) -> tuple[Family, tuple[str, ...], int | None, str]:
    if not outputs:
        raise _err(where, f"the model has no outputs; expected {EXPECTED}")
    anchors = anchor_count(h, w)
    ultra = is_ultralytics(md)
    e2e_md = _truthy(md.get("end2end")) or '"nms": true' in md.get("args", "").lower().replace("'", '"')
    # several outputs: NMS in the graph
    boxes, scores, labels = (
        _find(outputs, BOX_NAMES),
        _find(outputs, SCORE_NAMES),
        _find(outputs, LABEL_NAMES),
    )
    if len(outputs) >= 3 and family in ("auto", "end2end") and boxes and scores and labels:
        if scores.dtype.startswith("int") and labels.dtype.startswith("float"):
            scores, labels = labels, scores  # names swapped at export: the types tell
        count = _find(outputs, COUNT_NAMES)
        names = (boxes.name, scores.name, labels.name) + ((count.name,) if count else ())
        return "end2end", names, None, "boxes/scores/labels outputs (NMS in the graph)"
    if len(outputs) == 3 and family in ("auto", "ssd"):
        lasts = [o.dims[-1] if o.dims else None for o in outputs]
        if all(len(o.dims) == 3 for o in outputs) and lasts == [1, 1, 4]:
            return (
                "ssd",
                tuple(o.name for o in outputs),
                None,
                "ids/scores/bboxes outputs (GluonCV SSD, YOLOv3)",
            )
    if len(outputs) >= 3 and family in ("auto", "end2end"):
        by_shape = _end2end_by_shape(outputs)
        if by_shape:
            return "end2end", by_shape, None, "box/score/label outputs recognised by shape and type"
    out = outputs[0]
    d = out.dims
    if len(d) != 3:
        raise _err(where, f"output {out.name!r} has shape {out.shape_text()}; expected {EXPECTED}")
    a, b = out.fixed(1), out.fixed(2)
    dense_hint = f"a {w}x{h} model's dense head has {anchors} anchors (strides 8/16/32)"
    if (
        family in ("auto", "end2end")
        and b == 6
        and (e2e_md or (a is not None and a not in (anchors, 3 * anchors)))
    ):
        return "end2end", (out.name,), None, "[N, max_det, 6] rows x1,y1,x2,y2,score,class (NMS in the graph)"
    if (
        family in ("auto", "yolov8")
        and a is not None
        and a >= 5
        and (b in (anchors, None) or family == "yolov8")
    ):
        return "yolov8", (out.name,), a - 4, "[N, 4+classes, anchors] head (no objectness)"
    if (
        family in ("auto", "yolox", "yolov5")
        and b is not None
        and b >= 6
        and a in (anchors, 3 * anchors, None)
    ):
        fam: Family
        if family != "auto":
            fam = "yolov5" if family == "yolov5" else "yolox"
        elif a == 3 * anchors or ultra or ("stride" in md and "names" in md):
            fam = "yolov5"  # Ultralytics metadata, or 3 anchors a cell
        else:
            fam = "yolox"
        return fam, (out.name,), b - 5, "[N, anchors, 5+classes] head"
    if family != "auto":
        raise _err(where, f"output {out.name!r} {out.shape_text()} is not a {family} output; {dense_hint}")
    raise _err(
        where, f"unknown output layout: {out.name!r} {out.shape_text()}; expected {EXPECTED}; {dense_hint}"
    )


def _end2end_by_shape(outputs: Sequence[TensorInfo]) -> tuple[str, ...] | None:
    """torchvision-style outputs without telling names: float [..., K, 4], int [..., K], float [..., K]."""
    boxes = [o for o in outputs if o.dims and o.dims[-1] == 4 and o.dtype.startswith("float")]
    ints = [o for o in outputs if o.dtype.startswith("int") and len(o.dims) in (1, 2)]
    floats = [o for o in outputs if o.dtype.startswith("float") and len(o.dims) in (1, 2) and o not in boxes]
    if len(boxes) == 1 and ints and floats:
        return (boxes[0].name, floats[0].name, ints[0].name)
    return None


# ---------------------------------------------------------------------- class names
def class_names_from_metadata(metadata: Mapping[str, str]) -> list[str] | None:
    """Class names the exporter wrote (Ultralytics: ``names``, a dict literal ``{0: 'person', ...}``)."""
    for key in ("names", "classes", "labels", "class_names"):
        text = metadata.get(key)
        if text:
            names = parse_class_names(text)
            if names:
                return names
    return None


def parse_class_names(text: str) -> list[str] | None:
    """A list or an id -> name dict as JSON or a Python literal; ``None`` when it is neither."""
    value: Any
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, dict) and value:
        try:
            pairs = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            return None
        n = max(pairs) + 1
        if min(pairs) < 0 or n > 100_000:
            return None
        return [pairs.get(i, str(i)) for i in range(n)]
    return None


def load_class_names(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a file: one per line (``.txt``, ``.names``), or a JSON list / id map."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"class names file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".json", ".yaml", ".yml"):
        if p.suffix.lower() != ".json":
            import yaml

            data = yaml.safe_load(text)
            if isinstance(data, dict) and "names" in data:
                data = data["names"]
            text = json.dumps(data)
        names = parse_class_names(text)
        if names is None:
            raise ValueError(f"class names file {p}: expected a list of names or an id -> name map")
        return names
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not names:
        raise ValueError(f"class names file {p} has no names")
    return names


# ---------------------------------------------------------------------- decoding
class Decoder:
    """Outputs of one frame (as ``fmt.outputs`` lists them, without the batch axis) -> detections."""

    def __init__(self, fmt: ModelFormat, raw: bool = True) -> None:
        self.fmt = fmt
        self.yolox = YoloxDecoder(fmt.height, fmt.width, raw=raw and fmt.family == "yolox")

    def frame(self, outs: Sequence[np.ndarray], frame: PreparedFrame, pp: PostProcess) -> F64:
        fam = self.fmt.family
        if fam in ("yolox", "yolov5"):
            return self.yolox.detections(np.asarray(outs[0], dtype=np.float32), frame, pp)
        if fam == "yolov8":
            return yolov8_rows(np.asarray(outs[0], dtype=np.float32), frame, pp)
        if fam == "ssd":
            ids, scores, boxes = (np.asarray(o) for o in outs)
            return selected_rows(boxes.reshape(-1, 4), scores.reshape(-1), ids.reshape(-1), frame, pp)
        if len(outs) == 1:  # [max_det, 6] rows
            rows = np.asarray(outs[0], dtype=np.float32).reshape(-1, 6)
            return selected_rows(rows[:, :4], rows[:, 4], rows[:, 5], frame, pp)
        boxes, scores, labels = (np.asarray(o) for o in outs[:3])
        if len(outs) > 3:
            n = int(np.asarray(outs[3]).reshape(-1)[0])
            boxes, scores, labels = boxes.reshape(-1, 4)[:n], scores.reshape(-1)[:n], labels.reshape(-1)[:n]
        return selected_rows(boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1), frame, pp)

    def frames(self, per_frame: Sequence[Sequence[np.ndarray]], frames: Sequence[PreparedFrame],
               pp: PostProcess) -> list[F64]:  # fmt: skip
        return [self.frame(o, f, pp) for o, f in zip(per_frame, frames, strict=True)]


def yolov8_rows(out: F32, frame: PreparedFrame, pp: PostProcess) -> F64:
    """A ``[4+C, anchors]`` head (centre x/y, width, height in input pixels, then class scores)."""
    if out.ndim != 2 or out.shape[0] < 5:
        raise ValueError(f"expected [4+classes, anchors] output, got {out.shape}")
    cls = out[4:]
    cls_id = cls.argmax(axis=0)
    score = cls[cls_id, np.arange(cls.shape[1])]
    keep = score > pp.score_thresh if pp.score_thresh > 0 else score >= 0
    if pp.classes is not None:
        keep &= np.isin(cls_id, pp.classes)
    if not keep.any():
        return np.empty((0, 6))
    xywh = out[:4, keep].T
    boxes = np.empty((len(xywh), 4), dtype=np.float32)
    boxes[:, 0:2] = xywh[:, 0:2] - xywh[:, 2:4] / 2
    boxes[:, 2:4] = xywh[:, 0:2] + xywh[:, 2:4] / 2
    return rows_after_nms(boxes, score[keep], cls_id[keep], frame, pp)


def selected_rows(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, frame: PreparedFrame, pp: PostProcess
) -> F64:
    """Detections that already went through NMS: filter by score and class, map to the source."""
    scores = scores.astype(np.float32)
    labels = np.rint(labels.astype(np.float64)).astype(np.int64)
    keep = (scores >= pp.score_thresh) & (scores > 0) & (labels >= 0)
    if pp.classes is not None:
        keep &= np.isin(labels, pp.classes)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    if pp.max_det is not None:
        idx = idx[: pp.max_det]
    b = boxes[idx].astype(np.float32)
    frame.to_source(b, pp.clip)
    res = np.empty((len(idx), 6))
    res[:, 0:4] = b
    res[:, 4] = scores[idx]
    res[:, 5] = labels[idx]
    return res
