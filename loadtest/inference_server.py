"""A real NVIDIA Triton Inference Server on this machine, serving a model repository's ONNX models.

Runs in its own venv (``make .venv-triton``: PyPI's ``nvidia-pytriton``, which ships the Triton
server binaries, and ONNX Runtime); it imports nothing from trackcast. Triton's own ONNX Runtime
backend is not in that wheel, so each model of the repository runs in ONNX Runtime (CPU) behind
Triton's Python backend; everything else is Triton's: its HTTP/gRPC Open Inference Protocol
endpoints, metadata, dynamic batcher, errors and Prometheus metrics. Each ``config.pbtxt`` is parsed
with Triton's own schema (``model_config.proto`` from tritonclient), and the server is configured
from it: inputs, outputs, ``max_batch_size``, the dynamic batcher and the instance count.

``--faults`` adds three models next to each one, for the client's failure tests: ``<name>-slow``
(answers after ``--slow-s`` seconds), ``<name>-broken`` (the model raises: a 500) and
``<name>-garbage`` (an output of the wrong shape). ``--fake-ms`` makes every model a fixed-latency
stand-in for a GPU (load tests of the instances, not of this machine's CPU inference).

    .venv-triton/bin/python loadtest/inference_server.py --repo REPO --http-port 8000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DTYPES = {"TYPE_UINT8": np.uint8, "TYPE_FP32": np.float32, "TYPE_FP16": np.float16}


def load_config(path: Path) -> Any:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per model instance")
    p.add_argument("--faults", action="store_true")
    p.add_argument("--slow-s", type=float, default=3.0)
    p.add_argument("--workspace", type=Path, default=None)
    p.add_argument(
        "--fake-ms",
        type=float,
        default=None,
        help="a GPU stand-in for load tests: answer each batch after this many ms with the head output "
        "of the first frame ever sent (so the same boxes on every frame), not running the model",
    )
    a = p.parse_args(argv)

    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    models = []
    for cfg_path in sorted(a.repo.glob("*/config.pbtxt")):
        cfg = load_config(cfg_path)
        onnx_file = cfg_path.parent / "1" / "model.onnx"
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.log_severity_level = 3
        count = max(1, sum(g.count or 1 for g in cfg.instance_group) or 1)
        sessions = [
            ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"]) for _ in range(count)
        ]
        models.append((cfg, sessions))
    if not models:
        print(f"inference_server: no */config.pbtxt under {a.repo}", file=sys.stderr)
        return 2

    def make(sess: Any, in_name: str, out_name: str, mode: str) -> Any:
        cache: dict[str, Any] = {"batches": 0, "out": None}

        @batch  # type: ignore[untyped-decorator]
        def infer(**inputs: Any) -> dict[str, Any]:
            x = inputs[in_name]
            if mode == "broken":
                raise RuntimeError("this model is broken on purpose")
            if mode == "slow":
                time.sleep(a.slow_s)
            if a.fake_ms is not None:
                # the model runs on one frame of every 100th batch (the boxes stay real and move on
                # now and then); every batch is answered after fake_ms
                if cache["batches"] % 100 == 0:
                    cache["out"] = sess.run([out_name], {in_name: x[:1]})[0]
                cache["batches"] += 1
                time.sleep(a.fake_ms / 1000)
                return {out_name: np.repeat(cache["out"], len(x), axis=0)}
            out = sess.run([out_name], {in_name: x})[0]
            if mode == "garbage":
                out = out[:, :10]
            return {out_name: out}

        return infer

    kwargs: dict[str, Any] = {"workspace": str(a.workspace)} if a.workspace else {}
    config = TritonConfig(http_port=a.http_port, grpc_port=a.grpc_port, metrics_port=a.metrics_port)
    with Triton(config=config, **kwargs) as triton:
        for cfg, sessions in models:
            [inp] = cfg.input
            [out] = cfg.output
            db = cfg.dynamic_batching
            batcher = DynamicBatcher(
                max_queue_delay_microseconds=int(db.max_queue_delay_microseconds),
                preferred_batch_size=list(db.preferred_batch_size) or None,
            ) if cfg.HasField("dynamic_batching") else None  # fmt: skip
            modes = [""] + (["slow", "broken", "garbage"] if a.faults else [])
            for mode in modes:
                triton.bind(
                    model_name=cfg.name + (f"-{mode}" if mode else ""),
                    infer_func=[make(s, inp.name, out.name, mode) for s in sessions],
                    inputs=[Tensor(name=inp.name, dtype=DTYPES[model_config_name(inp.data_type)], shape=tuple(inp.dims))],
                    outputs=[Tensor(name=out.name, dtype=DTYPES[model_config_name(out.data_type)], shape=(-1, int(out.dims[-1])))],
                    config=ModelConfig(max_batch_size=int(cfg.max_batch_size), batcher=batcher),
                    strict=False,
                )  # fmt: skip
        print(f"inference_server: serving {[c.name for c, _ in models]} on :{a.http_port}", flush=True)
        triton.serve()
    return 0


def model_config_name(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return str(model_config_pb2.DataType.Name(value))


if __name__ == "__main__":
    sys.exit(main())
