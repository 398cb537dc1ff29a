"""The Open Inference Protocol client's parsing of answers and errors, on hand-made bytes (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from detector_client.base import InputSpec
from detector_client.errors import EndpointResponseError
from detector_client.oip_backend import OipDetector, _error_text, public_url


@dataclass
class Resp:
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _binary_answer(arr: np.ndarray, name: str = "output") -> Resp:
    raw = arr.astype(np.float32).tobytes()
    head = {"outputs": [{"name": name, "datatype": "FP32", "shape": list(arr.shape),
                         "parameters": {"binary_data_size": len(raw)}}]}  # fmt: skip
    js = json.dumps(head).encode()
    return Resp(js + raw, {"Inference-Header-Content-Length": str(len(js))})


@pytest.fixture
def det() -> OipDetector:
    return OipDetector("http://u:pw@127.0.0.1:9/base", "yolox", InputSpec(64, 64))


def test_binary_and_json_answers_give_the_same_array(det: OipDetector) -> None:
    arr = np.arange(2 * 3 * 7, dtype=np.float32).reshape(2, 3, 7) / 7
    got = det._parse(_binary_answer(arr), "output")
    np.testing.assert_array_equal(got, arr)
    js = {
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [2, 3, 7], "data": arr.ravel().tolist()}]
    }
    np.testing.assert_allclose(det._parse(Resp(json.dumps(js).encode()), "output"), arr, rtol=1e-7)


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda r: Resp(r.data[:-10], r.headers), "needs"),
        (lambda r: Resp(r.data, {"Inference-Header-Content-Length": "999999"}), "does not fit"),
        (lambda r: Resp(b"<html>502 Bad Gateway</html>"), "not v2 inference JSON"),
        (lambda r: Resp(r.data.replace(b'"output"', b'"other!"'), r.headers), "no output 'output'"),
        (lambda r: Resp(r.data.replace(b'"FP32"', b'"FP64"'), r.headers), "datatype"),
        (lambda r: Resp(r.data.replace(b"[2, 3, 7]", b"[2, 3, 8]"), r.headers), "values for shape"),
    ],
)
def test_malformed_answers_are_typed_errors(det: OipDetector, mangle, why: str) -> None:  # type: ignore[no-untyped-def]
    good = _binary_answer(np.zeros((2, 3, 7), np.float32))
    with pytest.raises(EndpointResponseError, match=why) as ei:
        det._parse(mangle(good), "output")
    assert ei.value.code == "MalformedResponse" and "pw" not in str(ei.value)


def test_a_server_traceback_is_cut_to_its_exception_line() -> None:
    body = json.dumps({"error": "Failed to process the request(s) for model 'm', message: Traceback (most recent "
                       "call last):\n  File \"x.py\", line 3, in f\n    raise ValueError('bad pixels')\n"
                       "ValueError: bad pixels\n\nAt:\n  x.py(3): f\n"}).encode()  # fmt: skip
    assert (
        _error_text(body)
        == "Failed to process the request(s) for model 'm', message (ValueError: bad pixels)"
    )
    assert _error_text(b"upstream connect error") == "upstream connect error"


def test_urls_shown_without_credentials(det: OipDetector) -> None:
    assert (
        public_url("https://admin:s3cret@triton.example:8443/kserve/") == "https://triton.example:8443/kserve"
    )
    assert det.where == "yolox at http://127.0.0.1:9/base" and "pw" not in det.where
    assert det._model_url == "http://127.0.0.1:9/base/v2/models/yolox"
    assert det._headers["authorization"].startswith("Basic ")
