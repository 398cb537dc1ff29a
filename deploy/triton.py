"""A Triton Inference Server model repository for a YOLOX ONNX model (``trackcast triton-repo``).

Writes ``<out>/<name>/config.pbtxt`` and ``<out>/<name>/1/model.onnx``. The model is the YOLOX
network with two changes, both checked against the original with ONNX Runtime before anything is
written (the same outputs on fixed probe frames, within 1e-4):

- its batch dimension is made symbolic where the export baked in 1, so Triton's dynamic batcher
  can merge the requests of many trackcast instances into one batch;
- it takes the letterboxed ``UINT8 [N,H,W,3]`` image trackcast prepares and normalises it in the
  graph (cast, NHWC to NCHW, and ByteTrack's mean/std where ``preprocess: bytetrack``), so a frame
  travels as 3 bytes a pixel instead of 12.

``config.pbtxt``: the ONNX Runtime backend, ``max_batch_size``, dynamic batching (preferred batch
sizes, queue delay), instances on the GPU (TensorRT FP16 through ONNX Runtime's TensorRT provider,
engines cached, CUDA as fallback) or the CPU. The detector client reads the model's metadata and
sends what it asks for; ``detector: {kind: oip, url: http://triton:8000, model: yolox}``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deploy.errors import DeployError

log = logging.getLogger(__name__)

Device = Literal["gpu", "cpu"]


@dataclass(frozen=True, slots=True)
class ModelRepository:
    root: Path
    name: str
    config: Path
    model: Path
    input_name: str
    output_name: str
    height: int
    width: int
    classes: int
    max_diff: float  # largest difference to the original model on the probe frames


def wrap_uint8_input(model: Any, preprocess: Literal["yolox", "bytetrack"], input_name: str = "image") -> Any:
    """A copy of a batchable YOLOX ONNX model that takes uint8 NHWC images and normalises them itself."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {i.name for i in g.initializer}
    [orig] = [i for i in g.input if i.name not in inits]
    dims = orig.type.tensor_type.shape.dim
    h, w = dims[2].dim_value, dims[3].dim_value
    new_input = helper.make_tensor_value_info(input_name, TensorProto.UINT8, ["batch", h, w, 3])
    nodes = [
        helper.make_node("Cast", [input_name], ["trackcast_f32"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["trackcast_f32"], ["trackcast_nchw"], perm=[0, 3, 1, 2]),
    ]
    last = "trackcast_nchw"
    if preprocess == "bytetrack":
        from detector_client.base import IMAGENET_MEAN, IMAGENET_STD

        mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1) * 255.0
        std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1) * 255.0
        g.initializer.extend([numpy_helper.from_array(mean, "trackcast_mean"),
                              numpy_helper.from_array(std, "trackcast_std")])  # fmt: skip
        nodes += [
            helper.make_node("Sub", [last, "trackcast_mean"], ["trackcast_centred"]),
            helper.make_node("Div", ["trackcast_centred", "trackcast_std"], [orig.name]),
        ]
    else:
        nodes.append(helper.make_node("Identity", [last], [orig.name]))
    old_nodes = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old_nodes)
    kept = [i for i in g.input if i.name != orig.name]
    del g.input[:]
    g.input.extend([new_input, *kept])
    return m


