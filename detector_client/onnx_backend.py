"""YOLOX on ONNX Runtime: TensorRT, CUDA or CPU, batched across frames.

``OnnxYolox`` is the blocking core (also used by the SageMaker serving handler); ``OnnxDetector``
puts it behind the async ``Detector`` interface.

Batching: many exported YOLOX models have batch 1 baked into the graph (the input shape and
``Reshape`` targets like ``[1, 85, -1]``). At load time such a model is rewritten to take any batch
(Reshape targets start with 0, "copy this dimension"; input/output batch dims symbolic), then
checked: two different frames run as one batch must give the same outputs as two single runs. If
the rewrite fails or the outputs differ, the original model runs frame by frame
(``batch_mode`` says which, and ``batch_note`` why).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from detector_client.base import Detections, Detector, InputSpec, PreparedFrame, as_detections, stack_frames
from detector_client.errors import DetectorInputError, InferenceError, ModelLoadError
from detector_client.yolox import PostProcess, YoloxDecoder, anchor_count, looks_raw, probe_frames

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
Preprocess = Literal["yolox", "bytetrack"]


def spec_for(height: int, width: int, preprocess: Preprocess) -> InputSpec:
    """Input spec of a YOLOX export: upstream (BGR 0..255) or ByteTrack (RGB, /255, mean/std)."""
    if preprocess == "bytetrack":
        return InputSpec(height, width, channels="rgb", normalize="imagenet")
    if preprocess == "yolox":
        return InputSpec(height, width, channels="bgr", normalize="none")
    raise ValueError(f"preprocess must be 'yolox' or 'bytetrack', got {preprocess!r}")


def choose_providers(wanted: Sequence[str] | None) -> list[str]:
    """Providers to use: the wanted ones (aliases allowed) that are installed, in preference order."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if not wanted:
        chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    else:
        names = [PROVIDER_ALIASES.get(w.lower(), w) for w in wanted]
        unknown = [
            n for n in names if n not in PROVIDER_ALIASES.values() and not n.endswith("ExecutionProvider")
        ]
        if unknown:
            raise ValueError(f"unknown ONNX Runtime provider(s) {unknown}; use tensorrt, cuda or cpu")
        chosen = [n for n in PROVIDER_PREFERENCE if n in names and n in available]
        chosen += [n for n in names if n not in PROVIDER_PREFERENCE and n in available]
        if not chosen:
            raise ValueError(f"none of the providers {names} is installed here (available: {available})")
    if "CPUExecutionProvider" in available and "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")  # fallback for ops a GPU provider cannot run
    return chosen


