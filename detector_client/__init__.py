"""Detector backends behind one async interface: YOLOX on ONNX Runtime, a SageMaker endpoint, an
Open Inference Protocol server (Triton, KServe, MLServer), motion.

from detector_client import create_detector, OnnxDetectorConfig
det = create_detector(OnnxDetectorConfig(model="yolox.onnx", classes=[0]))
frame = det.spec.prepare(bgr_image, stream="cam1", index=7)   # in the decode thread
[dets] = await det.detect([frame])    # Detections: dets.xyxy, dets.scores, dets.classes, dets.rows [K,6]
"""

from detector_client.base import Detections, Detector, InputSpec, PreparedFrame
from detector_client.config import (
    DetectorConfig,
    MotionDetectorConfig,
    OipDetectorConfig,
    OnnxDetectorConfig,
    SageMakerDetectorConfig,
    create_detector,
)
from detector_client.errors import (
    DetectorError,
    DetectorInputError,
    EndpointError,
    InferenceError,
    ModelLoadError,
)
from detector_client.yolox import PostProcess

__all__ = [
    "Detections",
    "Detector",
    "DetectorConfig",
    "DetectorError",
    "DetectorInputError",
    "EndpointError",
    "InferenceError",
    "InputSpec",
    "ModelLoadError",
    "MotionDetectorConfig",
    "OipDetectorConfig",
    "OnnxDetectorConfig",
    "PostProcess",
    "PreparedFrame",
    "SageMakerDetectorConfig",
    "create_detector",
]
