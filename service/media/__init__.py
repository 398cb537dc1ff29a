"""The offline/media layer: decode, letterbox preparation, annotation, synthetic scenes, and the
offline loops (``track_video``, ``detect_video``, ``track_detections``).

It sits between the pure packages (``tracker``, ``detector_client``) and the service runtime, so the
SageMaker handler and processing job use it without the runtime (no MQTT, HTTP or WebRTC).
"""
