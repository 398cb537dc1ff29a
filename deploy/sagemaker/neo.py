"""SageMaker Neo: compile a detection model for an edge device (``trackcast deploy compile``).

Neo takes a ``.tar.gz`` holding the ONNX model in S3, the input's name and shape
(``DataInputConfig``), and a target: a device (``TargetDevice``: ``jetson_xavier``, ``rasp4b``,
``ml_c5``, ...) or a platform (``TargetPlatform``: OS, architecture, accelerator). The targets
accepted are the ones botocore's SageMaker service model lists, so a typo is caught here with the
valid names instead of by the service. A local ``.onnx`` is packed and uploaded under the output
prefix first. ``wait`` polls DescribeCompilationJob until the job ends and reports the compiled
artifact or the service's reason for failing.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.sagemaker.manage import Clients, check_role, explain_aws_error

TERMINAL = ("COMPLETED", "FAILED", "STOPPED")


def _enum(shape: str) -> list[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return list(model.shape_for(shape).enum)


def target_devices() -> list[str]:
    """Every ``TargetDevice`` Neo accepts (from botocore's service model)."""
    return _enum("TargetDevice")


def _split_s3(uri: str, what: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise DeployError(f"{what} must be an s3://bucket/prefix URI, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise DeployError(f"{what}: no bucket in {uri!r}")
    return bucket, key.rstrip("/")


def input_config(model: Path) -> dict[str, list[int]]:
    """``DataInputConfig`` of an ONNX model: its image input's name and shape, batch 1 where dynamic."""
    import onnx

    try:
        m = onnx.load(str(model), load_external_data=False)
    except Exception as exc:
        raise DeployError(f"{model}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    inits = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise DeployError(
            f"{model}: Neo needs the input shape of one image input, found {len(inputs)} inputs"
        )
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim]
    if any(d == 0 for d in dims[1:]):
        raise DeployError(f"{model}: input {inputs[0].name!r} has a dynamic size {dims}; give --input-shape")
    return {inputs[0].name: [d or 1 for d in dims]}


def pack(model: Path) -> bytes:
    """The ``.tar.gz`` Neo reads: the model file at the archive's root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(str(model), arcname=model.name)
    return buf.getvalue()


def compile_model(
    clients: Clients,
    job: str,
    model: str,
    role: str | None,
    output_s3: str,
    target_device: str | None = None,
    target_platform: dict[str, str] | None = None,
    input_shape: dict[str, list[int]] | None = None,
    max_runtime_s: int = 900,
    wait: bool = False,
    poll_s: float = 15.0,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Start a Neo compilation job (and with ``wait``, follow it to its end)."""
    if (target_device is None) == (target_platform is None):
        raise DeployError("give one target: --target-device, or --target-os/--target-arch (a platform)")
    if target_device is not None:
        devices = target_devices()
        if target_device not in devices:
            raise DeployError(
                f"unknown --target-device {target_device!r}; Neo's devices: {', '.join(devices)}"
            )
    else:
        assert target_platform is not None
        for key, shape in (("Os", "TargetPlatformOs"), ("Arch", "TargetPlatformArch"),
                           ("Accelerator", "TargetPlatformAccelerator")):  # fmt: skip
            if key in target_platform and target_platform[key] not in (valid := _enum(shape)):
                raise DeployError(
                    f"unknown target {key.lower()} {target_platform[key]!r}; one of {', '.join(valid)}"
                )
    out_bucket, out_prefix = _split_s3(output_s3, "--output")
    if model.startswith("s3://"):
        model_s3 = model
        if input_shape is None:
            raise DeployError("--model in S3: give --input-shape NAME=1,3,H,W (the model is not read here)")
    else:
        path = Path(model)
        if not path.is_file():
            raise DeployError(f"--model {path}: no such file")
        input_shape = input_shape or input_config(path)
        key = "/".join(p for p in (out_prefix, "source", f"{path.stem}.tar.gz") if p)
        try:
            clients("s3").put_object(Bucket=out_bucket, Key=key, Body=pack(path))
        except Exception as exc:
            raise explain_aws_error(exc, f"upload the model to bucket s3://{out_bucket}") from exc
        model_s3 = f"s3://{out_bucket}/{key}"
    output: dict[str, Any] = {"S3OutputLocation": f"s3://{out_bucket}/{out_prefix}".rstrip("/") + "/"}
    if target_device is not None:
        output["TargetDevice"] = target_device
    else:
        output["TargetPlatform"] = target_platform
    sm = clients("sagemaker")
    try:
        arn = sm.create_compilation_job(
            CompilationJobName=job,
            RoleArn=check_role(role),
            InputConfig={"S3Uri": model_s3, "DataInputConfig": json.dumps(input_shape), "Framework": "ONNX"},
            OutputConfig=output,
            StoppingCondition={"MaxRuntimeInSeconds": int(max_runtime_s)},
            Tags=[{"Key": "trackcast:job", "Value": job}],
        )["CompilationJobArn"]
    except DeployError:
        raise
    except Exception as exc:
        raise explain_aws_error(exc, f"create compilation job {job}") from exc
    res: dict[str, Any] = {"job": job, "arn": arn, "model": model_s3, "input": input_shape, "output": output}
    if not wait:
        return res
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            d = sm.describe_compilation_job(CompilationJobName=job)
        except Exception as exc:
            raise explain_aws_error(exc, f"describe compilation job {job}") from exc
        status = d.get("CompilationJobStatus", "")
        if status in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise DeployError(f"compilation job {job} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)
    res["status"] = status
    if status != "COMPLETED":
        raise DeployError(f"compilation job {job} {status}: {d.get('FailureReason', 'no reason given')}")
    res["artifact"] = d.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    return res
