"""SageMaker endpoints and jobs with boto3: ``trackcast deploy realtime|update|delete|async|batch``.

Resources are named after the endpoint (``<name>-<stamp>`` models and endpoint configs) and tagged
``trackcast:endpoint=<name>`` so ``delete`` removes exactly what was created. Failures become
``DeployError`` with a message saying what to fix (missing role, missing bucket, quota reached),
never a stack trace of botocore internals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from deploy.errors import DeployError

TAG = "trackcast:endpoint"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@dataclass
class Clients:
    """boto3 clients; ``endpoint_url`` points every one at a local stand-in (moto) for tests."""

    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    def __call__(self, service: str) -> Any:
        import boto3
        from botocore.exceptions import NoRegionError

        if service not in self._cache:
            try:
                session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
                self._cache[service] = session.client(service, endpoint_url=self.endpoint_url)
            except NoRegionError as exc:
                raise DeployError("no AWS region: pass --region or set AWS_REGION") from exc
        return self._cache[service]

    def client(self, service: str, retries: dict[str, Any] | None = None) -> Any:
        """A client of its own (not cached) with botocore retry settings, for callers that retry themselves."""
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError

        try:
            session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
            return session.client(
                service, endpoint_url=self.endpoint_url, config=Config(retries=retries or {})
            )
        except NoRegionError as exc:
            raise DeployError("no AWS region: pass --region or set AWS_REGION") from exc


def explain_aws_error(exc: Exception, what: str) -> DeployError:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return DeployError(f"{what}: no AWS credentials (environment, profile or instance role)")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        msg = exc.response.get("Error", {}).get("Message", "")
        if code == "ResourceLimitExceeded" or "quota" in msg.lower() or "limit" in code.lower():
            return DeployError(
                f"{what}: an AWS quota is reached ({msg}); request an increase or use another instance type"
            )
        if code in ("NoSuchBucket", "404") and "bucket" in what.lower():
            return DeployError(f"{what}: the bucket does not exist")
        if code == "AccessDenied" or code == "AccessDeniedException":
            return DeployError(f"{what}: access denied ({msg}); check the role's and your permissions")
        return DeployError(f"{what}: {code}: {msg}")
    return DeployError(f"{what}: {type(exc).__name__}: {exc}")


def check_role(role: str | None) -> str:
    if not role:
        raise DeployError(
            "no execution role: pass --role arn:aws:iam::<account>:role/<name> (or set TRACKCAST_SAGEMAKER_ROLE)"
        )
    if not role.startswith("arn:aws") or ":role/" not in role:
        raise DeployError(
            f"--role must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got {role!r}"
        )
    return role


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{int(time.time() * 1000) % 1000:03d}"


@dataclass
class ModelSpec:
    image: str
    model_data: str  # s3://.../model.tar.gz
    role: str
    env: dict[str, str] = field(default_factory=dict)


class Deployer:
    def __init__(self, clients: Clients) -> None:
        self.c = clients

    # ------------------------------------------------------------------ pieces
    def _tags(self, name: str) -> list[dict[str, str]]:
        return [{"Key": TAG, "Value": name}]

    def create_model(self, name: str, spec: ModelSpec) -> str:
        model = f"{name}-{_stamp()}"
        try:
            self.c("sagemaker").create_model(
                ModelName=model,
                ExecutionRoleArn=check_role(spec.role),
                PrimaryContainer={
                    "Image": spec.image,
                    "ModelDataUrl": spec.model_data,
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py", **spec.env},
                },
                Tags=self._tags(name),
            )
        except DeployError:
            raise
        except Exception as exc:
            raise explain_aws_error(exc, f"create model {model}") from exc
        return model

    def create_config(self, name: str, model: str, instance_type: str, count: int, variant: str,
                      data_capture_s3: str | None = None, async_config: dict[str, Any] | None = None) -> str:  # fmt: skip
        config = f"{name}-{_stamp()}"
        kwargs: dict[str, Any] = {
            "EndpointConfigName": config,
            "ProductionVariants": [
                {
                    "VariantName": variant,
                    "ModelName": model,
                    "InstanceType": instance_type,
                    "InitialInstanceCount": count,
                    "InitialVariantWeight": 1.0,
                }
            ],
            "Tags": self._tags(name),
        }
        if data_capture_s3:
            kwargs["DataCaptureConfig"] = {
                "EnableCapture": True, "InitialSamplingPercentage": 10, "DestinationS3Uri": data_capture_s3,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            }  # fmt: skip
        if async_config:
            kwargs["AsyncInferenceConfig"] = async_config
        try:
            self.c("sagemaker").create_endpoint_config(**kwargs)
        except Exception as exc:
            raise explain_aws_error(exc, f"create endpoint config {config}") from exc
        return config

    def _create_endpoint(self, name: str, config: str, wait: bool) -> None:
        try:
            self.c("sagemaker").create_endpoint(
                EndpointName=name, EndpointConfigName=config, Tags=self._tags(name)
            )
        except Exception as exc:
            raise explain_aws_error(exc, f"create endpoint {name}") from exc
        if wait:
            self.wait(name)

    def wait(self, name: str, timeout: float = 1800, poll: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            d = self.c("sagemaker").describe_endpoint(EndpointName=name)
            status = d["EndpointStatus"]
            if status == "InService":
                return str(status)
            if status == "Failed":
                raise DeployError(f"endpoint {name} failed: {d.get('FailureReason', 'no reason given')}")
            if time.monotonic() > deadline:
                raise DeployError(f"endpoint {name} still {status} after {timeout:.0f}s")
            time.sleep(poll)

    # ------------------------------------------------------------------ commands
    def realtime(self, name: str, spec: ModelSpec, instance_type: str = "ml.g4dn.xlarge", count: int = 1,
                 variant: str = "AllTraffic", data_capture_s3: str | None = None,
                 autoscale: tuple[int, int, float] | None = None, wait: bool = True) -> dict[str, Any]:  # fmt: skip
        model = self.create_model(name, spec)
        config = self.create_config(name, model, instance_type, count, variant, data_capture_s3)
        self._create_endpoint(name, config, wait)
        if autoscale:
            lo, hi, target = autoscale
            self.register_scaling(name, variant, lo, hi)
            self.c("application-autoscaling").put_scaling_policy(
                PolicyName=f"{name}-invocations", ServiceNamespace="sagemaker",
                ResourceId=f"endpoint/{name}/variant/{variant}", ScalableDimension=DIMENSION,
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={
                    "TargetValue": target,
                    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                    "ScaleInCooldown": 300, "ScaleOutCooldown": 60,
                },
            )  # fmt: skip
        return {"endpoint": name, "config": config, "model": model}

    def register_scaling(self, name: str, variant: str, lo: int, hi: int) -> None:
        try:
            self.c("application-autoscaling").register_scalable_target(
                ServiceNamespace="sagemaker", ResourceId=f"endpoint/{name}/variant/{variant}",
                ScalableDimension=DIMENSION, MinCapacity=lo, MaxCapacity=hi,
            )  # fmt: skip
        except Exception as exc:
            raise explain_aws_error(exc, f"register autoscaling for {name}") from exc

    def update(self, name: str, spec: ModelSpec, instance_type: str | None = None, count: int | None = None,
               wait: bool = True) -> dict[str, Any]:  # fmt: skip
        """Swap the model with no downtime: a new endpoint config, then UpdateEndpoint."""
        sm = self.c("sagemaker")
        try:
            current = sm.describe_endpoint_config(
                EndpointConfigName=sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
            )
        except Exception as exc:
            raise explain_aws_error(exc, f"describe endpoint {name}") from exc
        pv = current["ProductionVariants"][0]
        model = self.create_model(name, spec)
        config = self.create_config(
            name, model, instance_type or pv["InstanceType"], count or pv.get("InitialInstanceCount", 1), pv["VariantName"],
            current.get("DataCaptureConfig", {}).get("DestinationS3Uri"), current.get("AsyncInferenceConfig"),
        )  # fmt: skip
        try:
            sm.update_endpoint(EndpointName=name, EndpointConfigName=config)
        except Exception as exc:
            raise explain_aws_error(exc, f"update endpoint {name}") from exc
        if wait:
            self.wait(name)
        return {
            "endpoint": name,
            "config": config,
            "model": model,
            "previous_config": current["EndpointConfigName"],
        }

    def async_(self, name: str, spec: ModelSpec, output_s3: str, failure_s3: str | None = None,
               sns_success: str | None = None, sns_error: str | None = None, max_concurrent: int = 1,
               instance_type: str = "ml.g4dn.xlarge", max_instances: int = 2, backlog_target: float = 2.0,
               wait: bool = True) -> dict[str, Any]:  # fmt: skip
        """An asynchronous endpoint that scales to zero when idle and back up on a backlog."""
        variant = "AllTraffic"
        out: dict[str, Any] = {"S3OutputPath": output_s3}
        if failure_s3:
            out["S3FailurePath"] = failure_s3
        notif = {k: v for k, v in (("SuccessTopic", sns_success), ("ErrorTopic", sns_error)) if v}
        if notif:
            out["NotificationConfig"] = notif
        async_config = {
            "OutputConfig": out,
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": max_concurrent},
        }
        model = self.create_model(name, spec)
        config = self.create_config(name, model, instance_type, 1, variant, async_config=async_config)
        self._create_endpoint(name, config, wait)
        aas = self.c("application-autoscaling")
        rid = f"endpoint/{name}/variant/{variant}"
        self.register_scaling(name, variant, 0, max_instances)
        aas.put_scaling_policy(
            PolicyName=f"{name}-backlog", ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": backlog_target,
                "CustomizedMetricSpecification": {"MetricName": "ApproximateBacklogSizePerInstance",
                                                  "Namespace": "AWS/SageMaker",
                                                  "Dimensions": [{"Name": "EndpointName", "Value": name}],
                                                  "Statistic": "Average"},
                "ScaleInCooldown": 600, "ScaleOutCooldown": 120,
            },
        )  # fmt: skip
        step = aas.put_scaling_policy(
            PolicyName=f"{name}-from-zero", ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION,
            PolicyType="StepScaling",
            StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average",
                                            "Cooldown": 300,
                                            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]},
        )  # fmt: skip
        self.c("cloudwatch").put_metric_alarm(
            AlarmName=f"{name}-has-backlog-without-capacity", MetricName="HasBacklogWithoutCapacity",
            Namespace="AWS/SageMaker", Statistic="Average", Period=60, EvaluationPeriods=2, DatapointsToAlarm=2,
            Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing",
            Dimensions=[{"Name": "EndpointName", "Value": name}], AlarmActions=[step["PolicyARN"]],
        )  # fmt: skip
        return {
            "endpoint": name,
            "config": config,
            "model": model,
            "alarm": f"{name}-has-backlog-without-capacity",
        }

    def delete(self, name: str) -> list[str]:
        """Remove the endpoint, its configs and models (tagged), scaling and alarms. Returns what went."""
        sm = self.c("sagemaker")
        gone: list[str] = []
        try:
            ep = sm.describe_endpoint(EndpointName=name)
        except Exception as exc:
            raise explain_aws_error(exc, f"endpoint {name}") from exc
        aas = self.c("application-autoscaling")
        for v in ep.get("ProductionVariants", []) or [{"VariantName": "AllTraffic"}]:
            rid = f"endpoint/{name}/variant/{v['VariantName']}"
            for pol in aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=rid).get(
                "ScalingPolicies", []
            ):
                aas.delete_scaling_policy(PolicyName=pol["PolicyName"], ServiceNamespace="sagemaker", ResourceId=rid,
                                          ScalableDimension=DIMENSION)  # fmt: skip
                gone.append(f"scaling policy {pol['PolicyName']}")
            targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[rid]).get(
                "ScalableTargets", []
            )
            if targets:
                aas.deregister_scalable_target(
                    ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION
                )
                gone.append(f"scalable target {rid}")
        cw = self.c("cloudwatch")
        alarms = [
            a["AlarmName"] for a in cw.describe_alarms(AlarmNamePrefix=f"{name}-").get("MetricAlarms", [])
        ]
        if alarms:
            cw.delete_alarms(AlarmNames=alarms)
            gone += [f"alarm {a}" for a in alarms]
        sm.delete_endpoint(EndpointName=name)
        gone.append(f"endpoint {name}")
        for cfg in sm.list_endpoint_configs(NameContains=name).get("EndpointConfigs", []):
            arn = cfg["EndpointConfigArn"]
            tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn).get("Tags", [])}
            if tags.get(TAG) == name:
                sm.delete_endpoint_config(EndpointConfigName=cfg["EndpointConfigName"])
                gone.append(f"endpoint config {cfg['EndpointConfigName']}")
        for m in sm.list_models(NameContains=name).get("Models", []):
            tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=m["ModelArn"]).get("Tags", [])}
            if tags.get(TAG) == name:
                sm.delete_model(ModelName=m["ModelName"])
                gone.append(f"model {m['ModelName']}")
        return gone

    def batch(self, job: str, image: str, role: str, input_s3: str, output_s3: str, model_s3: str,
              instance_type: str = "ml.g4dn.xlarge", count: int = 1, preprocess: str = "yolox",
              max_runtime_s: int = 86400) -> dict[str, Any]:  # fmt: skip
        """A processing job that tracks every video under ``input_s3`` into ``output_s3``."""
        try:
            self.c("sagemaker").create_processing_job(
                ProcessingJobName=job,
                RoleArn=check_role(role),
                AppSpecification={
                    "ImageUri": image,
                    "ContainerEntrypoint": ["python", "-m", "deploy.sagemaker.processing"],
                    "ContainerArguments": [
                        "--model",
                        "/opt/ml/processing/model/model.onnx",
                        "--preprocess",
                        preprocess,
                    ],
                },
                ProcessingInputs=[
                    {
                        "InputName": "videos",
                        "S3Input": {
                            "S3Uri": input_s3,
                            "LocalPath": "/opt/ml/processing/input",
                            "S3DataType": "S3Prefix",
                            "S3InputMode": "File",
                            "S3DataDistributionType": "ShardedByS3Key",
                        },
                    },
                    {
                        "InputName": "model",
                        "S3Input": {
                            "S3Uri": model_s3,
                            "LocalPath": "/opt/ml/processing/model",
                            "S3DataType": "S3Prefix",
                            "S3InputMode": "File",
                            "S3DataDistributionType": "FullyReplicated",
                        },
                    },
                ],
                ProcessingOutputConfig={
                    "Outputs": [
                        {
                            "OutputName": "tracks",
                            "S3Output": {
                                "S3Uri": output_s3,
                                "LocalPath": "/opt/ml/processing/output",
                                "S3UploadMode": "EndOfJob",
                            },
                        }
                    ]
                },
                ProcessingResources={
                    "ClusterConfig": {
                        "InstanceCount": count,
                        "InstanceType": instance_type,
                        "VolumeSizeInGB": 100,
                    }
                },
                StoppingCondition={"MaxRuntimeInSeconds": max_runtime_s},
                Tags=[{"Key": "trackcast:job", "Value": job}],
            )
        except DeployError:
            raise
        except Exception as exc:
            raise explain_aws_error(exc, f"create processing job {job}") from exc
        return {"job": job}
