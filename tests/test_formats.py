"""Detector formats: recognised from the model, decoded as the model's framework does.

Unit tests drive ``detector_client.formats.recognise`` with tensor signatures (no files). Small
graphs built here reproduce the exports' signatures with known contents (Ultralytics YOLOv8 and
end-to-end, torchvision Faster R-CNN/RetinaNet, YOLOv5 with objectness, GluonCV SSD/YOLOv3,
TensorRT-style ``num_dets``): the decode must find exactly what they hold, the CLI and the service
run them, the SageMaker handler serves them. Where the real exports are at hand (the frameworks'
own exports with their own post-NMS detections of the same images, written by
``scripts/export_detectors.py`` in ``.venv-export``: ``make detector-exports``, into
``../shared/data/detectors`` or ``$TRACKCAST_DETECTOR_EXPORTS``), they are decoded against them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from detector_client.errors import ModelLoadError
from detector_client.formats import (
    TensorInfo,
    class_names_from_metadata,
    load_class_names,
    parse_class_names,
    recognise,
)
from detector_client.yolox import PostProcess
from tests.conftest import SHARED_DATA

#: The frameworks' own exports (not in the repository: data, like the rest of ../shared).
EXPORTS = Path(os.environ.get("TRACKCAST_DETECTOR_EXPORTS") or SHARED_DATA / "detectors")
needs_exports = pytest.mark.skipif(
    not (EXPORTS / "images.npz").is_file(),
    reason=f"the real Ultralytics/torchvision exports are not in {EXPORTS} (make detector-exports writes them)",
)
IMG = TensorInfo("images", (1, 3, 320, 320), "float32")
ULTRA = {"author": "Ultralytics", "description": "Ultralytics YOLOv8n model", "task": "detect",
         "names": "{0: 'person', 1: 'bicycle', 2: 'car'}", "stride": "32"}  # fmt: skip


def out(name: str, *dims: int | str | None, dtype: str = "float32") -> TensorInfo:
    return TensorInfo(name, tuple(dims), dtype)


# ---------------------------------------------------------------------- recognition (unit)
@pytest.mark.unit
@pytest.mark.parametrize(
    ("outputs", "md", "family", "preprocess", "classes"),
    [
        ([out("output", 1, 2100, 85)], {}, "yolox", "yolox", 80),
        ([out("output0", 1, 84, 2100)], ULTRA, "yolov8", "ultralytics", 80),
        ([out("output0", 1, 7, 2100)], {}, "yolov8", "ultralytics", 3),  # no metadata: the shape says
        ([out("output0", 1, 6300, 85)], {}, "yolov5", "ultralytics", 80),  # 3 anchors a cell
        ([out("output0", 1, 2100, 85)], {"stride": "32", "names": "{0: 'a'}"}, "yolov5", "ultralytics", 80),
        ([out("output0", 1, 300, 6)], ULTRA, "end2end", "ultralytics", None),
        ([out("boxes", "n", 4), out("labels", "n", dtype="int64"), out("scores", "n")], {}, "end2end",
         "torchvision", None),
        ([out("num_dets", 1, 1, dtype="int32"), out("det_boxes", 1, 100, 4), out("det_scores", 1, 100),
          out("det_classes", 1, 100, dtype="int32")], {}, "end2end", "torchvision", None),
        ([out("a", 1, 100, 1), out("b", 1, 100, 1), out("c", 1, 100, 4)], {}, "ssd", "gluoncv", None),
        ([out("x", "n", 4), out("y", "n", dtype="int64"), out("z", "n")], {}, "end2end", "torchvision", None),
    ],
)  # fmt: skip
def test_recognised_from_outputs(
    outputs: list[TensorInfo], md: dict[str, str], family: str, preprocess: str, classes: int | None
) -> None:
    fmt = recognise("m.onnx", [IMG], outputs, md)
    assert (fmt.family, fmt.preprocess, fmt.num_classes) == (family, preprocess, classes)
    assert (fmt.height, fmt.width) == (320, 320)
    spec = fmt.spec()
    assert (spec.height, spec.width) == (320, 320)


@pytest.mark.unit
def test_end2end_outputs_named_in_the_wrong_order_are_read_by_type() -> None:
    # torchvision RetinaNet returns boxes, scores, labels; names given in Faster R-CNN's order swap them
    fmt = recognise(
        "r.onnx", [IMG], [out("boxes", "n", 4), out("labels", "n"), out("scores", "n", dtype="int64")]
    )
    assert fmt.outputs == ("boxes", "labels", "scores")  # boxes, then the float (scores), then the int


@pytest.mark.unit
def test_set_format_and_preprocess_win() -> None:
    fmt = recognise("m.onnx", [IMG], [out("o", 1, 2100, 85)], {}, family="yolov5", preprocess="bytetrack")
    assert (fmt.family, fmt.preprocess) == ("yolov5", "bytetrack")
    assert fmt.spec().normalize == "imagenet"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("inputs", "outputs", "kw", "message"),
    [
        ([IMG], [out("o", 1, 3, 320, 320)], {}, r"m\.onnx: output 'o' has shape \[1, 3, 320, 320\]; expected"),
        ([IMG], [out("o", 1, 1000, 85)], {}, r"unknown output layout: 'o' \[1, 1000, 85\].*has 2100 anchors"),
        ([IMG], [out("o", 1, 1000, 85)], {"family": "yolox"}, r"is not a yolox output"),
        ([TensorInfo("i", (1, 320, 320), "float32")], [out("o", 1, 2100, 85)], {}, r"rank 3 .*expected \[N, 3, H, W\]"),
        ([TensorInfo("i", (1, 1, 3, 320, 320), "float32")], [out("o", 1, 2100, 85)], {}, r"has rank 5"),
        ([TensorInfo("i", (1, 3, "h", "w"), "float32")], [out("o", 1, 84, "n")], {}, r"dynamic height/width.*input_size"),
        ([TensorInfo("i", (1, "c", 320, 320), "float32")], [out("o", 1, 2100, 85)], {}, r"dynamic channel count"),
        ([TensorInfo("i", (1, 3, 320, 320), "int32")], [out("o", 1, 2100, 85)], {}, r"is int32; expected float32"),
        ([IMG, IMG], [out("o", 1, 2100, 85)], {}, r"expected one image input, found 2"),
        ([TensorInfo("i", (3, 320, 320), "float32")], [out("o", 1, 2100, 85)], {}, r"no batch axis"),
        ([IMG], [out("o", 1, 84, 2100)], {"input_size": (640, 640)}, r"fixed at 320x320; input_size 640x640"),
        ([IMG], [out("o", 1, 2100, 85)], {"family": "detr"}, r"unknown format 'detr'"),
    ],
)  # fmt: skip
def test_clear_errors_name_the_model_and_what_was_expected(
    inputs: list[TensorInfo], outputs: list[TensorInfo], kw: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        recognise("m.onnx", inputs, outputs, {}, **kw)  # type: ignore[arg-type]


@pytest.mark.unit
def test_segmentation_model_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="'segment' model"):
        recognise("seg.onnx", [IMG], [out("o", 1, 116, 2100)], {**ULTRA, "task": "segment"})


@pytest.mark.unit
def test_dynamic_input_runs_at_the_size_given() -> None:
    fmt = recognise("m.onnx", [TensorInfo("i", ("b", 3, "h", "w"), "float32")], [out("o", "b", 84, "n")],
                    ULTRA, input_size=(480, 640))  # fmt: skip
    assert (fmt.family, fmt.height, fmt.width, fmt.batch_fixed) == ("yolov8", 480, 640, None)


@pytest.mark.unit
def test_class_names(tmp_path: Path) -> None:
    assert class_names_from_metadata(ULTRA) == ["person", "bicycle", "car"]
    assert parse_class_names('["a", "b"]') == ["a", "b"]
    assert parse_class_names("{1: 'b', 0: 'a', 3: 'd'}") == ["a", "b", "2", "d"]
    assert parse_class_names("not names") is None
    (tmp_path / "n.txt").write_text("# comment\nball\n\nplayer\n")
    assert load_class_names(tmp_path / "n.txt") == ["ball", "player"]
    (tmp_path / "n.yaml").write_text("names:\n  0: ball\n  1: player\n")
    assert load_class_names(tmp_path / "n.yaml") == ["ball", "player"]
    with pytest.raises(FileNotFoundError, match=r"nope\.txt does not exist"):
        load_class_names(tmp_path / "nope.txt")


@pytest.mark.unit
def test_centred_and_stretched_geometry_map_back() -> None:
    from detector_client.formats import spec_for

    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 90:110] = 255  # a white square in the middle
    for preset, want_pad in (("ultralytics", (0, 80)), ("gluoncv", (0, 0)), ("yolox", (0, 0))):
        spec = spec_for(320, 320, preset)
        f = spec.prepare(img)
        assert (f.pad_x, f.pad_y) == want_pad
        ys, xs = np.nonzero(f.image[:, :, 0] > 128)
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float64)
        f.to_source(box)
        assert np.abs(box - [[90, 40, 110, 60]]).max() <= 2.0, (preset, box)
    yuv = spec_for(320, 320, "ultralytics").prepare_yuv420(
        np.zeros((100, 200), np.uint8), np.full((50, 100), 128, np.uint8), np.full((50, 100), 128, np.uint8)
    )
    assert (yuv.pad_y, yuv.image[0, 0, 0], yuv.image[160, 160, 0]) == (80, 114, 0)


# ---------------------------------------------------------------------- real exports (integration)
def _match(got: np.ndarray, ref: np.ndarray, tol: float = 1e-3) -> float:
    """One-to-one match of detections (same class); returns the largest coordinate difference."""
    assert len(got) == len(ref), f"{len(got)} detections, the framework has {len(ref)}"
    used = np.zeros(len(got), bool)
    worst = 0.0
    for r in ref:
        d = np.abs(got[:, :5] - r[:5]).max(axis=1)
        d[used | (got[:, 5] != r[5])] = np.inf
        i = int(d.argmin())
        assert d[i] <= tol, f"no detection within {tol} of {r.tolist()} (nearest {got[i].tolist()})"
        used[i] = True
        worst = max(worst, float(np.abs(got[i, :4] - r[:4]).max()))
    return worst


@pytest.mark.integration
@needs_exports
@pytest.mark.parametrize(
    ("tag", "family", "names"),
    [("yolov8", "yolov8", True), ("yolo11", "yolov8", True), ("yolov8_nms", "end2end", True),
     ("fasterrcnn", "end2end", False), ("retinanet", "end2end", False)],
)  # fmt: skip
def test_real_exports_decode_as_their_framework(tag: str, family: str, names: bool) -> None:
    from detector_client.onnx_backend import OnnxModel

    ref = json.loads((EXPORTS / f"{tag}.json").read_text())
    pp = PostProcess(ref["score"], ref["iou"] or 0.45, clip=False, max_det=300)
    size = None if family != "end2end" or names else (320, 320)  # torchvision: dynamic H/W
    m = OnnxModel(EXPORTS / f"{tag}.onnx", postprocess=pp, input_size=size)
    assert m.fmt.family == family
    assert (m.class_names or [])[:2] == (["thing0", "thing1"] if names else [])
    rgb = np.load(EXPORTS / "images.npz")["rgb"]
    frames = [m.spec.prepare(np.ascontiguousarray(im[:, :, ::-1]), "cam", i) for i, im in enumerate(rgb)]
    got = m.detect(frames)
    assert sum(len(g) for g in got) > 20  # the exports were made to detect things
    for g, r in zip(got, ref["detections"], strict=True):
        _match(g, np.asarray(r, dtype=np.float64).reshape(-1, 6))


def _save(
    path: Path, nodes: list, inputs: list, outputs: list, inits: list, md: dict[str, str] | None = None
) -> Path:  # type: ignore[type-arg]
    import onnx
    from onnx import helper

    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (md or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def _const_plus_input(
    name: str,
    value: np.ndarray,
    nodes: list,
    inits: list,
    scale: np.ndarray | None = None,  # type: ignore[type-arg]
) -> None:
    """``name`` = value + scale * mean(image): a constant the graph computes from its input (scale
    0), or one that moves with the picture's brightness (frames of a video: boxes that move)."""
    from onnx import numpy_helper

    inits.append(numpy_helper.from_array(value, f"{name}_c"))
    nodes.append(__import__("onnx").helper.make_node("ReduceMean", ["images"], [f"{name}_m"], keepdims=0))
    z = np.zeros(1, np.float32) if scale is None else scale.astype(np.float32)
    inits.append(numpy_helper.from_array(z, f"{name}_z"))
    nodes += [
        __import__("onnx").helper.make_node("Mul", [f"{name}_m", f"{name}_z"], [f"{name}_0"]),
        __import__("onnx").helper.make_node("Add", [f"{name}_c", f"{name}_0"], [name]),
    ]


