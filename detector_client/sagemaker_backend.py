"""YOLOX on a SageMaker real-time endpoint, through boto3's ``sagemaker-runtime`` InvokeEndpoint.

Frames are letterboxed here (the endpoint model's input spec is configured, not discovered) and
sent in the trackcast batch wire format (``detector_client.wire``). A batch is split into requests
under the 6 MiB real-time payload limit. botocore's own retries are off: this client retries
throttling, 429 ModelNotReady, 500 and 503, and read timeouts, with capped jittered exponential
backoff (``detector_client.remote``, shared with the inference-server backend), and never
retries a 424 ModelError or a validation error. Failures become typed ``EndpointError``s carrying
endpoint, HTTP status and error code. Region and credentials come from
the arguments or the standard AWS chain (environment, profile, instance role).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detector_client import wire
from detector_client.base import Detections, Detector, InputSpec, PreparedFrame, as_detections
from detector_client.errors import (
    DetectorInputError,
    EndpointError,
    EndpointModelError,
    EndpointRequestError,
    EndpointResponseError,
    EndpointThrottled,
    EndpointTimeout,
)
from detector_client.remote import RetryPolicy, call_with_retries
from detector_client.yolox import PostProcess

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]

MAX_PAYLOAD = 6 * 1024 * 1024  # SageMaker real-time InvokeEndpoint request limit
RETRYABLE_CODES = {
    "ThrottlingException", "Throttling", "TooManyRequestsException", "ModelNotReadyException",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalServerError",
    "InternalServerException",
}  # fmt: skip
RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class SageMakerDetector(Detector):
    name = "sagemaker"

    def __init__(
        self,
        endpoint: str,
        spec: InputSpec,
        postprocess: PostProcess | None = None,
        *,
        region: str | None = None,
        variant: str | None = None,
        endpoint_url: str | None = None,
        encoding: str = "raw",
        jpeg_quality: int = 90,
        max_batch: int = 16,
        max_in_flight: int = 4,
        read_timeout_s: float = 65.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        max_payload: int = MAX_PAYLOAD,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, NoRegionError

        super().__init__(spec, max_batch, max_in_flight)
        if encoding not in ("raw", "jpeg"):
            raise ValueError(f"encoding must be 'raw' or 'jpeg', got {encoding!r}")
        self.endpoint = endpoint
        self.variant = variant
        self.postprocess = postprocess or PostProcess()
        self.encoding = encoding
        self.jpeg_quality = jpeg_quality
        self.retry = RetryPolicy(max_retries, backoff_base_s, backoff_cap_s)
        self.max_payload = max_payload
        self._sleep = sleep
        self._rng = random.Random()
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "frames": 0, "bytes_sent": 0}
        cfg = Config(
            read_timeout=read_timeout_s,
            connect_timeout=connect_timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"},  # no botocore retries: ours below
            max_pool_connections=max(10, 2 * max_in_flight),
        )
        try:
            session = boto3.session.Session(
                aws_access_key_id=aws_access_key_id,
                aws_secret_access_key=aws_secret_access_key,
                aws_session_token=aws_session_token,
                profile_name=profile,
                region_name=region,
            )
            self.client = session.client("sagemaker-runtime", endpoint_url=endpoint_url, config=cfg)
        except NoRegionError as exc:
            raise EndpointRequestError(
                endpoint, None, "NoRegion", "no AWS region: set detector.region or AWS_REGION"
            ) from exc
        except BotoCoreError as exc:
            raise EndpointRequestError(endpoint, None, type(exc).__name__, str(exc)) from exc
        self.region = self.client.meta.region_name

    # ------------------------------------------------------------------ batching
    def plan(self, payload_sizes: Sequence[int]) -> list[range]:
        """Split frames (by encoded size) into consecutive requests under the payload limit."""
        chunks: list[range] = []
        start, size = 0, 0
        for i, n in enumerate(payload_sizes):
            single = n + wire.header_overhead(1)
            if single > self.max_payload:
                raise DetectorInputError(
                    f"one frame is {single} bytes encoded, over the endpoint's {self.max_payload}-byte payload limit "
                    "(use encoding: jpeg or a smaller model input)"
                )
            count = i - start
            if count and (
                size + n + wire.header_overhead(count + 1) > self.max_payload or count >= self.max_batch
            ):
                chunks.append(range(start, i))
                start, size = i, 0
            size += n
        if start < len(payload_sizes):
            chunks.append(range(start, len(payload_sizes)))
        return chunks

    def detect_sync(self, frames: Sequence[PreparedFrame]) -> list[Detections]:
        if not frames:
            return []
        for f in frames:
            if f.image.shape != (self.spec.height, self.spec.width, 3):
                raise DetectorInputError(
                    f"frame {f.stream}#{f.index} is {f.image.shape[1]}x{f.image.shape[0]}, "
                    f"endpoint {self.endpoint!r} takes {self.spec.width}x{self.spec.height}"
                )
        payloads = [wire.encode_frame(f, self.encoding, self.jpeg_quality) for f in frames]
        out: list[F64] = []
        for chunk in self.plan([len(p) for p in payloads]):
            heads = [wire.frame_header(frames[i], len(payloads[i])) for i in chunk]
            body = wire.pack(self.encoding, heads, [payloads[i] for i in chunk], self.postprocess)
            out.extend(self._invoke(body, len(chunk)))
        return as_detections(out)

    # ------------------------------------------------------------------ the call
    def _invoke(self, body: bytes, n_frames: int) -> list[F64]:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        kwargs: dict[str, Any] = {
            "EndpointName": self.endpoint,
            "Body": body,
            "ContentType": wire.CONTENT_TYPE,
            "Accept": "application/json",
        }
        if self.variant:
            kwargs["TargetVariant"] = self.variant

        def attempt() -> bytes:
            with self._lock:
                self.stats["requests"] += 1
                self.stats["bytes_sent"] += len(body)
            try:
                resp = self.client.invoke_endpoint(**kwargs)
                data: bytes = resp["Body"].read()
                return data
            except ClientError as exc:
                raise self._map_client_error(exc) from exc
            except (ReadTimeoutError, ConnectTimeoutError) as exc:
                raise EndpointTimeout(
                    self.endpoint, None, "Timeout", f"no answer in time ({type(exc).__name__})"
                ) from exc
            except (EndpointConnectionError, ConnectionClosedError) as exc:
                raise EndpointThrottled(
                    self.endpoint,
                    None,
                    "ConnectionError",
                    f"cannot reach the endpoint ({type(exc).__name__})",
                ) from exc

        data = call_with_retries(attempt, self.retry, f"endpoint {self.endpoint}", sleep=self._sleep,
                                 rng=self._rng, on_retry=self._count_retry)  # fmt: skip
        try:
            dets = wire.decode_result(data, n_frames)
        except ValueError as exc:
            raise EndpointResponseError(self.endpoint, 200, "MalformedResponse", str(exc)) from exc
        with self._lock:
            self.stats["frames"] += n_frames
        return dets

    def _count_retry(self) -> None:
        with self._lock:
            self.stats["retries"] += 1

    def _map_client_error(self, exc: Any) -> EndpointError:
        resp = exc.response
        code = str(resp.get("Error", {}).get("Code", "Unknown"))
        msg = str(resp.get("Error", {}).get("Message", ""))[:500]
        status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "ModelError" or status == 424:
            orig = resp.get("OriginalStatusCode")
            return EndpointModelError(
                self.endpoint, status, code, msg, int(orig) if orig is not None else None
            )
        if code in RETRYABLE_CODES or status in RETRYABLE_STATUS:
            return EndpointThrottled(self.endpoint, status, code, msg)
        return EndpointRequestError(self.endpoint, status, code, msg)
