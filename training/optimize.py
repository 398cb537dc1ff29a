"""Smaller, faster models for the edge: ONNX Runtime graph optimisation and INT8 static quantisation.

``trackcast model optimize M.onnx --calibrate CLIP [CLIP ...] [--out DIR]`` writes

- ``<stem>.opt.onnx``: the graph after ONNX Runtime's extended optimisations (constant folding,
  Conv+activation fusion, ...), saved so a session loads it without redoing them (it may hold
  ONNX Runtime's own fused operators: for ONNX Runtime on the CPU, not for other runtimes);
- ``<stem>.int8.onnx``: 8-bit weights and activations in the convolutions (QDQ format, per-channel
  weights; the first convolutions and the prediction layers stay in float: ``float_convs``), calibrated on frames of the clips as the service
  prepares them (each activation's 0.001th..99.999th percentile: min/max let one frame's outliers
  take the range, and YOLOX-nano then lost every person on the shared clips);

both made to take batches where the original has a baked batch of 1 (``make_batchable``). Then it
measures, side by side on this machine: ms/frame of the float and the INT8 model at batch 1 and 4;
the INT8 detections' COCO AP against the float model's confident detections (score >= 0.3) as ground
truth; and, per clip, tracking agreement: ByteTrack on the INT8 detections scored (MOTA, IDF1, HOTA)
against ByteTrack on the float ones.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.errors import TrainingError

F64 = npt.NDArray[np.float64]
GT_SCORE = 0.3
#: Only convolutions (and matrix products) run in INT8; the rest of the graph (activations, the
#: head's concatenation of boxes, objectness and class scores) stays in float.
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]


class OptimizeError(TrainingError):
    """A model or clip that cannot be optimised or measured (what and where)."""


@dataclass
class OptimizeReport:
    model: str
    optimized: str
    int8: str
    sizes_mb: dict[str, float]
    ms_per_frame: dict[str, dict[int, float]]  # variant -> batch -> ms/frame
    ap: dict[str, float]  # AP, AP50, AP75, AR100 of INT8 against float
    tracking: dict[str, dict[str, float]]  # clip -> MOTA, IDF1, HOTA of INT8 tracks against float tracks
    calibration_frames: int
    eval_frames: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        lines = [f"{'model':<10}{'size MB':>9}" + "".join(f"{f'b{b} ms/frame':>14}" for b in (1, 4))]
        for v in ("float", "int8"):
            ms = self.ms_per_frame.get(v, {})
            lines.append(
                f"{v:<10}{self.sizes_mb[v]:>9.2f}"
                + "".join(f"{ms.get(b, float('nan')):>14.2f}" for b in (1, 4))
            )
        a = self.ap
        lines.append(f"INT8 vs float detections (score >= {GT_SCORE}): AP {a['AP']:.3f}  AP50 {a['AP50']:.3f}  "
                     f"AP75 {a['AP75']:.3f}  AR100 {a['AR100']:.3f}")  # fmt: skip
        for clip, t in self.tracking.items():
            lines.append(f"tracking {clip}: MOTA {t['MOTA']:.3f}  IDF1 {t['IDF1']:.3f}  HOTA {t['HOTA']:.3f} "
                         "(INT8 tracks against float tracks)")  # fmt: skip
        return "\n".join(lines + self.notes)


def _has_vnni() -> bool:
    """Whether this CPU has VNNI (8-bit dot products without 16-bit intermediate sums).

    Without it (AVX2, AVX-512 before Cascade Lake), ONNX Runtime's u8 x s8 convolutions add pairs
    of products in 16 bits, which saturate: the INT8 YOLOX-nano then scores the people of the
    shared clip as birds. uint8 weights (u8 x u8 kernels) do not have that problem.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def head_convs(model: Any) -> list[str]:
    """The convolutions nearest the outputs (the prediction layers): walking back from each output
    through non-convolution nodes, the first convolutions met. They stay in float: they make the
    boxes and scores themselves, and are a small part of the work."""
    producer = {o: n for n in model.graph.node for o in n.output}
    todo = [o.name for o in model.graph.output]
    seen: set[int] = set()
    found: list[str] = []
    while todo:
        name = todo.pop()
        node = producer.get(name)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            found.append(node.name)
        else:
            todo.extend(node.input)
    return found