def make_batchable(model: Any) -> tuple[Any, int]:
    """Copy of an ONNX model with its baked batch of 1 made symbolic; returns (model, reshapes changed)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {init.name: init for init in m.graph.initializer}
    changed = 0
    for node in m.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        init = inits[node.input[1]]
        shape = numpy_helper.to_array(init)
        if shape.ndim == 1 and shape.size >= 2 and shape[0] == 1:
            new = shape.copy()
            new[0] = 0  # "copy the input's dimension": the batch
            init.CopyFrom(numpy_helper.from_array(new, init.name))
            changed += 1
    for value in [*m.graph.input, *m.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    del m.graph.value_info[:]
    return m, changed


class OnnxYolox:
    """Blocking YOLOX inference on ONNX Runtime; ``detect(frames)`` returns source-pixel boxes."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        preprocess: Preprocess = "yolox",
        providers: Sequence[str] | None = None,
        postprocess: PostProcess | None = None,
        batching: bool = True,
        output: Literal["auto", "raw", "decoded"] = "auto",
        io_binding: bool | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        import onnx
        import onnxruntime as ort

        path = Path(model_path)
        self.path = str(path)
        if not path.is_file():
            raise ModelLoadError(self.path, "no such file")
        try:
            model = onnx.load(str(path))
        except Exception as exc:
            raise ModelLoadError(
                self.path, f"not a readable ONNX model ({type(exc).__name__}: {exc})"
            ) from exc
        self._inspect(model)
        self.spec = spec_for(self.height, self.width, preprocess)
        self.postprocess = postprocess or PostProcess()
        self.providers = choose_providers(providers)
        self._so = ort.SessionOptions()
        if intra_op_threads:
            self._so.intra_op_num_threads = intra_op_threads
        self._so.log_severity_level = 3
        try:
            single = ort.InferenceSession(model.SerializeToString(), self._so, providers=self.providers)
        except Exception as exc:
            raise ModelLoadError(
                self.path, f"ONNX Runtime cannot load it ({type(exc).__name__}: {exc})"
            ) from exc
        self.providers = single.get_providers()
        gpu = self.providers[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
        self.device = "cuda" if gpu else "cpu"
        self.io_binding = gpu if io_binding is None else io_binding
        self.session = single
        self.batch_mode = "per-frame"
        self.batch_note = "batching disabled"
        if batching:
            self._try_batching(model, single)
        self.raw = self._detect_raw(output)
        self.decoder = YoloxDecoder(self.height, self.width, raw=self.raw)
        log.info(
            "loaded %s: %dx%d, %d classes, %s outputs, %s (%s), providers %s",
            path.name, self.width, self.height, self.num_classes, "raw" if self.raw else "decoded",
            self.batch_mode, self.batch_note, self.providers,
        )  # fmt: skip

    # ------------------------------------------------------------------ model inspection
    def _inspect(self, model: Any) -> None:
        g = model.graph
        inits = {i.name for i in g.initializer}
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1:
            raise ModelLoadError(self.path, f"not a YOLOX model: expected 1 image input, found {len(inputs)}")
        inp = inputs[0]
        dims = [
            d.dim_value if d.HasField("dim_value") else d.dim_param for d in inp.type.tensor_type.shape.dim
        ]
        if len(dims) != 4 or dims[1] != 3:
            raise ModelLoadError(
                self.path, f"not a YOLOX model: input {inp.name!r} has shape {dims}, expected [N,3,H,W]"
            )
        if not isinstance(dims[2], int) or not isinstance(dims[3], int) or dims[2] <= 0 or dims[3] <= 0:
            raise ModelLoadError(
                self.path, f"input {inp.name!r} has no fixed height/width ({dims}); export with a fixed size"
            )
        self.input_name = inp.name
        self.height, self.width = int(dims[2]), int(dims[3])
        self.batch_fixed = isinstance(dims[0], int) and dims[0] > 0
        out = g.output[0]
        odims = [
            d.dim_value if d.HasField("dim_value") else d.dim_param for d in out.type.tensor_type.shape.dim
        ]
        want = anchor_count(self.height, self.width)
        if len(odims) != 3 or not isinstance(odims[2], int) or odims[2] < 6:
            raise ModelLoadError(
                self.path,
                f"not a YOLOX model: output {out.name!r} has shape {odims}, expected [N,anchors,5+classes]",
            )
        if isinstance(odims[1], int) and odims[1] != want:
            raise ModelLoadError(
                self.path,
                f"not a YOLOX model: {odims[1]} anchors, but a {self.width}x{self.height} YOLOX head has {want} (strides 8/16/32)",
            )
        self.output_name = out.name
        self.num_classes = int(odims[2]) - 5

    def _try_batching(self, model: Any, single: Any) -> None:
        import onnxruntime as ort

        probe = probe_frames(self.height, self.width)
        x = self.spec.to_tensor(probe)
        try:
            ref = np.concatenate(
                [single.run([self.output_name], {self.input_name: x[i : i + 1]})[0] for i in range(2)]
            )
            if self.batch_fixed:
                bm, changed = make_batchable(model)
                sess = ort.InferenceSession(bm.SerializeToString(), self._so, providers=self.providers)
                how = f"batch dimension made symbolic ({changed} Reshape targets)"
            else:
                sess, how = single, "model has a dynamic batch dimension"
            got = sess.run([self.output_name], {self.input_name: x})[0]
        except Exception as exc:
            self.batch_note = f"batched graph failed ({type(exc).__name__}); running frame by frame"
            return
        if got.shape != ref.shape or not np.allclose(got, ref, rtol=1e-5, atol=1e-5):
            diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("nan")
            self.batch_note = (
                f"batched outputs differ from per-frame (max diff {diff:g}); running frame by frame"
            )
            return
        self.session = sess
        self.batch_mode = "batched"
        exact = np.array_equal(got, ref)
        self.batch_note = f"{how}; verified {'bit-identical' if exact else 'equal within 1e-5'} to per-frame"

    def _detect_raw(self, output: str) -> bool:
        if output in ("raw", "decoded"):
            return output == "raw"
        return looks_raw(self.infer(probe_frames(self.height, self.width)[1:])[0])

    # ------------------------------------------------------------------ inference
    def infer(self, images: U8) -> F32:
        """[N,H,W,3] uint8 letterboxed images -> [N, anchors, 5+classes] head outputs."""
        if images.ndim != 4 or images.shape[1:] != (self.height, self.width, 3):
            raise DetectorInputError(
                f"model {Path(self.path).name} takes {self.width}x{self.height} frames, got {tuple(images.shape[1:3][::-1])}"
            )
        x = self.spec.to_tensor(images)
        try:
            if self.batch_mode == "batched":
                return self._run(x)
            return np.concatenate([self._run(x[i : i + 1]) for i in range(len(x))])
        except DetectorInputError:
            raise
        except Exception as exc:
            raise InferenceError(
                f"ONNX Runtime failed on {Path(self.path).name}: {type(exc).__name__}: {exc}"
            ) from exc

    def _run(self, x: F32) -> F32:
        if not self.io_binding:
            out: F32 = self.session.run([self.output_name], {self.input_name: x})[0]
            return out
        import onnxruntime as ort

        binding = self.session.io_binding()
        # The batch goes to the device once; the output comes back to host memory for decoding.
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(x, self.device, 0))
        binding.bind_output(self.output_name, "cpu")
        self.session.run_with_iobinding(binding)
        result: F32 = binding.copy_outputs_to_cpu()[0]
        return result

    def detect(self, frames: Sequence[PreparedFrame], postprocess: PostProcess | None = None) -> list[F64]:
        """Detections per frame (float64 [K,6], source pixels)."""
        if not frames:
            return []
        pp = postprocess or self.postprocess
        images = stack_frames(frames, self.spec, f"model {Path(self.path).name}")
        return self.decoder.frames(self.infer(images), frames, pp)


class OnnxDetector(Detector):
    """``OnnxYolox`` behind the async interface; batches are split into ``max_batch`` chunks."""

    name = "onnx"

    def __init__(self, core: OnnxYolox, max_batch: int = 8, max_in_flight: int | None = None) -> None:
        if max_in_flight is None:
            # CPU inference already uses every core: one batch at a time. A GPU overlaps two.
            max_in_flight = 2 if core.device == "cuda" else 1
        if core.batch_mode != "batched":
            max_batch = 1
        super().__init__(core.spec, max_batch, max_in_flight)
        self.core = core

    def detect_sync(self, frames: Sequence[PreparedFrame]) -> list[Detections]:
        res: list[Detections] = []
        for i in range(0, len(frames), self.max_batch):
            res.extend(as_detections(self.core.detect(frames[i : i + self.max_batch])))
        return res
