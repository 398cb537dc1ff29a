"""Detector backends behind one async interface (YOLOX on ONNX Runtime, SageMaker, motion)."""
