"""YOLOX on an inference server speaking the Open Inference Protocol (KServe v2) over HTTP.

NVIDIA Triton Inference Server, KServe's model servers and Seldon MLServer all serve it. The server
runs the YOLOX network; letterboxing before and the YOLOX decoding and NMS after are trackcast's
own, the same code as the local ONNX backend (``detector_client.yolox``), so the same model gives
the same boxes wherever it runs.

On the first call the client reads the model's metadata (``GET /v2/models/{model}``) and checks
it: one image input of the configured size, either ``FP32``/``FP16 [N,3,H,W]`` (the network as
exported: the client sends the normalised tensor) or ``UINT8 [N,H,W,3]`` (a model repository made
by ``trackcast triton-repo``: the letterboxed image travels as is, 4 times smaller, and the server
normalises); one ``[N, anchors, 5+classes]`` output. A batch dimension of -1 takes batches; a fixed
1 gets one frame per request. Whether the head is raw or decoded is probed once (``output: auto``).

Tensors travel with the binary tensor data extension (Triton, KServe) or, with ``binary: false``,
as JSON (every v2 server, MLServer's REST included). Failures are the SageMaker backend's typed
``EndpointError``s with the same retries (``detector_client.remote``): connection refused or reset,
timeouts, 408/429/5xx are retried with jittered backoff; other 4xx (unknown model, wrong shape)
and answers that do not parse are not. Error messages name the server and model, never the token
or credentials in the URL.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt

from detector_client.base import Detections, Detector, InputSpec, PreparedFrame, as_detections, stack_frames
from detector_client.errors import (
    EndpointError,
    EndpointRequestError,
    EndpointResponseError,
    EndpointThrottled,
    EndpointTimeout,
)
from detector_client.remote import RetryPolicy, call_with_retries
from detector_client.yolox import PostProcess, YoloxDecoder, anchor_count, looks_raw, probe_frames

log = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
HEADER_LENGTH = "Inference-Header-Content-Length"
DTYPES: dict[str, Any] = {"FP32": np.float32, "FP16": np.float16, "UINT8": np.uint8}


def public_url(url: str) -> str:
    """``url`` without user:password (what logs and errors may show)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True, slots=True)
class RemoteModel:
    """What the server's metadata says about the model, once checked."""

    input_name: str
    layout: Literal["nchw", "nhwc"]  # nchw: normalised float tensor; nhwc: the uint8 image
    datatype: str
    batched: bool  # False: the model takes exactly one frame per request
    output_name: str
    raw: bool = True


_EXCEPTION_LINE = re.compile(r"^\s*[\w.]+(Error|Exception): .+")


def _error_text(body: bytes) -> str:
    """The server's error message, short: a Python traceback inside it becomes its last exception line."""
    try:
        doc = json.loads(body)
        text = str(doc["error"]) if isinstance(doc, dict) and "error" in doc else None
    except ValueError:
        text = None
    if text is None:
        return body[:200].decode("utf-8", "replace")
    head, sep, rest = text.partition("Traceback")
    if sep:
        last = [ln.strip() for ln in rest.splitlines() if _EXCEPTION_LINE.match(ln)]
        text = head.strip().rstrip(":") + (f" ({last[-1]})" if last else "")
    return text[:500]


