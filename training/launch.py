"""SageMaker training and tuning jobs for a YOLOX detector: ``trackcast train launch|tune``.

Written against boto3 directly (``CreateTrainingJob``, ``CreateHyperParameterTuningJob``): the
request is a plain dict that the tests read back with ``Describe*`` calls against moto, and no
SageMaker SDK is needed at run time. The training image is bring-your-own: any YOLOX trainer that

- reads the channels under ``/opt/ml/input/data/<channel>/`` (by default ``train``, ``val`` and
  ``annotations``, the COCO tree ``convert mot-to-coco`` writes: ``<split>/<seq>/img1/*.jpg`` and
  ``annotations/<split>.json``),
- takes the hyperparameters from ``/opt/ml/input/config/hyperparameters.json`` (``max_epoch``,
  ``batch_size``, ``basic_lr_per_img``, ``weight_decay``, ``input_size``, ``num_classes``, ``exp``
  by default; ``--hp KEY=VALUE`` adds or overrides any),
- writes YOLOX's usual log lines (``epoch: 3/80, iter: 10/125, ... total_loss: 7.4, iou_loss: 2.9,
  ... lr: 1.250e-04``) and pycocotools' summary (`` Average Precision  (AP) @[ IoU=0.50:0.95 |
  area=   all | maxDets=100 ] = 0.412``), which ``METRICS`` turns into CloudWatch metrics; the tuner's
  objective is ``val:AP``,
- saves the model under ``/opt/ml/model`` (and checkpoints under ``/opt/ml/checkpoints`` for spot).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from training import storage as st
from training.errors import LaunchError, StorageError

_NUM = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
_AP = r"Average Precision +\(AP\) @\[ IoU={iou} +\| area= +all +\| maxDets=100 \] = " + _NUM
#: metric name -> regex over the training log (first group is the value)
METRICS: dict[str, str] = {
    "train:total_loss": r"total_loss: " + _NUM,
    "train:iou_loss": r"iou_loss: " + _NUM,
    "train:conf_loss": r"conf_loss: " + _NUM,
    "train:cls_loss": r"cls_loss: " + _NUM,
    "train:lr": r", lr: " + _NUM,
    "val:AP": _AP.format(iou=r"0\.50:0\.95"),
    "val:AP50": _AP.format(iou=r"0\.50"),
    "val:AP75": _AP.format(iou=r"0\.75"),
}
OBJECTIVE = "val:AP"
DEFAULT_HYPERPARAMETERS = {
    "exp": "yolox_s", "max_epoch": "80", "batch_size": "16", "basic_lr_per_img": "0.00015625",
    "weight_decay": "0.0005", "input_size": "640,640", "num_classes": "1",
}  # fmt: skip
_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


@dataclass
class JobSpec:
    """What a training job (or each job of a tuning job) runs on."""

    image: str
    role: str
    output: str  # s3:// prefix for model artifacts
    channels: dict[str, str]  # channel name -> s3:// prefix
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    volume_gb: int = 50
    max_runtime_s: int = 24 * 3600
    spot: bool = False
    hyperparameters: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def default_name(kind: str) -> str:
    return f"trackcast-{kind}-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def check_name(name: str, limit: int, what: str) -> str:
    if len(name) > limit or not _JOB_NAME.fullmatch(name):
        raise LaunchError(f"{what} {name!r}: up to {limit} letters, digits and '-' (not first or last)")
    return name


def _check_spec(spec: JobSpec) -> None:
    from deploy.errors import DeployError
    from deploy.sagemaker.manage import check_role

    try:
        check_role(spec.role)
    except DeployError as exc:
        raise LaunchError(str(exc)) from exc
    if not spec.image or "/" not in spec.image:
        raise LaunchError(
            f"--image must be a container image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>), got {spec.image!r}"
        )
    for what, uri in [("--output", spec.output), *((f"channel {k}", v) for k, v in spec.channels.items())]:
        if not st.is_s3(uri):
            raise LaunchError(f"{what} must be an s3:// location, got {uri!r}")
    if not spec.channels:
        raise LaunchError("no data channels: pass --dataset s3://.../ or --channel NAME=s3://...")
    if spec.instance_count < 1 or spec.volume_gb < 1 or spec.max_runtime_s < 60:
        raise LaunchError("--instance-count and --volume-gb must be >= 1 and --max-runtime >= 60 s")


def _common(spec: JobSpec, job_label: str) -> dict[str, Any]:
    """The parts a training job and a tuning job's training definition share."""
    out = spec.output.rstrip("/") + "/"
    req: dict[str, Any] = {
        "AlgorithmSpecification": {
            "TrainingImage": spec.image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": k, "Regex": v} for k, v in METRICS.items()],
        },
        "RoleArn": spec.role,
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
            for name, uri in spec.channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": out},
        "ResourceConfig": {
            "InstanceType": spec.instance_type,
            "InstanceCount": spec.instance_count,
            "VolumeSizeInGB": spec.volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_s},
    }
    if spec.spot:
        req["EnableManagedSpotTraining"] = True
        req["StoppingCondition"]["MaxWaitTimeInSeconds"] = 2 * spec.max_runtime_s
        req["CheckpointConfig"] = {
            "S3Uri": f"{out}checkpoints/{job_label}/",
            "LocalPath": "/opt/ml/checkpoints",
        }
    return req