@pytest.mark.integration
def test_signature_graphs_yolov5_ssd_and_num_dets(tmp_path: Path) -> None:
    """Graphs with the exports' signatures and known outputs: the decode finds exactly what they hold."""
    from onnx import TensorProto, helper

    from detector_client.onnx_backend import OnnxModel

    img = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    truth = np.array([[4, 6, 20, 30, 0.9, 1], [30, 30, 60, 62, 0.6, 0]], dtype=np.float64)  # input px

    # YOLOv5 (objectness; 3 anchors a cell): [1, 3*84, 5+2] decoded cx, cy, w, h, obj, cls...
    v5 = np.zeros((1, 3 * 84, 7), np.float32)
    v5[0, :, 2:4] = 4.0
    for k, (x1, y1, x2, y2, s, c) in enumerate(truth):
        for dup in (0, 1):  # a near-duplicate of each box, which NMS removes
            row = v5[0, 10 * k + dup]
            row[:4] = ((x1 + x2) / 2 + dup, (y1 + y2) / 2, x2 - x1, y2 - y1)
            row[4], row[5 + int(c)] = 1.0, s - 0.01 * dup
    nodes: list = []  # type: ignore[type-arg]
    inits: list = []  # type: ignore[type-arg]
    _const_plus_input("output0", v5, nodes, inits)
    p5 = _save(tmp_path / "v5.onnx", nodes, [img], [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 252, 7])],
               inits, {"stride": "32", "names": "{0: 'ball', 1: 'player'}"})  # fmt: skip

    # GluonCV SSD: ids [1,K,1] (-1 pads), scores [1,K,1], bboxes [1,K,4] xyxy in input px
    ids = np.full((1, 5, 1), -1, np.float32)
    scores = np.full((1, 5, 1), -1, np.float32)
    boxes = np.zeros((1, 5, 4), np.float32)
    ids[0, :2, 0], scores[0, :2, 0], boxes[0, :2] = truth[:, 5], truth[:, 4], truth[:, :4]
    nodes, inits = [], []
    for n, v in (("ids", ids), ("scores", scores), ("bboxes", boxes)):
        _const_plus_input(n, v, nodes, inits)
    pssd = _save(tmp_path / "ssd.onnx", nodes, [img],
                 [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(v.shape)) for n, v in
                  (("ids", ids), ("scores", scores), ("bboxes", boxes))], inits)  # fmt: skip

    # TensorRT EfficientNMS style: num_dets, det_boxes, det_scores, det_classes (only the first n count)
    nodes, inits = [], []
    det_b = np.zeros((1, 4, 4), np.float32)
    det_s = np.array([[0.9, 0.6, 0.95, 0.95]], np.float32)  # rows past num_dets are garbage
    det_c = np.array([[1, 0, 0, 0]], np.int64)
    det_b[0, :2] = truth[:, :4]
    from onnx import numpy_helper

    for n, v in (("det_boxes", det_b), ("det_scores", det_s)):
        _const_plus_input(n, v, nodes, inits)
    inits += [
        numpy_helper.from_array(np.array([[2]], np.int64), "n_i"),
        numpy_helper.from_array(det_c, "c_i"),
    ]
    nodes += [
        helper.make_node("Identity", ["n_i"], ["num_dets"]),
        helper.make_node("Identity", ["c_i"], ["det_classes"]),
    ]
    pnms = _save(tmp_path / "nms.onnx", nodes, [img],
                 [helper.make_tensor_value_info("num_dets", TensorProto.INT64, [1, 1]),
                  helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [1, 4, 4]),
                  helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [1, 4]),
                  helper.make_tensor_value_info("det_classes", TensorProto.INT64, [1, 4])], inits)  # fmt: skip

    src = np.zeros((128, 128, 3), np.uint8)  # a 2x larger frame: boxes come back scaled by 2
    for path, family, preprocess in (
        (p5, "yolov5", "ultralytics"),
        (pssd, "ssd", "gluoncv"),
        (pnms, "end2end", "torchvision"),
    ):
        m = OnnxModel(path, postprocess=PostProcess(0.3, 0.45))
        assert (m.fmt.family, m.fmt.preprocess) == (family, preprocess), path.name
        f = m.spec.prepare(src)
        got = m.detect([f])[0]
        want = truth.copy()
        want[:, :4] *= 2
        assert _match(got, want, tol=1e-4) <= 1e-4, path.name
    assert OnnxModel(p5).class_names == ["ball", "player"]