def config_pbtxt(
    name: str, input_name: str, output_name: str, height: int, width: int, outputs: tuple[int, int], *,
    max_batch: int, device: Device, instances: int, tensorrt: bool, fp16: bool, queue_delay_us: int,
    preferred: tuple[int, ...],
) -> str:  # fmt: skip
    """Triton's model configuration (protobuf text format) for the wrapped model."""
    anchors, cols = outputs
    prefs = ", ".join(str(p) for p in preferred if p <= max_batch) or str(max_batch)
    lines = [
        f'name: "{name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {max_batch}",
        f'input [ {{ name: "{input_name}" data_type: TYPE_UINT8 dims: [ {height}, {width}, 3 ] }} ]',
        f'output [ {{ name: "{output_name}" data_type: TYPE_FP32 dims: [ {anchors}, {cols} ] }} ]',
        f"dynamic_batching {{ preferred_batch_size: [ {prefs} ] max_queue_delay_microseconds: {queue_delay_us} }}",
        f"instance_group [ {{ count: {instances} kind: {'KIND_GPU' if device == 'gpu' else 'KIND_CPU'} }} ]",
    ]
    if device == "gpu" and tensorrt:
        lines += [
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
            '  name: "tensorrt"',
            f'  parameters {{ key: "precision_mode" value: "{"FP16" if fp16 else "FP32"}" }}',
            '  parameters { key: "max_workspace_size_bytes" value: "2147483648" }',
            '  parameters { key: "trt_engine_cache_enable" value: "1" }',
            '  parameters { key: "trt_engine_cache_path" value: "/tmp/trt-engines" }',
            "} ] } }",
        ]
    # warm up on load: the first request does not pay for TensorRT's engine build or CUDA's set-up
    lines.append(
        f'model_warmup [ {{ name: "zeros" batch_size: 1 inputs {{ key: "{input_name}" value: '
        f"{{ data_type: TYPE_UINT8 dims: [ {height}, {width}, 3 ] zero_data: true }} }} }} ]"
    )
    return "\n".join(lines) + "\n"


def write_model_repository(
    model_path: Path,
    out: Path,
    *,
    name: str = "yolox",
    preprocess: Literal["yolox", "bytetrack"] = "yolox",
    max_batch: int = 32,
    device: Device = "gpu",
    instances: int = 1,
    tensorrt: bool = True,
    fp16: bool = True,
    queue_delay_us: int = 2000,
    preferred: tuple[int, ...] = (4, 8, 16, 32),
) -> ModelRepository:
    """Build, check and write the repository; raises ``DeployError`` saying what is wrong."""
    import onnx
    import onnxruntime as ort

    from detector_client.errors import DetectorError
    from detector_client.onnx_backend import OnnxModel, make_batchable
    from detector_client.yolox import probe_frames

    if not 1 <= max_batch <= 1024:
        raise DeployError(f"max_batch must be 1..1024, got {max_batch}")
    if not name or "/" in name or name.startswith("."):
        raise DeployError(f"model name {name!r} cannot be a directory name")
    try:
        ref = OnnxModel(model_path, preprocess=preprocess, providers=["cpu"], batching=True, output="raw",
                        format="yolox")  # fmt: skip
    except (DetectorError, ValueError) as exc:
        raise DeployError(str(exc)) from exc
    assert ref.num_classes is not None  # a YOLOX head always says
    if ref.batch_mode != "batched":
        raise DeployError(f"{model_path}: cannot be made to take batches ({ref.batch_note})")
    model = onnx.load(str(model_path))
    if ref.batch_fixed:
        model, _ = make_batchable(model)
    wrapped = wrap_uint8_input(model, preprocess)
    try:
        onnx.checker.check_model(wrapped)
        sess = ort.InferenceSession(wrapped.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise DeployError(
            f"{model_path}: the wrapped model does not load ({type(exc).__name__}: {exc})"
        ) from exc
    probe = probe_frames(ref.height, ref.width)
    got = sess.run([ref.output_name], {"image": probe})[0]
    want = ref.infer(probe)
    max_diff = float(np.abs(got - want).max())
    if got.shape != want.shape or max_diff > 1e-4:
        raise DeployError(
            f"{model_path}: the wrapped model differs from the original (max diff {max_diff:g})"
        )
    model_dir = out / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    model_file = model_dir / "1" / "model.onnx"
    onnx.save(wrapped, str(model_file))
    cfg = model_dir / "config.pbtxt"
    text = config_pbtxt(name, "image", ref.output_name, ref.height, ref.width, (int(want.shape[1]), int(want.shape[2])),
                        max_batch=max_batch, device=device, instances=instances, tensorrt=tensorrt, fp16=fp16,
                        queue_delay_us=queue_delay_us, preferred=preferred)  # fmt: skip
    cfg.write_text(text)
    log.info("wrote %s (max diff to the original %.2g)", model_dir, max_diff)
    return ModelRepository(out, name, cfg, model_file, "image", ref.output_name, ref.height, ref.width,
                           ref.num_classes, max_diff)  # fmt: skip
