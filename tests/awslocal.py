"""A local AWS endpoint for the operations moto does not answer usefully (Rekognition's detectors,
SageMaker's CreateLabelingJob): it checks each request against botocore's service model, records
it, and answers with what a handler computes; everything else is forwarded to moto unchanged.

Handlers are plain functions of the validated request; ``throttle[op] = n`` makes the next n calls
of ``op`` fail with ThrottlingException, as a busy account's would.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.session import get_session
from botocore.validate import ParamValidator

SERVICES = {"RekognitionService": "rekognition", "SageMaker": "sagemaker"}


class AwsLocal:
    def __init__(self, moto_url: str) -> None:
        parts = urllib.parse.urlsplit(moto_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self.throttle: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.invalid: list[str] = []  # requests botocore's model rejects (should stay empty)
        self._models = {s: get_session().get_service_model(s) for s in SERVICES.values()}
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _forward(self, body: bytes) -> None:
                drop = ("transfer-encoding", "content-length", "host")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in drop}
                headers["Content-Length"] = str(len(body))
                headers["Host"] = f"{outer.host}:{outer.port}"
                conn = http.client.HTTPConnection(outer.host, outer.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    res = conn.getresponse()
                    status, out_headers, data = res.status, res.getheaders(), res.read()
                finally:
                    conn.close()
                self.send_response(status)
                for k, v in out_headers:
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():  # trailers
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()

            def _handle(self) -> None:
                body = self._body()
                target = self.headers.get("X-Amz-Target", "")
                prefix, _, op = target.partition(".")
                if prefix not in SERVICES or op not in outer.handlers:
                    return self._forward(body)
                params = json.loads(body or b"{}")
                model = outer._models[SERVICES[prefix]].operation_model(op)
                report = ParamValidator().validate(params, model.input_shape)
                if report.has_errors():
                    outer.invalid.append(f"{op}: {report.generate_report()}")
                    return self._answer(
                        400, {"__type": "ValidationException", "message": report.generate_report()}
                    )
                with outer._lock:
                    outer.requests.append((op, params))
                    if outer.throttle.get(op, 0) > 0:
                        outer.throttle[op] -= 1
                        return self._answer(
                            400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
                        )
                try:
                    return self._answer(200, outer.handlers[op](params))
                except KeyError as exc:
                    return self._answer(400, {"__type": "ResourceNotFoundException", "message": str(exc)})

            do_POST = _handle
            do_GET = _handle
            do_PUT = _handle
            do_DELETE = _handle
            do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def calls(self, op: str) -> list[dict[str, Any]]:
        return [p for o, p in self.requests if o == op]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def image_bytes(params: dict[str, Any], s3: Any = None) -> bytes:
    """The image of a Rekognition request: its Bytes (base64 on the wire), or its S3Object read from S3."""
    image = params["Image"]
    if "Bytes" in image:
        return base64.b64decode(image["Bytes"])
    obj = image["S3Object"]
    return bytes(s3.get_object(Bucket=obj["Bucket"], Key=obj["Name"])["Body"].read())