#: What the built graphs hold, in input pixels of a 320x320 input: x1, y1, x2, y2, score, class.
TRUTH = np.array([[20, 30, 60, 110, 0.9, 1], [150, 40, 190, 140, 0.8, 0], [200, 180, 260, 300, 0.7, 2],
                  [60, 200, 100, 290, 0.6, 0], [250, 20, 300, 100, 0.5, 1], [100, 100, 130, 170, 0.45, 2]],
                 dtype=np.float64)  # fmt: skip
NAMES = "{0: 'thing0', 1: 'thing1', 2: 'thing2'}"
ULTRA_MD = {"author": "Ultralytics", "description": "Ultralytics YOLOv8n model", "task": "detect",
            "names": NAMES, "stride": "32", "imgsz": "[320, 320]"}  # fmt: skip
MOVE_PX = 40.0  # with moving=True: boxes shift this many input px per unit of the input's mean


def ultralytics_graph(path: Path, moving: bool = False, end2end: bool = False) -> Path:
    """An Ultralytics YOLOv8/YOLO11 export's signature and metadata (input [1, 3, 320, 320], 0-1
    RGB): the dense head [1, 4 + 3, 2100] (cx, cy, w, h, class scores; each box with a near-
    duplicate NMS must remove), or with ``end2end`` the ``nms=True`` output [1, 300, 6]."""
    from onnx import TensorProto, helper

    img = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])
    if end2end:
        v = np.zeros((1, 300, 6), np.float32)
        v[0, : len(TRUTH)] = TRUTH
        scale = np.zeros_like(v)
        scale[0, : len(TRUTH), :4] = MOVE_PX
    else:
        v = np.zeros((1, 7, 2100), np.float32)
        for k, (x1, y1, x2, y2, sc, c) in enumerate(TRUTH):
            for dup in (0, 1):
                a = 100 * k + dup
                v[0, :4, a] = ((x1 + x2) / 2 + dup, (y1 + y2) / 2, x2 - x1, y2 - y1)
                v[0, 4 + int(c), a] = sc - 0.01 * dup
        scale = np.zeros_like(v)
        scale[0, :2] = MOVE_PX
    nodes: list = []  # type: ignore[type-arg]
    inits: list = []  # type: ignore[type-arg]
    _const_plus_input("output0", v, nodes, inits, scale if moving else None)
    o = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(v.shape))
    return _save(path, nodes, [img], [o], inits, ULTRA_MD)