def training_request(name: str, spec: JobSpec) -> dict[str, Any]:
    check_name(name, 63, "training job name")
    _check_spec(spec)
    req = _common(spec, name)
    req["TrainingJobName"] = name
    req["HyperParameters"] = {**DEFAULT_HYPERPARAMETERS, **spec.hyperparameters}
    req["Tags"] = [{"Key": k, "Value": v} for k, v in {"trackcast:job": name, **spec.tags}.items()]
    return req


@dataclass
class Ranges:
    lr: tuple[float, float] = (1e-5, 1e-3)  # basic_lr_per_img
    weight_decay: tuple[float, float] = (1e-5, 1e-3)
    batch_size: tuple[int, int] = (8, 32)


def tuning_request(name: str, spec: JobSpec, ranges: Ranges, max_jobs: int = 12, max_parallel: int = 2,
                   strategy: str = "Bayesian", early_stopping: bool = True) -> dict[str, Any]:  # fmt: skip
    check_name(name, 32, "tuning job name")
    _check_spec(spec)
    for what, (lo, hi) in (
        ("--lr-range", ranges.lr),
        ("--wd-range", ranges.weight_decay),
        ("--batch-range", ranges.batch_size),
    ):
        if not 0 < lo < hi:
            raise LaunchError(f"{what} needs 0 < MIN < MAX, got {lo} {hi}")
    if not 1 <= max_parallel <= max_jobs:
        raise LaunchError(f"--max-parallel must be between 1 and --max-jobs ({max_jobs}), got {max_parallel}")
    if strategy not in ("Bayesian", "Random", "Hyperband", "Grid"):
        raise LaunchError(f"--strategy must be Bayesian, Random, Hyperband or Grid, got {strategy!r}")
    tuned = {"basic_lr_per_img", "weight_decay", "batch_size"}
    definition = _common(spec, name)
    definition["StaticHyperParameters"] = {
        k: v for k, v in {**DEFAULT_HYPERPARAMETERS, **spec.hyperparameters}.items() if k not in tuned
    }
    algo = definition["AlgorithmSpecification"]
    definition["AlgorithmSpecification"] = {
        "TrainingImage": algo["TrainingImage"], "TrainingInputMode": algo["TrainingInputMode"],
        "MetricDefinitions": algo["MetricDefinitions"],
    }  # fmt: skip
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": OBJECTIVE},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs, "MaxParallelTrainingJobs": max_parallel},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {
                        "Name": "basic_lr_per_img",
                        "MinValue": str(ranges.lr[0]),
                        "MaxValue": str(ranges.lr[1]),
                        "ScalingType": "Logarithmic",
                    },
                    {
                        "Name": "weight_decay",
                        "MinValue": str(ranges.weight_decay[0]),
                        "MaxValue": str(ranges.weight_decay[1]),
                        "ScalingType": "Logarithmic",
                    },
                ],
                "IntegerParameterRanges": [
                    {
                        "Name": "batch_size",
                        "MinValue": str(ranges.batch_size[0]),
                        "MaxValue": str(ranges.batch_size[1]),
                        "ScalingType": "Linear",
                    },
                ],
                "CategoricalParameterRanges": [],
            },
            "TrainingJobEarlyStoppingType": "Auto" if early_stopping and strategy != "Hyperband" else "Off",
        },
        "TrainingJobDefinition": definition,
        "Tags": [{"Key": k, "Value": v} for k, v in {"trackcast:job": name, **spec.tags}.items()],
    }


def _check_channels(clients: Any, spec: JobSpec) -> None:
    store = st.Storage(clients)
    for name, uri in spec.channels.items():
        try:
            found = store.exists(uri.rstrip("/") + "/")
        except StorageError as exc:
            raise LaunchError(f"channel {name} ({uri}): {exc}") from exc
        if not found:
            raise LaunchError(
                f"channel {name}: nothing at {uri} (upload the dataset first: convert ... --out s3://...)"
            )


def launch(clients: Any, name: str, spec: JobSpec) -> dict[str, Any]:
    from deploy.sagemaker.manage import explain_aws_error

    req = training_request(name, spec)
    _check_channels(clients, spec)
    try:
        arn = clients("sagemaker").create_training_job(**req)["TrainingJobArn"]
    except Exception as exc:
        raise LaunchError(str(explain_aws_error(exc, f"create training job {name}"))) from exc
    return {"TrainingJobName": name, "TrainingJobArn": arn, "metrics": list(METRICS)}


def tune(clients: Any, name: str, spec: JobSpec, ranges: Ranges, **kw: Any) -> dict[str, Any]:
    from deploy.sagemaker.manage import explain_aws_error

    req = tuning_request(name, spec, ranges, **kw)
    _check_channels(clients, spec)
    try:
        arn = clients("sagemaker").create_hyper_parameter_tuning_job(**req)["HyperParameterTuningJobArn"]
    except Exception as exc:
        raise LaunchError(str(explain_aws_error(exc, f"create tuning job {name}"))) from exc
    return {"HyperParameterTuningJobName": name, "HyperParameterTuningJobArn": arn, "objective": OBJECTIVE}
