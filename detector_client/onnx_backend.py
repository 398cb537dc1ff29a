"""Detection models on ONNX Runtime: TensorRT, CUDA or CPU, batched across frames.

``OnnxModel`` is the blocking core (also used by the SageMaker serving handler); ``OnnxDetector``
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

from detector_client.base import Detections, Detector, PreparedFrame, as_detections, stack_frames
from detector_client.errors import DetectorInputError, InferenceError, ModelLoadError
from detector_client.formats import (
    COCO_CLASSES,
    Decoder,
    TensorInfo,
    class_names_from_metadata,
    load_class_names,
    recognise,
    spec_for,
)
from detector_client.yolox import PostProcess, looks_raw, probe_frames

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
__all__ = ["OnnxDetector", "OnnxModel", "choose_providers", "make_batchable", "spec_for"]


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


def provider_options(
    providers: Sequence[str],
    tensorrt_cache_dir: str | os.PathLike[str] | None = None,
    tensorrt_fp16: bool = True,
) -> list[Any]:
    """Providers with their options: TensorRT builds its engine once and caches it on disk.

    Building a TensorRT engine takes from seconds to minutes; with the cache (engine and timing
    cache under ``tensorrt_cache_dir``, default ``$XDG_CACHE_HOME/trackcast/tensorrt``) a restart
    with the same model, GPU and TensorRT version loads it instead.
    """
    out: list[Any] = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            cache = Path(tensorrt_cache_dir) if tensorrt_cache_dir else default_tensorrt_cache()
            cache.mkdir(parents=True, exist_ok=True)
            out.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
                            "trt_fp16_enable": bool(tensorrt_fp16)}))  # fmt: skip
        else:
            out.append(p)
    return out


def default_tensorrt_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trackcast" / "tensorrt"


def tensor_infos(values: Sequence[Any]) -> list[TensorInfo]:
    """ONNX ValueInfos as ``TensorInfo`` (dims: int, symbolic name or None)."""
    from onnx import helper

    infos = []
    for v in values:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
        try:
            dtype = str(np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)))
        except Exception:
            dtype = f"onnx type {t.elem_type}"
        infos.append(TensorInfo(v.name, dims, dtype))
    return infos


class OnnxModel:
    """Blocking detection on ONNX Runtime; ``detect(frames)`` returns source-pixel boxes.

    The model's family (YOLOX, YOLOv5, YOLOv8/11, end-to-end with NMS, SSD) and preprocessing are
    recognised from its inputs, outputs and metadata (``detector_client.formats``), or set.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        preprocess: str = "auto",
        providers: Sequence[str] | None = None,
        postprocess: PostProcess | None = None,
        batching: bool = True,
        output: Literal["auto", "raw", "decoded"] = "auto",
        io_binding: bool | None = None,
        intra_op_threads: int | None = None,
        format: str = "auto",
        input_size: tuple[int, int] | None = None,
        class_names: Sequence[str] | str | os.PathLike[str] | None = None,
        tensorrt_cache_dir: str | os.PathLike[str] | None = None,
        tensorrt_fp16: bool = True,
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
        self._inspect(model, format, preprocess, input_size)
        self.class_names = self._names(class_names, model)
        self.spec = self.fmt.spec()
        self.postprocess = postprocess or PostProcess()
        self.providers = choose_providers(providers)
        self._so = ort.SessionOptions()
        if intra_op_threads:
            self._so.intra_op_num_threads = intra_op_threads
        self._so.log_severity_level = 3
        self._provider_options = provider_options(self.providers, tensorrt_cache_dir, tensorrt_fp16)
        try:
            single = ort.InferenceSession(
                model.SerializeToString(), self._so, providers=self._provider_options
            )
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
        self.batch_note = "batching disabled" if batching else "batching off"
        if not self.fmt.batched_input:
            self.batch_note = "the model takes one image per run"
        elif batching:
            self._try_batching(model, single)
        self.raw = self.fmt.family == "yolox" and self._detect_raw(output)
        self.decoder = Decoder(self.fmt, raw=self.raw)
        log.info(
            "loaded %s: %s (%s), %dx%d, %s classes, preprocess %s, %s (%s), providers %s",
            path.name, self.fmt.family, self.fmt.how, self.width, self.height, self.num_classes or "?",
            self.fmt.preprocess, self.batch_mode, self.batch_note, self.providers,
        )  # fmt: skip

    # ------------------------------------------------------------------ model inspection
    def _inspect(self, model: Any, family: str, preprocess: str, input_size: tuple[int, int] | None) -> None:
        g = model.graph
        inits = {i.name for i in g.initializer}
        inputs = tensor_infos([i for i in g.input if i.name not in inits])
        outputs = tensor_infos(list(g.output))
        self.metadata = {p.key: p.value for p in model.metadata_props}
        self.fmt = recognise(self.path, inputs, outputs, self.metadata, family, preprocess, input_size)
        self.input_name = self.fmt.input.name
        self.input_dtype = self.fmt.input.dtype
        self.height, self.width = self.fmt.height, self.fmt.width
        self.batch_fixed = self.fmt.batch_fixed is not None
        self.output_names = list(self.fmt.outputs)
        self.output_name = self.output_names[0]
        self.num_classes = self.fmt.num_classes

    def _names(self, given: Sequence[str] | str | os.PathLike[str] | None, model: Any) -> list[str] | None:
        if isinstance(given, (str, os.PathLike)):
            try:
                return load_class_names(given)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(self.path, str(exc)) from exc
        if given is not None:
            return list(given)
        names = class_names_from_metadata(self.metadata)
        if names is None and self.fmt.family == "yolox" and self.num_classes == len(COCO_CLASSES):
            names = list(COCO_CLASSES)  # YOLOX's and ByteTrack's exports are COCO models
        if names is not None and self.num_classes and len(names) < self.num_classes:
            log.warning("%s: %d class names for %d classes; the rest go by id", Path(self.path).name,
                        len(names), self.num_classes)  # fmt: skip
        return names

    def _try_batching(self, model: Any, single: Any) -> None:
        import onnxruntime as ort

        x = self.input_tensor(probe_frames(self.height, self.width))
        names = self.output_names
        try:
            refs = [single.run(names, {self.input_name: x[i : i + 1]}) for i in range(2)]
            if self.batch_fixed:
                bm, changed = make_batchable(model)
                # A graph that cannot take batches fails here (we then run frame by frame): nothing to log.
                quiet = ort.SessionOptions()
                quiet.log_severity_level = 4
                if self._so.intra_op_num_threads:
                    quiet.intra_op_num_threads = self._so.intra_op_num_threads
                trial = ort.InferenceSession(bm.SerializeToString(), quiet, providers=self._provider_options)
                got = trial.run(names, {self.input_name: x})
                sess = ort.InferenceSession(
                    bm.SerializeToString(), self._so, providers=self._provider_options
                )
                how = f"batch dimension made symbolic ({changed} Reshape targets)"
            else:
                sess, how = single, "model has a dynamic batch dimension"
                got = sess.run(names, {self.input_name: x})
        except Exception as exc:
            self.batch_note = f"batched graph failed ({type(exc).__name__}); running frame by frame"
            return
        exact = True
        for k in range(len(names)):
            ref = np.concatenate([r[k] for r in refs])
            if got[k].shape != ref.shape or not np.allclose(got[k], ref, rtol=1e-5, atol=1e-5):
                diff = float(np.abs(got[k] - ref).max()) if got[k].shape == ref.shape else float("nan")
                self.batch_note = (
                    f"batched outputs differ from per-frame (max diff {diff:g}); running frame by frame"
                )
                return
            exact = exact and bool(np.array_equal(got[k], ref))
        self.session = sess
        self.batch_mode = "batched"
        self.batch_note = f"{how}; verified {'bit-identical' if exact else 'equal within 1e-5'} to per-frame"

    def _detect_raw(self, output: str) -> bool:
        if output in ("raw", "decoded"):
            return output == "raw"
        return looks_raw(self.infer(probe_frames(self.height, self.width)[1:])[0])

    # ------------------------------------------------------------------ inference
    def input_tensor(self, images: U8) -> npt.NDArray[Any]:
        """[N,H,W,3] uint8 -> the model's input: normalised float32/float16 NCHW, or uint8 NCHW."""
        if self.input_dtype == "uint8":
            return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        x = self.spec.to_tensor(images)
        return x.astype(np.float16) if self.input_dtype == "float16" else x

    def run_outputs(self, images: U8) -> list[list[npt.NDArray[Any]]]:
        """[N,H,W,3] uint8 letterboxed images -> per frame, the outputs ``decode`` reads."""
        if images.ndim != 4 or images.shape[1:] != (self.height, self.width, 3):
            raise DetectorInputError(
                f"model {Path(self.path).name} takes {self.width}x{self.height} frames, got {tuple(images.shape[1:3][::-1])}"
            )
        x = self.input_tensor(images)
        try:
            if self.batch_mode == "batched":
                outs = self._run(x)
                return [[o[i] for o in outs] for i in range(len(x))]
            if not self.fmt.batched_input:
                return [self._run(x[i]) for i in range(len(x))]
            return [[o[0] for o in self._run(x[i : i + 1])] for i in range(len(x))]
        except DetectorInputError:
            raise
        except Exception as exc:
            raise InferenceError(
                f"ONNX Runtime failed on {Path(self.path).name}: {type(exc).__name__}: {exc}"
            ) from exc

    def infer(self, images: U8) -> F32:
        """[N,H,W,3] uint8 letterboxed images -> the first output, [N, ...] (dense heads)."""
        return np.stack([o[0] for o in self.run_outputs(images)]).astype(np.float32, copy=False)

    def _run(self, x: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        if not self.io_binding:
            out: list[npt.NDArray[Any]] = self.session.run(self.output_names, {self.input_name: x})
            return out
        import onnxruntime as ort

        binding = self.session.io_binding()
        # The batch goes to the device once; the outputs come back to host memory for decoding.
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(x, self.device, 0))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        result: list[npt.NDArray[Any]] = binding.copy_outputs_to_cpu()
        return result

    def detect(self, frames: Sequence[PreparedFrame], postprocess: PostProcess | None = None) -> list[F64]:
        """Detections per frame (float64 [K,6], source pixels)."""
        if not frames:
            return []
        pp = postprocess or self.postprocess
        images = stack_frames(frames, self.spec, f"model {Path(self.path).name}")
        try:
            return self.decoder.frames(self.run_outputs(images), frames, pp)
        except (ValueError, IndexError) as exc:
            raise InferenceError(
                f"cannot decode the outputs of {Path(self.path).name} as {self.fmt.family}: {exc}"
            ) from exc


class OnnxDetector(Detector):
    """``OnnxModel`` behind the async interface; batches are split into ``max_batch`` chunks."""

    name = "onnx"

    def __init__(self, core: OnnxModel, max_batch: int = 8, max_in_flight: int | None = None) -> None:
        if max_in_flight is None:
            # CPU inference already uses every core: one batch at a time. A GPU overlaps two.
            max_in_flight = 2 if core.device == "cuda" else 1
        if core.batch_mode != "batched":
            max_batch = 1
        super().__init__(core.spec, max_batch, max_in_flight)
        self.core = core
        self.class_names = core.class_names

    def detect_sync(self, frames: Sequence[PreparedFrame]) -> list[Detections]:
        res: list[Detections] = []
        for i in range(0, len(frames), self.max_batch):
            res.extend(as_detections(self.core.detect(frames[i : i + self.max_batch])))
        return res