def torchvision_graph(path: Path, moving: bool = False) -> Path:
    """A torchvision Faster R-CNN/RetinaNet export's signature: one image [3, height, width]
    (dynamic), outputs boxes [n, 4] (input px), labels [n] int64, scores [n]; no metadata."""
    from onnx import TensorProto, helper, numpy_helper

    img = helper.make_tensor_value_info("images", TensorProto.FLOAT, [3, "height", "width"])
    nodes: list = []  # type: ignore[type-arg]
    inits: list = []  # type: ignore[type-arg]
    boxes = TRUTH[:, :4].astype(np.float32)
    _const_plus_input("boxes", boxes, nodes, inits, np.full_like(boxes, MOVE_PX) if moving else None)
    _const_plus_input("scores", TRUTH[:, 4].astype(np.float32), nodes, inits)
    inits.append(numpy_helper.from_array(TRUTH[:, 5].astype(np.int64), "labels_c"))
    nodes.append(helper.make_node("Identity", ["labels_c"], ["labels"]))
    n = len(TRUTH)
    outs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n, 4]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [n]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n])]  # fmt: skip
    return _save(path, nodes, [img], outs, inits)


@pytest.mark.integration
def test_signature_graphs_ultralytics_and_torchvision(tmp_path: Path) -> None:
    """YOLOv8's dense head (NMS after), Ultralytics' nms=True and torchvision's end-to-end outputs:
    recognised, preprocessed as their framework does, decoded to exactly the boxes they hold."""
    from detector_client.onnx_backend import OnnxModel

    src = np.zeros((640, 640, 3), np.uint8)  # a 2x larger frame: boxes come back scaled by 2
    for path, family, preprocess, size in (
        (ultralytics_graph(tmp_path / "v8.onnx"), "yolov8", "ultralytics", None),
        (ultralytics_graph(tmp_path / "v8nms.onnx", end2end=True), "end2end", "ultralytics", None),
        (torchvision_graph(tmp_path / "tv.onnx"), "end2end", "torchvision", (320, 320)),
    ):
        m = OnnxModel(path, postprocess=PostProcess(0.3, 0.45), input_size=size)
        assert (m.fmt.family, m.fmt.preprocess) == (family, preprocess), path.name
        got = m.detect([m.spec.prepare(src)])[0]
        want = TRUTH.copy()
        want[:, :4] *= 2
        assert _match(got, want, tol=1e-3) <= 1e-3, path.name
    assert OnnxModel(tmp_path / "v8.onnx").class_names == ["thing0", "thing1", "thing2"]


