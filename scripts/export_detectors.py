"""Export real detector architectures to ONNX with their frameworks, and record their own outputs.

Opt-in (``make detector-exports``): it needs PyTorch, torchvision and Ultralytics, several GB with
the CUDA libraries the registry's PyTorch pulls in, so it runs in its own ``.venv-export`` and
never in CI. What it writes (by default into ``../shared/data/detectors``, test data outside the
repository; ``$TRACKCAST_DETECTOR_EXPORTS`` where the tests should look elsewhere) is decoded by
``tests/test_formats.py`` wherever it is found:

- ``*.onnx``: the frameworks' own exports of the real architectures with random weights, kept small
  (Ultralytics YOLOv8 and YOLO11 at a width of 1/16 from the packaged model YAMLs, YOLOv8 also
  exported with ``nms=True``; torchvision Faster R-CNN and RetinaNet with a two-layer backbone);
- ``images.npz``: the test images (synthetic: gradients and shapes, at the models' input size);
- ``<model>.json``: what the framework itself makes of those images, after its NMS, in input
  pixels: Ultralytics' ``non_max_suppression`` on the ONNX Runtime output of the same graph (dense
  heads); the graph's own rows for end-to-end exports (NMS inside the graph), whose agreement with
  the PyTorch model and its NMS on the same images the script prints.

Usage: ``.venv-export/bin/python scripts/export_detectors.py [OUT_DIR]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 320
SCORE = 0.25
IOU = 0.45


def images() -> np.ndarray:
    """Three RGB uint8 images, [3, SIZE, SIZE, 3]: gradients with rectangles and discs."""
    import cv2

    rng = np.random.default_rng(7)
    out = []
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for k in range(3):
        img = np.stack([(xx * (k + 1)) % 256, (yy * 2) % 256, ((xx + yy) // 2) % 256], axis=2).astype(
            np.uint8
        )
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, SIZE - 60, 2))
            w, h = (int(v) for v in rng.integers(20, 90, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
            else:
                cv2.circle(img, (x + w // 2, y + h // 2), max(w, h) // 2, colour, -1)
        out.append(img)
    return np.stack(out)


def tiny_yaml(name: str) -> dict[str, Any]:
    """An Ultralytics model YAML with one extra-small scale (same layers, 1/16 of the width)."""
    import ultralytics
    import yaml

    base = Path(ultralytics.__file__).parent / "cfg" / "models"
    path = {"yolov8": base / "v8" / "yolov8.yaml", "yolo11": base / "11" / "yolo11.yaml"}[name]
    cfg = yaml.safe_load(path.read_text())
    depth, _width, max_ch = cfg["scales"]["n"]
    cfg["scales"] = {"n": [depth, 0.0625, max_ch]}
    cfg["nc"] = 6
    return cfg


stats: list[str] = []


def _common(a: np.ndarray, b: np.ndarray, tol: float = 1e-3) -> int:
    """How many rows of ``a`` have a row of ``b`` (same class) within ``tol`` everywhere."""
    n = 0
    for r in a:
        d = np.abs(b[:, :5] - r[:5]).max(axis=1) if len(b) else np.array([np.inf])
        n += int(((d <= tol) & (b[:, 5] == r[5])).any()) if len(b) else 0
    return n


def ultralytics_exports(out: Path, imgs: np.ndarray) -> list[str]:
    import tempfile

    import onnxruntime as ort
    import torch
    import torchvision  # noqa: F401  (Ultralytics' NMS uses torchvision's when it is imported, as in predict)
    import yaml
    from ultralytics import YOLO
    from ultralytics.utils.nms import non_max_suppression

    names = []
    for arch in ("yolov8", "yolo11"):
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / f"{arch}n.yaml"
            cfg.write_text(yaml.safe_dump(tiny_yaml(arch)))
            y = YOLO(str(cfg))
        model = y.model
        for seq in model.model[-1].cv3:  # class logits: random so that boxes pass, scores vary
            seq[-1].bias.data = torch.randn_like(seq[-1].bias.data)
            seq[-1].weight.data = torch.randn_like(seq[-1].weight.data) * 0.3
        model.names = {i: f"thing{i}" for i in range(6)}
        for nms in (False, True) if arch == "yolov8" else (False,):
            tag = f"{arch}{'_nms' if nms else ''}"
            f = Path(
                y.export(format="onnx", imgsz=SIZE, simplify=False, nms=nms, batch=1, conf=SCORE, iou=IOU)
            )
            target = out / f"{tag}.onnx"
            f.replace(target)
            x = imgs.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
            sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
            ref = []
            for i in range(len(x)):
                graph = sess.run(None, {sess.get_inputs()[0].name: x[i : i + 1]})[0]
                if nms:  # NMS is the graph's: its rows (past the padding) are the framework's answer
                    rows = graph[0][graph[0][:, 4] > 0]
                    with torch.no_grad():  # and how far that is from the PyTorch model and its NMS
                        pred = model.eval()(torch.from_numpy(x[i : i + 1]))
                    eager = non_max_suppression(
                        pred[0] if isinstance(pred, (list, tuple)) else pred, SCORE, IOU
                    )[0]
                    stats.append(f"{tag} image {i}: graph {len(rows)} boxes, PyTorch + NMS {len(eager)}, "
                                 f"{_common(rows, eager.numpy())} in common within 1e-3 px")  # fmt: skip
                else:  # the same graph's output, through the framework's NMS
                    rows = non_max_suppression(torch.from_numpy(graph), SCORE, IOU, max_det=300)[0].numpy()
                ref.append(rows.astype(float).round(6).tolist())
            (out / f"{tag}.json").write_text(json.dumps({"score": SCORE, "iou": IOU, "detections": ref}))
            names.append(tag)
    return names


def torchvision_exports(out: Path, imgs: np.ndarray) -> list[str]:
    import torch
    from torch import nn
    from torchvision.models.detection import FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    def backbone() -> nn.Module:
        b = nn.Sequential(nn.Conv2d(3, 16, 3, 4, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 4, 1), nn.ReLU())
        b.out_channels = 32  # type: ignore[assignment]
        return b

    torch.manual_seed(0)
    anchors = AnchorGenerator(sizes=((32, 64, 128),), aspect_ratios=((0.5, 1.0, 2.0),))
    frcnn = FasterRCNN(backbone(), num_classes=None, rpn_anchor_generator=anchors,
                       box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), box_head=TwoMLPHead(32 * 49, 64),
                       box_predictor=FastRCNNPredictor(64, 5), min_size=SIZE, max_size=SIZE,
                       box_score_thresh=0.05, box_detections_per_img=300)  # fmt: skip
    torch.manual_seed(1)
    retina = RetinaNet(backbone(), num_classes=5, anchor_generator=anchors, min_size=SIZE, max_size=SIZE,
                       score_thresh=0.05, detections_per_img=300)  # fmt: skip
    cls = retina.head.classification_head.cls_logits  # its prior (0.01) would pass no box
    cls.bias.data = torch.randn_like(cls.bias.data)
    cls.weight.data = torch.randn_like(cls.weight.data) * 3.0
    names = []
    # the output order of each model's result dict
    order = {"fasterrcnn": ["boxes", "labels", "scores"], "retinanet": ["boxes", "scores", "labels"]}
    for tag, model in (("fasterrcnn", frcnn), ("retinanet", retina)):
        model.eval()
        x = torch.from_numpy(imgs.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
        target = out / f"{tag}.onnx"
        torch.onnx.export(model, ([x[0]],), str(target), opset_version=17, input_names=["images"],
                          output_names=order[tag], dynamo=False,
                          dynamic_axes={"images": {1: "height", 2: "width"}})  # fmt: skip
        import onnxruntime as ort

        sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        ref = []
        with torch.no_grad():
            for i in range(len(x)):
                got = dict(zip(order[tag], sess.run(None, {"images": x[i].numpy()}), strict=True))
                rows = np.concatenate([got["boxes"], got["scores"][:, None], got["labels"][:, None]], 1)
                ref.append(rows.astype(float).round(6).tolist())  # the graph's own post-processing
                r = model([x[i]])[0]  # and the PyTorch model's, for comparison
                eager = torch.cat([r["boxes"], r["scores"][:, None], r["labels"][:, None].float()], 1).numpy()
                stats.append(f"{tag} image {i}: graph {len(rows)} boxes, PyTorch {len(eager)}, "
                             f"{_common(rows, eager)} in common within 1e-3 px")  # fmt: skip
        (out / f"{tag}.json").write_text(json.dumps({"score": 0.05, "iou": None, "detections": ref}))
        names.append(tag)
    return names


def main() -> int:
    out = Path(
        sys.argv[1]
        if len(sys.argv) > 1
        else Path(__file__).resolve().parents[2] / "shared" / "data" / "detectors"
    )
    out.mkdir(parents=True, exist_ok=True)
    imgs = images()
    np.savez_compressed(out / "images.npz", rgb=imgs)
    done = ultralytics_exports(out, imgs) + torchvision_exports(out, imgs)
    print("\n".join(stats))
    for tag in done:
        n = sum(len(d) for d in json.loads((out / f"{tag}.json").read_text())["detections"])
        print(f"{tag}: {(out / f'{tag}.onnx').stat().st_size / 1024:.0f} KiB, {n} reference detections")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
