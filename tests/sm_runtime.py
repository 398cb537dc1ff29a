"""A local server speaking the SageMaker Runtime InvokeEndpoint route, backed by the real handler.

``POST /endpoints/{name}/invocations`` runs ``deploy.sagemaker.inference`` (input_fn, predict_fn,
output_fn) on a real model, as the container behind an endpoint would; a container-side 4xx/5xx is
answered the way SageMaker does, as a 424 ``ModelError`` carrying ``OriginalStatusCode``. Failures
can be injected (``fail_next``) to exercise the client's error handling: throttling, 429, 503, 500,
timeouts, malformed bodies. boto3 talks to it with ``endpoint_url``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from deploy.sagemaker import inference


class RuntimeServer:
    def __init__(self, model: Any, endpoints: tuple[str, ...] = ("yolox",)) -> None:
        self.model = model
        self.endpoints = set(endpoints)
        self.requests: list[dict[str, Any]] = []
        self._faults: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                server._handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RuntimeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(self, times: int = 1, **fault: Any) -> None:
        """Queue a fault: status/error_type/message, or sleep (seconds), or body (raw 200 body)."""
        with self._lock:
            for _ in range(times):
                self._faults.append(fault)

    def _reply(
        self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, error_type: str | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("x-amzn-RequestId", "local-test")
        if error_type:
            h.send_header(
                "x-amzn-ErrorType", f"{error_type}:http://internal.amazon.com/coral/com.amazon.sagemaker/"
            )
        h.end_headers()
        h.wfile.write(body)

    def _error(
        self, h: BaseHTTPRequestHandler, status: int, error_type: str, message: str, **extra: Any
    ) -> None:
        self._reply(
            h, status, json.dumps({"message": message, **extra}).encode(), "application/json", error_type
        )

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        parts = h.path.strip("/").split("/")
        ctype = h.headers.get("Content-Type", "")
        with self._lock:
            self.requests.append({"path": h.path, "bytes": len(body), "content_type": ctype,
                                  "variant": h.headers.get("X-Amzn-SageMaker-Target-Variant")})  # fmt: skip
            fault = self._faults.popleft() if self._faults else None
        if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
            self._error(h, 404, "UnknownOperationException", f"no route {h.path}")
            return
        if parts[1] not in self.endpoints:
            self._error(h, 400, "ValidationError", f"Endpoint {parts[1]} of account 000000000000 not found.")
            return
        if fault:
            if "sleep" in fault:
                time.sleep(fault["sleep"])
            elif "body" in fault:
                self._reply(h, 200, fault["body"], "application/json")
                return
            else:
                self._error(
                    h,
                    fault["status"],
                    fault["error_type"],
                    fault.get("message", "injected"),
                    **fault.get("extra", {}),
                )
                return
        status, out, out_type = inference.handle(
            self.model, body, ctype, h.headers.get("Accept", "application/json")
        )
        if status != 200:
            msg = json.loads(out).get("error", "")
            self._error(
                h, 424, "ModelError", f"Received client error ({status}) from primary with message \"{msg}\"",
                OriginalStatusCode=status, OriginalMessage=msg,
                LogStreamArn="arn:aws:logs:eu-west-1:000000000000:log-group:/aws/sagemaker/Endpoints/x",
            )  # fmt: skip
            return
        self._reply(h, 200, out, out_type)