@pytest.mark.integration
def test_missing_and_bad_names_files(tmp_path: Path) -> None:
    from detector_client.onnx_backend import OnnxModel

    with pytest.raises(ModelLoadError, match=r"yolov8\.onnx: class names file .*nope\.txt does not exist"):
        OnnxModel(ultralytics_graph(tmp_path / "yolov8.onnx"), class_names=tmp_path / "nope.txt")
    with pytest.raises(
        ModelLoadError, match=r"fasterrcnn\.onnx: input 'images' \[3, height, width\] has a dynamic"
    ):
        OnnxModel(torchvision_graph(tmp_path / "fasterrcnn.onnx"))


# ---------------------------------------------------------------------- end to end (system)
@pytest.mark.system
@pytest.mark.parametrize("tag", ["yolov8", "retinanet"])
def test_track_and_the_service_run_other_families(tag: str, tmp_path: Path) -> None:
    """``trackcast track`` and a ``serve`` replay on an Ultralytics and a torchvision signature (built
    graphs whose boxes move with the picture): the same tracks frame for frame, events named by the
    model's classes, an annotated video."""
    import subprocess

    from tests.conftest import SHARED_DATA, run_trackcast
    from tests.infra import Collector, Mosquitto, ServiceProc, wait_for
    from tracker.mot import read_mot

    whole = SHARED_DATA / "video" / "pedestrians_720p25.mp4"
    if not whole.is_file():
        pytest.skip(f"../shared is absent (looked for {whole})")
    clip = tmp_path / "clip.mp4"  # the first 3 s (75 frames)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(whole), "-t", "3", "-c", "copy", str(clip)], check=True
    )
    model = (
        ultralytics_graph(tmp_path / "m.onnx", moving=True)
        if tag == "yolov8"
        else torchvision_graph(tmp_path / "m.onnx", moving=True)
    )
    names = tmp_path / "names.txt"
    names.write_text("".join(f"kind{i}\n" for i in range(8)))
    extra = ["--class-names", str(names)] if tag == "retinanet" else []
    size = ["--input-size", "320", "320"] if tag == "retinanet" else []
    out, video = tmp_path / "t.txt", tmp_path / "t.mp4"
    res = run_trackcast("track", str(clip), "--model", str(model), "--score-thresh", "0.3", *extra, *size,
                        "--out", str(out), "--out-video", str(video), "--no-progress")  # fmt: skip
    assert res.returncode == 0, res.stderr
    offline: dict[int, dict[int, list[float]]] = {}
    for r in read_mot(out):
        offline.setdefault(int(r[0]), {})[int(r[1])] = [r[2], r[3], r[2] + r[4], r[3] + r[5]]
    assert len(offline) >= 60 and video.stat().st_size > 10_000
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port)
    det = {"kind": "onnx", "model": str(model), "score_thresh": 0.3, "max_batch": 4}
    if tag == "retinanet":
        det.update(class_names=str(names), input_size=[320, 320])
    svc = ServiceProc(tmp_path / "svc", {"instance": "f1", "mqtt": {"url": broker.url}, "detector": det,
                                         "streams": [{"id": "r", "url": str(clip), "mode": "replay",
                                                      "realtime": False}]})  # fmt: skip
    try:
        svc.start()
        wait_for(lambda: svc.stream("r")["state"] == "offline", 180, "the replay to finish")
        assert svc.stop() == 0
    finally:
        svc.kill()
        sub.close()
        broker.stop()
    by_frame = {m["frame"]: m for m in sub.of("/tracks", "r")}
    n = len(by_frame)
    assert sorted(by_frame) == list(range(1, n + 1)) and n >= 70 and max(offline) <= n, "every frame once"
    for f in sorted(by_frame):
        got = {t["id"]: t["box"] for t in by_frame[f]["tracks"]}
        want = offline.get(f, {})
        assert sorted(got) == sorted(want), f"frame {f}"
        for tid, box in got.items():
            assert np.abs(np.array(box) - np.array(want[tid])).max() <= 0.011, f"frame {f} id {tid}"
    started = [e for e in sub.of("/events", "r") if e["event"] == "track_started"]
    assert started
    prefix = "kind" if tag == "retinanet" else "thing"
    assert all(e["label"] == f"{prefix}{e['class']}" for e in started), started[:3]