class OipDetector(Detector):
    name = "oip"

    def __init__(
        self,
        url: str,
        model: str,
        spec: InputSpec,
        postprocess: PostProcess | None = None,
        *,
        version: str | None = None,
        binary: bool = True,
        output: Literal["auto", "raw", "decoded"] = "auto",
        output_name: str | None = None,
        token: str | None = None,
        ca_file: str | None = None,
        max_batch: int = 8,
        max_in_flight: int = 4,
        read_timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import urllib3

        super().__init__(spec, max_batch, max_in_flight)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EndpointRequestError(
                public_url(url) if parts.hostname else "?", None, "BadUrl",
                "the inference server URL must be http://host:port or https://host:port",
            )  # fmt: skip
        self.url = url.rstrip("/")
        self.model = model
        self.version = version
        self.where = f"{model} at {public_url(url)}"
        self.postprocess = postprocess or PostProcess()
        self.binary = binary
        self.output = output
        self.output_name = output_name
        self.retry = RetryPolicy(max_retries, backoff_base_s, backoff_cap_s)
        self.decoder = YoloxDecoder(spec.height, spec.width, raw=output != "decoded")
        self.anchors = anchor_count(spec.height, spec.width)
        self._sleep = sleep
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._model: RemoteModel | None = None
        self.stats = {"requests": 0, "retries": 0, "frames": 0, "bytes_sent": 0, "bytes_received": 0}
        headers = {}
        if parts.username or parts.password:
            headers.update(urllib3.make_headers(basic_auth=f"{parts.username or ''}:{parts.password or ''}"))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=self.max_in_flight + 1,
            block=False,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=False,
            ca_certs=ca_file,
        )
        base = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        path = parts.path.rstrip("/") + f"/v2/models/{quote(model, safe='')}"
        if version:
            path += f"/versions/{quote(version, safe='')}"
        self._model_url = base + path

    # ------------------------------------------------------------------ HTTP
    def _call(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        """One request with retries; returns the urllib3 response of a 200."""
        import urllib3

        def attempt() -> Any:
            with self._lock:
                self.stats["requests"] += 1
                self.stats["bytes_sent"] += len(body or b"")
            try:
                resp = self._http.request(method, url, body=body, headers={**self._headers, **(headers or {})},
                                          preload_content=True, redirect=False)  # fmt: skip
            except (
                urllib3.exceptions.NewConnectionError
            ) as exc:  # refused, DNS (a ConnectTimeoutError subclass)
                raise EndpointThrottled(
                    self.where,
                    None,
                    "ConnectionError",
                    "cannot reach the server (connection refused or no such host)",
                ) from exc
            except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError) as exc:
                raise EndpointTimeout(
                    self.where, None, "Timeout", f"no answer in time ({type(exc).__name__})"
                ) from exc
            except urllib3.exceptions.HTTPError as exc:  # refused, reset, DNS, TLS, protocol
                reason = getattr(exc, "reason", None) or exc
                raise EndpointThrottled(
                    self.where, None, "ConnectionError", f"cannot reach the server ({type(reason).__name__})"
                ) from exc
            with self._lock:
                self.stats["bytes_received"] += len(resp.data)
            if resp.status == 200:
                return resp
            msg = _error_text(resp.data)
            if resp.status in RETRYABLE_STATUS:
                raise EndpointThrottled(self.where, resp.status, "ServerError", msg)
            code = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "ModelNotFound"}
            raise EndpointRequestError(self.where, resp.status, code.get(resp.status, "RequestError"), msg)

        return call_with_retries(attempt, self.retry, self.where, sleep=self._sleep, rng=self._rng,
                                 on_retry=self._count_retry)  # fmt: skip

    def _count_retry(self) -> None:
        with self._lock:
            self.stats["retries"] += 1

    # ------------------------------------------------------------------ discovery
    def remote_model(self) -> RemoteModel:
        """The checked model metadata (read once; a failure is raised and tried again next time)."""
        model = self._model
        if model is not None:
            return model
        resp = self._call("GET", self._model_url)
        try:
            meta = json.loads(resp.data)
            inputs, outputs = meta["inputs"], meta["outputs"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EndpointResponseError(
                self.where, 200, "MalformedMetadata", "the model metadata is not v2 JSON"
            ) from exc
        model = self._check(inputs, outputs)
        if self.output == "auto":
            probe = probe_frames(self.spec.height, self.spec.width)[1:]
            out = self._infer(model, probe)
            model = RemoteModel(model.input_name, model.layout, model.datatype, model.batched, model.output_name,
                                raw=looks_raw(out[0]))  # fmt: skip
        else:
            model = RemoteModel(model.input_name, model.layout, model.datatype, model.batched, model.output_name,
                                raw=self.output == "raw")  # fmt: skip
        self.decoder.raw = model.raw
        log.info(
            "inference server %s: input %s %s %s, output %s (%s), %s",
            self.where, model.input_name, model.datatype, model.layout, model.output_name,
            "raw" if model.raw else "decoded", "batched" if model.batched else "one frame per request",
        )  # fmt: skip
        self._model = model
        return model

    def _check(self, inputs: Any, outputs: Any) -> RemoteModel:
        h, w = self.spec.height, self.spec.width

        def bad(why: str) -> EndpointRequestError:
            return EndpointRequestError(self.where, None, "NotAYoloxModel", why)

        if not isinstance(inputs, list) or len(inputs) != 1:
            raise bad(
                f"expected one image input, the server lists {len(inputs) if isinstance(inputs, list) else inputs!r}"
            )
        inp = inputs[0]
        name, dtype, shape = inp.get("name"), inp.get("datatype"), inp.get("shape")
        if not isinstance(shape, list) or len(shape) != 4 or dtype not in DTYPES:
            raise bad(f"input {name!r} is {dtype} {shape}; expected FP32/FP16 [N,3,H,W] or UINT8 [N,H,W,3]")
        if dtype == "UINT8" and shape[3] == 3:
            layout: Literal["nchw", "nhwc"] = "nhwc"
            size = (shape[1], shape[2])
        elif dtype != "UINT8" and shape[1] == 3:
            layout, size = "nchw", (shape[2], shape[3])
        else:
            raise bad(f"input {name!r} is {dtype} {shape}; expected FP32/FP16 [N,3,H,W] or UINT8 [N,H,W,3]")
        if size != (h, w):
            raise bad(
                f"the server's model takes {size[1]}x{size[0]} images; detector.input_size says {w}x{h}"
            )
        if shape[0] not in (-1, 1):
            raise bad(f"input {name!r} has a fixed batch of {shape[0]}; export it with batch -1 or 1")
        if not isinstance(outputs, list) or not outputs:
            raise bad("the model lists no outputs")
        chosen = None
        for out in outputs:
            if self.output_name is None or out.get("name") == self.output_name:
                chosen = out
                break
        if chosen is None:
            raise bad(
                f"no output named {self.output_name!r} (the model has {[o.get('name') for o in outputs]})"
            )
        oshape = chosen.get("shape")
        if chosen.get("datatype") not in ("FP32", "FP16") or not isinstance(oshape, list) or len(oshape) != 3:
            raise bad(
                f"output {chosen.get('name')!r} is {chosen.get('datatype')} {oshape}; expected FP32 [N,anchors,5+classes]"
            )
        if oshape[1] not in (-1, self.anchors) or (oshape[2] != -1 and oshape[2] < 6):
            raise bad(
                f"output {chosen.get('name')!r} has shape {oshape}; a {w}x{h} YOLOX head has {self.anchors} anchors"
            )
        return RemoteModel(str(name), layout, str(dtype), shape[0] == -1, str(chosen["name"]))

    # ------------------------------------------------------------------ inference
    def _tensor(self, model: RemoteModel, images: U8) -> npt.NDArray[Any]:
        if model.layout == "nhwc":
            return np.ascontiguousarray(images)
        x = self.spec.to_tensor(images)
        return x if model.datatype == "FP32" else x.astype(np.float16)

    def _infer(self, model: RemoteModel, images: U8) -> F32:
        """[N,H,W,3] letterboxed images -> [N, anchors, 5+classes] head outputs (one request)."""
        x = self._tensor(model, images)
        n = int(x.shape[0])
        head: dict[str, Any] = {
            "inputs": [{"name": model.input_name, "shape": list(x.shape), "datatype": model.datatype}]
        }
        if self.binary:
            raw = x.tobytes()
            head["inputs"][0]["parameters"] = {"binary_data_size": len(raw)}
            head["outputs"] = [{"name": model.output_name, "parameters": {"binary_data": True}}]
            js = json.dumps(head, separators=(",", ":")).encode()
            body = js + raw
            headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(js))}
        else:
            head["inputs"][0]["data"] = x.reshape(-1).tolist()
            head["outputs"] = [{"name": model.output_name}]
            body = json.dumps(head, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json"}
        resp = self._call("POST", self._model_url + "/infer", body, headers)
        out = self._parse(resp, model.output_name)
        if out.ndim != 3 or out.shape[0] != n or out.shape[1] != self.anchors or out.shape[2] < 6:
            raise EndpointResponseError(
                self.where, 200, "MalformedResponse",
                f"output {model.output_name!r} has shape {list(out.shape)}; expected [{n}, {self.anchors}, 5+classes]",
            )  # fmt: skip
        return out

    def _parse(self, resp: Any, name: str) -> F32:
        data: bytes = resp.data
        length = resp.headers.get(HEADER_LENGTH)

        def bad(why: str) -> EndpointResponseError:
            return EndpointResponseError(self.where, 200, "MalformedResponse", why)

        try:
            js_len = int(length) if length is not None else len(data)
            if not 0 < js_len <= len(data):
                raise bad(f"{HEADER_LENGTH} {length} does not fit a {len(data)}-byte answer")
            doc = json.loads(data[:js_len])
            outputs = doc["outputs"]
            offset = js_len
            for out in outputs:
                size = int((out.get("parameters") or {}).get("binary_data_size", 0) or 0)
                if out.get("name") != name:
                    offset += size
                    continue
                dtype = DTYPES.get(out.get("datatype"))
                shape = [int(d) for d in out["shape"]]
                if dtype is None or dtype is np.uint8:
                    raise bad(f"output {name!r} has datatype {out.get('datatype')!r}")
                if size:
                    if offset + size > len(data):
                        raise bad(f"output {name!r} needs {size} bytes, the answer has {len(data) - offset}")
                    arr = np.frombuffer(
                        data, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=offset
                    )
                else:
                    arr = np.asarray(out["data"], dtype=dtype)
                if arr.size != int(np.prod(shape)):
                    raise bad(f"output {name!r} has {arr.size} values for shape {shape}")
                return arr.reshape(shape).astype(np.float32, copy=False)
        except EndpointResponseError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise bad(f"the answer is not v2 inference JSON ({type(exc).__name__})") from exc
        raise bad(f"the answer has no output {name!r}")

    def detect_sync(self, frames: Sequence[PreparedFrame]) -> list[Detections]:
        if not frames:
            return []
        images = stack_frames(frames, self.spec, f"model {self.where}")
        model = self.remote_model()
        step = self.max_batch if model.batched else 1
        out: list[F64] = []
        for i in range(0, len(frames), step):
            head = self._infer(model, images[i : i + step])
            out.extend(self.decoder.frames(head, frames[i : i + step], self.postprocess))
        with self._lock:
            self.stats["frames"] += len(frames)
        return as_detections(out)

    def close(self) -> None:
        super().close()
        self._http.clear()


__all__ = ["EndpointError", "OipDetector", "RemoteModel", "public_url"]
