"""Errors raised by detector backends.

Hierarchy::

    DetectorError                        base; carries the backend name
    ├── ModelLoadError                   model file missing, unreadable or not a YOLOX model (path)
    ├── DetectorInputError(ValueError)   a frame/request the detector cannot take: wrong size, empty
    │                                    frame, corrupt image, malformed wire payload
    ├── InferenceError                   the runtime failed on valid input (onnxruntime error)
    └── EndpointError                    a remote call failed: SageMaker endpoint or inference server
                                         (endpoint, status, code)
        ├── EndpointModelError           424 ModelError: the container failed or rejected the request
        ├── EndpointThrottled            throttling / 429 ModelNotReady / 503 / 500, after retries
        ├── EndpointTimeout              no answer within the read timeout, after retries
        ├── EndpointRequestError         4xx ValidationError, AccessDenied, unknown endpoint
        └── EndpointResponseError        the endpoint answered with something we cannot parse

Errors from boto3/botocore and onnxruntime are mapped at the boundary (``raise X from exc``);
messages name the endpoint or model path, never credentials.
"""

from __future__ import annotations


class DetectorError(Exception):
    """Base class of detector errors."""


class ModelLoadError(DetectorError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load model {path}: {reason}")
        self.path = path
        self.reason = reason


class DetectorInputError(DetectorError, ValueError):
    """The input cannot be used (the caller's fault: a 4xx)."""


class InferenceError(DetectorError):
    """The inference runtime failed."""


class EndpointError(DetectorError):
    def __init__(self, endpoint: str, status: int | None, code: str, message: str) -> None:
        where = f"endpoint {endpoint!r}"
        st = f" HTTP {status}" if status else ""
        super().__init__(f"{where}:{st} {code}: {message}")
        self.endpoint = endpoint
        self.status = status
        self.code = code


class EndpointModelError(EndpointError):
    def __init__(
        self, endpoint: str, status: int | None, code: str, message: str, original_status: int | None
    ) -> None:
        super().__init__(endpoint, status, code, message)
        self.original_status = original_status


class EndpointThrottled(EndpointError):
    pass


class EndpointTimeout(EndpointError):
    pass


class EndpointRequestError(EndpointError):
    pass


class EndpointResponseError(EndpointError):
    pass