def float_convs(model: Any, first: int) -> list[str]:
    """The convolutions that stay in float: the first ``first`` (in graph order) and the prediction
    layers. On the shared clips, YOLOX-nano's INT8 detections against its float ones (AP50, 60
    frames each) were 0.84 / 0.06 (plaza / futsal) with only the prediction layers in float, 0.98
    / 0.57 with the first 4 convolutions too and 0.99 / 0.89 with the first 12: the early layers
    carry the fine detail small players are found by."""
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    return sorted(set(convs[:first]) | set(head_convs(model)))


class _Frames:
    """Calibration tensors for ``quantize_static`` (its CalibrationDataReader protocol)."""

    def __init__(self, name: str, tensors: list[npt.NDArray[Any]]) -> None:
        self.name = name
        self.items = iter(tensors)

    def get_next(self) -> dict[str, npt.NDArray[Any]] | None:
        x = next(self.items, None)
        return None if x is None else {self.name: x}


def _spread(n_total: int, n: int) -> set[int]:
    return {int(i) + 1 for i in np.linspace(0, n_total - 1, num=min(n, n_total))}


def _frames(clip: str, spec: Any, limit: int | None) -> list[Any]:
    from service.errors import SourceError
    from service.media.video import iter_prepared

    try:
        return list(iter_prepared(clip, spec, limit))
    except SourceError as exc:
        raise OptimizeError(f"--calibrate {clip}: {exc}") from exc


def _time(model: Any, frames: list[Any], batch: int, repeats: int) -> float:
    """Median ms/frame of ``repeats`` runs of a ``batch``-frame batch (after a warm-up)."""
    images = np.stack([f.image for f in frames[:batch]])
    for _ in range(2):
        model.run_outputs(images)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.run_outputs(images)
        runs.append((time.perf_counter() - t0) * 1000 / batch)
    return statistics.median(runs)


def _detect_all(model: Any, frames: list[Any], batch: int = 4) -> list[F64]:
    out: list[F64] = []
    for i in range(0, len(frames), batch):
        out += model.detect(frames[i : i + batch])
    return out


def _track(dets: list[F64], fps: float) -> F64:
    from tracker import ByteTracker, TrackerConfig

    bt = ByteTracker(TrackerConfig(frame_rate=fps))
    rows = []
    for f, d in enumerate(dets, start=1):
        t = bt.update(d, frame_index=f)
        for tid, (x, y, w, h), s in zip(t.ids.tolist(), t.tlwh.tolist(), t.scores.tolist(), strict=True):
            rows.append([f, tid, x, y, w, h, s, -1, -1, -1])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 10)