@pytest.mark.unit
def test_tensorrt_builds_its_engine_once_into_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detector_client.onnx_backend import provider_options

    opts = provider_options(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                            tmp_path / "trt", tensorrt_fp16=False)  # fmt: skip
    name, o = opts[0]
    assert name == "TensorrtExecutionProvider" and opts[1:] == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert o["trt_engine_cache_enable"] and o["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert o["trt_timing_cache_enable"] and o["trt_fp16_enable"] is False
    assert (tmp_path / "trt").is_dir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (_, o), = provider_options(["TensorrtExecutionProvider"])  # fmt: skip
    assert o["trt_engine_cache_path"] == str(tmp_path / "cache" / "trackcast" / "tensorrt")


@pytest.mark.integration
def test_the_sagemaker_handler_serves_an_ultralytics_export(tmp_path: Path) -> None:
    """model.tar.gz's handler recognises the family too; the wire carries the centred letterbox.
    The Ultralytics signature built here; the real export too where it is at hand."""
    import shutil

    import cv2

    from deploy.sagemaker import inference
    from detector_client import wire
    from detector_client.onnx_backend import OnnxModel

    real = EXPORTS / "yolov8.onnx"
    models = [ultralytics_graph(tmp_path / "built.onnx", moving=True), *([real] if real.is_file() else [])]
    if (EXPORTS / "images.npz").is_file():  # the images the real export was made to detect things in
        picture = np.ascontiguousarray(np.load(EXPORTS / "images.npz")["rgb"][0][:, :, ::-1])
    else:
        picture = np.random.default_rng(5).integers(0, 255, (320, 320, 3), dtype=np.uint8)
    frame = cv2.resize(picture, (480, 270))  # 16:9: padded top and bottom
    for model in models:
        served_dir = tmp_path / model.stem
        served_dir.mkdir()
        shutil.copy(model, served_dir / "model.onnx")
        (served_dir / "trackcast-model.json").write_text(json.dumps({"score_thresh": 0.3}))
        served = inference.model_fn(str(served_dir))
        local = OnnxModel(model, postprocess=PostProcess(0.3))
        assert served.fmt.family == "yolov8" and served.class_names == local.class_names
        assert (served.class_names or [])[:3] == ["thing0", "thing1", "thing2"]
        prepared = local.spec.prepare(frame)
        assert prepared.pad_y > 0
        status, body, _ = inference.handle(served, wire.encode_batch([prepared], "raw"), wire.CONTENT_TYPE)
        assert status == 200
        (got,) = wire.decode_result(body, 1)
        (want,) = local.detect([prepared])
        assert len(want) >= 4 and np.abs(np.asarray(got) - want).max() < 1e-3, model.name
