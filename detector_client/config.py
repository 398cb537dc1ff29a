"""Detector configuration (the ``detector:`` section of the service config) and the factory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from detector_client.base import Detector, InputSpec
from detector_client.formats import FormatName, Preprocess
from detector_client.yolox import DEFAULT_NMS_THRESH, DEFAULT_SCORE_THRESH, PostProcess


class _Base(BaseModel):
    # Numbers must be finite: NaN or infinity in a config is a mistake, not a setting.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    classes: list[int] | None = Field(
        None, description="class ids to keep (COCO: 0 = person); null keeps all"
    )
    score_thresh: float = Field(
        DEFAULT_SCORE_THRESH, ge=0, le=1, description="minimum objectness x class probability"
    )
    nms_thresh: float = Field(DEFAULT_NMS_THRESH, gt=0, le=1, description="class-aware NMS IoU threshold")
    max_batch: int = Field(8, ge=1, le=256, description="frames per detector call")
    clip: bool = Field(True, description="clip boxes to the frame (ByteTrack's pipeline does not)")
    max_det: int | None = Field(None, ge=1, le=100_000, description="keep at most this many boxes a frame")
    letterbox: Literal["fast", "exact"] = Field(
        "fast",
        description="fast: scale the decoded YUV planes, convert once at the model size; "
        "exact: convert the whole frame to BGR, then resize (ByteTrack's preprocessing, pixel for pixel)",
    )

    def postprocess(self) -> PostProcess:
        classes = None if self.classes is None else tuple(self.classes)
        return PostProcess(self.score_thresh, self.nms_thresh, classes, self.clip, self.max_det)


#: The remote backends' preprocessing: the served model's convention, said explicitly.
RemotePreprocess = Literal["yolox", "bytetrack", "ultralytics", "torchvision", "detectron2", "gluoncv"]


class OnnxDetectorConfig(_Base):
    """A detection model on ONNX Runtime: YOLOX, YOLOv5/v8/11, end-to-end (NMS in the graph), SSD."""

    kind: Literal["onnx"] = "onnx"
    model: Path = Field(..., description="detection model exported to ONNX")
    format: FormatName = Field(
        "auto",
        description="model family: yolox, yolov5, yolov8 (also YOLO11), end2end (NMS in the graph: "
        "Faster R-CNN, RetinaNet, YOLO nms=True), ssd (GluonCV SSD/YOLOv3); auto: from the model",
    )
    preprocess: Preprocess = Field(
        "auto",
        description="yolox: BGR 0..255; bytetrack: RGB /255 mean/std; ultralytics: RGB /255, centred "
        "letterbox; torchvision; detectron2; gluoncv (stretch, mean/std); auto: the family's own",
    )
    input_size: tuple[int, int] | None = Field(
        None, description="height, width to run a model with a dynamic input size at"
    )
    class_names: Path | None = Field(
        None, description="class names file (one per line, or JSON); default: the model's metadata"
    )
    tensorrt_cache_dir: Path | None = Field(
        None, description="TensorRT engine cache (default: ~/.cache/trackcast/tensorrt)"
    )
    tensorrt_fp16: bool = Field(True, description="let TensorRT build FP16 kernels")
    providers: list[str] | None = Field(
        None, description="tensorrt, cuda, cpu (default: every one installed)"
    )
    batching: bool = Field(True, description="make a batch-1 model batchable at load time (verified)")
    output: Literal["auto", "raw", "decoded"] = Field(
        "auto", description="whether the head outputs need grid decoding"
    )
    io_binding: bool | None = Field(
        None, description="ONNX Runtime IO binding (default: on for GPU providers)"
    )
    max_in_flight: int | None = Field(
        None, ge=1, description="concurrent batches (default: 1 on CPU, 2 on GPU)"
    )
    intra_op_threads: int | None = Field(
        None, ge=1, description="ONNX Runtime CPU threads (default: all cores)"
    )


class SageMakerDetectorConfig(_Base):
    """YOLOX on a SageMaker real-time endpoint."""

    kind: Literal["sagemaker"] = "sagemaker"
    endpoint: str = Field(..., min_length=1, description="SageMaker endpoint name")
    region: str | None = Field(None, description="AWS region (default: the AWS chain, e.g. AWS_REGION)")
    variant: str | None = Field(None, description="TargetVariant, to pin a production variant")
    endpoint_url: str | None = Field(
        None, description="override the runtime URL (local endpoints, VPC endpoints)"
    )
    input_size: tuple[int, int] = Field((416, 416), description="the endpoint model's input height, width")
    preprocess: RemotePreprocess = "yolox"
    encoding: Literal["raw", "jpeg"] = Field(
        "raw", description="frame encoding on the wire: raw (lossless) or jpeg"
    )
    jpeg_quality: int = Field(90, ge=10, le=100)
    max_batch: int = Field(16, ge=1, le=256)
    max_in_flight: int = Field(4, ge=1, le=64, description="concurrent InvokeEndpoint calls")
    read_timeout_s: float = Field(
        65.0, gt=0, le=3600, description="per call; the endpoint itself allows 60 s"
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=600)
    max_retries: int = Field(4, ge=0, le=10)
    aws_access_key_id: SecretStr | None = Field(None, description="default: the AWS credential chain")
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    profile: str | None = None


class OipDetectorConfig(_Base):
    """YOLOX on an inference server speaking the Open Inference Protocol (KServe v2): Triton, KServe, MLServer."""

    kind: Literal["oip"] = "oip"
    url: str = Field(..., min_length=1, description="the server's HTTP address, e.g. http://triton:8000")
    model: str = Field("yolox", min_length=1, description="model name on the server")
    version: str | None = Field(None, description="model version (default: the server's choice)")
    input_size: tuple[int, int] = Field((416, 416), description="the served model's input height, width")
    preprocess: RemotePreprocess = Field(
        "yolox", description="normalisation of an FP32 input (a UINT8 input is normalised by the server)"
    )
    binary: bool = Field(
        True, description="tensors as binary data (Triton, KServe); false: JSON (any v2 server, MLServer)"
    )
    output: Literal["auto", "raw", "decoded"] = Field(
        "auto", description="whether the head outputs need grid decoding"
    )
    output_name: str | None = Field(None, description="the head output (default: the model's first)")
    token: SecretStr | None = Field(None, description="bearer token sent as Authorization")
    ca_file: Path | None = Field(None, description="CA bundle for an https server")
    max_batch: int = Field(8, ge=1, le=256)
    max_in_flight: int = Field(4, ge=1, le=64, description="concurrent requests")
    read_timeout_s: float = Field(10.0, gt=0, le=3600, description="per request")
    connect_timeout_s: float = Field(3.0, gt=0, le=600)
    max_retries: int = Field(4, ge=0, le=10)


class MotionDetectorConfig(_Base):
    """OpenCV MOG2 motion boxes, no model needed."""

    kind: Literal["motion"] = "motion"
    input_size: tuple[int, int] = Field((360, 640), description="processing height, width")
    min_area: int = Field(120, ge=1, description="smallest blob (input pixels) reported")
    history: int = Field(300, ge=1, description="MOG2 background history, frames")
    var_threshold: float = Field(24.0, gt=0, description="MOG2 variance threshold")


class FakeDetectorConfig(_Base):
    """Fixed-latency fake for benchmarks and load tests; see ``detector_client/fake.py``."""

    kind: Literal["fake"] = "fake"
    latency_ms: float = Field(20.0, ge=0, le=60_000, description="sleep per batch")
    per_frame_ms: float = Field(0.0, ge=0, le=10_000, description="extra sleep per frame of a batch")
    boxes: int = Field(10, ge=0, le=1000, description="synthetic detections per frame")
    input_size: tuple[int, int] = Field((416, 416))
    max_in_flight: int = Field(2, ge=1, le=64)


AnyDetectorConfig = (
    OnnxDetectorConfig
    | SageMakerDetectorConfig
    | OipDetectorConfig
    | MotionDetectorConfig
    | FakeDetectorConfig
)
DetectorConfig = Annotated[AnyDetectorConfig, Field(discriminator="kind")]


def _secret(s: SecretStr | None) -> str | None:
    return None if s is None else s.get_secret_value()


def create_detector(cfg: AnyDetectorConfig) -> Detector:
    """Build the configured backend (loads the model / creates the boto3 client)."""
    det = _create(cfg)
    det.spec = dataclasses.replace(det.spec, letterbox=cfg.letterbox)
    return det


def onnx_model(cfg: OnnxDetectorConfig):  # type: ignore[no-untyped-def]  # -> OnnxModel (lazy import)
    """The blocking ONNX Runtime core of an ``onnx`` config (the service, offline commands, SageMaker)."""
    from detector_client.onnx_backend import OnnxModel

    return OnnxModel(
        cfg.model,
        preprocess=cfg.preprocess,
        providers=cfg.providers,
        postprocess=cfg.postprocess(),
        batching=cfg.batching,
        output=cfg.output,
        io_binding=cfg.io_binding,
        intra_op_threads=cfg.intra_op_threads,
        format=cfg.format,
        input_size=cfg.input_size,
        class_names=cfg.class_names,
        tensorrt_cache_dir=cfg.tensorrt_cache_dir,
        tensorrt_fp16=cfg.tensorrt_fp16,
    )


def _create(cfg: AnyDetectorConfig) -> Detector:
    if isinstance(cfg, OnnxDetectorConfig):
        from detector_client.onnx_backend import OnnxDetector

        core = onnx_model(cfg)
        return OnnxDetector(core, max_batch=cfg.max_batch, max_in_flight=cfg.max_in_flight)
    if isinstance(cfg, SageMakerDetectorConfig):
        from detector_client.formats import spec_for
        from detector_client.sagemaker_backend import SageMakerDetector

        return SageMakerDetector(
            cfg.endpoint,
            spec_for(cfg.input_size[0], cfg.input_size[1], cfg.preprocess),
            cfg.postprocess(),
            region=cfg.region,
            variant=cfg.variant,
            endpoint_url=cfg.endpoint_url,
            encoding=cfg.encoding,
            jpeg_quality=cfg.jpeg_quality,
            max_batch=cfg.max_batch,
            max_in_flight=cfg.max_in_flight,
            read_timeout_s=cfg.read_timeout_s,
            connect_timeout_s=cfg.connect_timeout_s,
            max_retries=cfg.max_retries,
            aws_access_key_id=_secret(cfg.aws_access_key_id),
            aws_secret_access_key=_secret(cfg.aws_secret_access_key),
            aws_session_token=_secret(cfg.aws_session_token),
            profile=cfg.profile,
        )
    if isinstance(cfg, OipDetectorConfig):
        from detector_client.formats import spec_for
        from detector_client.oip_backend import OipDetector

        return OipDetector(
            cfg.url,
            cfg.model,
            spec_for(cfg.input_size[0], cfg.input_size[1], cfg.preprocess),
            cfg.postprocess(),
            version=cfg.version,
            binary=cfg.binary,
            output=cfg.output,
            output_name=cfg.output_name,
            token=_secret(cfg.token),
            ca_file=None if cfg.ca_file is None else str(cfg.ca_file),
            max_batch=cfg.max_batch,
            max_in_flight=cfg.max_in_flight,
            read_timeout_s=cfg.read_timeout_s,
            connect_timeout_s=cfg.connect_timeout_s,
            max_retries=cfg.max_retries,
        )
    if isinstance(cfg, FakeDetectorConfig):
        from detector_client.fake import FakeDetector

        return FakeDetector(cfg.latency_ms, cfg.per_frame_ms, cfg.boxes, InputSpec(*cfg.input_size), cfg.max_batch,
                            cfg.max_in_flight)  # fmt: skip
    from detector_client.motion import MotionDetector

    return MotionDetector(
        InputSpec(cfg.input_size[0], cfg.input_size[1]),
        min_area=cfg.min_area,
        history=cfg.history,
        var_threshold=cfg.var_threshold,
        max_batch=cfg.max_batch,
    )