def _ap(float_dets: list[list[F64]], int8_dets: list[list[F64]], names: list[str] | None) -> dict[str, float]:
    from training.detection_eval import GroundTruth, evaluate

    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    classes: set[int] = set()
    for clip_f, clip_q in zip(float_dets, int8_dets, strict=True):
        for ref, got in zip(clip_f, clip_q, strict=True):
            img = len(images) + 1
            images.append({"id": img})
            for x1, y1, x2, y2, s, c in ref.tolist():
                if s >= GT_SCORE:
                    anns.append({"id": len(anns) + 1, "image_id": img, "category_id": int(c) + 1,
                                 "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})  # fmt: skip
                    classes.add(int(c))
            for x1, y1, x2, y2, s, c in got.tolist():
                results.append(
                    {
                        "image_id": img,
                        "category_id": int(c) + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": s,
                    }
                )
    cats = [{"id": c + 1, "name": names[c] if names and c < len(names) else str(c)} for c in sorted(classes)]
    keep = {c + 1 for c in classes}
    gt = GroundTruth({"images": images, "annotations": anns, "categories": cats})
    res = evaluate(gt, [r for r in results if r["category_id"] in keep])
    return {k: float(res[k]) for k in ("AP", "AP50", "AP75", "AR100")}


def optimize(
    model_path: str | Path,
    clips: Sequence[str],
    out_dir: str | Path | None = None,
    calibration_frames: int = 64,
    eval_frames: int | None = None,
    per_channel: bool = True,
    repeats: int = 20,
    weights: str | None = None,
    keep_float: int = 12,
    load: Callable[..., Any] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> OptimizeReport:
    """Write the optimised and INT8 models next to the model (or in ``out_dir``) and measure them."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from detector_client.errors import DetectorError
    from detector_client.onnx_backend import OnnxModel, make_batchable

    load = load or (lambda p: OnnxModel(p, providers=["cpu"]))
    src = Path(model_path)
    if not clips:
        raise OptimizeError("--calibrate: give at least one clip to calibrate on")
    try:
        ref = load(src)
    except DetectorError as exc:
        raise OptimizeError(str(exc)) from exc
    out = Path(out_dir) if out_dir else src.parent
    out.mkdir(parents=True, exist_ok=True)
    stem = src.stem
    base = out / f"{stem}.batch.onnx"
    proto = onnx.load(str(src))
    if ref.batch_fixed and ref.batch_mode == "batched":
        proto, _ = make_batchable(proto)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset < 13:  # per-channel QDQ (DequantizeLinear's axis) needs opset 13
        from onnx import version_converter

        proto = version_converter.convert_version(proto, 13)
    onnx.save(proto, str(base))
    log(f"calibrating on {calibration_frames} frames of {', '.join(clips)}")
    per_clip = [_frames(c, ref.spec, eval_frames) for c in clips]
    if not any(per_clip):
        raise OptimizeError(f"--calibrate {', '.join(clips)}: no frames decoded")
    calib = []
    for frames in per_clip:
        pick = _spread(len(frames), max(1, calibration_frames // len(clips)))
        calib += [ref.input_tensor(np.stack([f.image])) for f in frames if f.index in pick]
    opt = out / f"{stem}.opt.onnx"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(opt)
    so.log_severity_level = 3
    ort.InferenceSession(str(base), so, providers=["CPUExecutionProvider"])
    if weights is None:
        weights = "int8" if _has_vnni() else "uint8"
    pre = out / f"{stem}.pre.onnx"
    int8 = out / f"{stem}.int8.onnx"
    wtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[weights]
    try:
        quant_pre_process(str(base), str(pre), skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its progress
            quantize_static(str(pre), str(int8), _Frames(ref.input_name, calib), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=wtype, per_channel=per_channel,
                            calibrate_method=CalibrationMethod.Percentile, op_types_to_quantize=QUANTIZED_OPS,
                            nodes_to_exclude=float_convs(onnx.load(str(pre)), keep_float))  # fmt: skip
    except Exception as exc:
        raise OptimizeError(f"{src}: INT8 quantisation failed ({type(exc).__name__}: {exc})") from exc
    finally:
        pre.unlink(missing_ok=True)
        base.unlink(missing_ok=True)
    for extra in out.glob(f"{stem}.pre.onnx*"):
        extra.unlink()
    try:
        q = load(int8)
    except DetectorError as exc:
        raise OptimizeError(f"the INT8 model does not load back: {exc}") from exc
    log("timing float and INT8 at batch 1 and 4")
    sample = next(f for f in per_clip if len(f) >= 4)
    ms = {
        name: {b: _time(m, sample, b, repeats) for b in (1, 4)} for name, m in (("float", ref), ("int8", q))
    }
    log("detecting and tracking every evaluation frame with both models")
    float_dets = [_detect_all(ref, frames) for frames in per_clip]
    int8_dets = [_detect_all(q, frames) for frames in per_clip]
    tracking = {}
    from tracker.evaluation import evaluate as mot_evaluate

    for clip, fd, qd in zip(clips, float_dets, int8_dets, strict=True):
        fps = 30.0
        m = mot_evaluate(_track(fd, fps), _track(qd, fps))
        tracking[Path(clip).name] = {"MOTA": m.MOTA, "IDF1": m.IDF1, "HOTA": m.HOTA}
    notes = [
        f"activations uint8 (calibrated: 99.999th percentile), weights {weights}"
        f"{' (this CPU has no VNNI)' if weights == 'uint8' else ''}; the first {keep_float} "
        "convolutions and the prediction layers kept in float"
    ]
    if ref.batch_mode != "batched":
        notes.append(f"the model runs frame by frame ({ref.batch_note}): batch 4 is four runs")
    return OptimizeReport(
        str(src), str(opt), str(int8),
        {"float": src.stat().st_size / 1e6, "optimized": opt.stat().st_size / 1e6, "int8": int8.stat().st_size / 1e6},
        ms, _ap(float_dets, int8_dets, ref.class_names), tracking, len(calib), sum(len(f) for f in per_clip), notes,
    )  # fmt: skip
