"""The batch wire format: round trips and precise errors for malformed payloads."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from detector_client import DetectorInputError, InputSpec, PostProcess, wire


def _frames(n: int = 2) -> list:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    spec = InputSpec(64, 96)
    return [spec.prepare(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8), "s", i) for i in range(n)]


def test_raw_round_trip_is_lossless() -> None:
    frames = _frames()
    pp = PostProcess(0.3, 0.5, (0, 2), clip=False)
    out, got_pp = wire.decode_batch(wire.encode_batch(frames, "raw", pp=pp))
    assert got_pp == pp
    for a, b in zip(frames, out, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert (a.ratio, a.src_width, a.src_height) == (b.ratio, b.src_width, b.src_height)


def test_centred_and_stretched_geometry_travels() -> None:
    from detector_client.formats import spec_for

    img = np.zeros((120, 200, 3), np.uint8)
    for preset in ("ultralytics", "gluoncv"):
        f = spec_for(64, 96, preset).prepare(img, "s", 1)
        (g,), _ = wire.decode_batch(wire.encode_batch([f], "raw"))
        assert (g.pad_x, g.pad_y, g.ratio, g.ratio_y) == (f.pad_x, f.pad_y, f.ratio, f.ratio_y), preset
    assert (f.pad_x, f.pad_y, f.ratio_y) == (0, 0, 64 / 120)  # stretched
    bad = wire.pack(
        "raw", [{**wire.frame_header(f, 64 * 96 * 3), "pad": [500, 0]}], [f.image.tobytes()], None
    )
    with pytest.raises(DetectorInputError, match="frame 0: impossible pad"):
        wire.decode_batch(bad)


def test_jpeg_round_trip() -> None:
    frames = _frames()
    out, pp = wire.decode_batch(wire.encode_batch(frames, "jpeg", 95))
    assert pp is None
    assert all(o.image.shape == f.image.shape for o, f in zip(out, frames, strict=True))


def _body(head: dict, payload: bytes = b"") -> bytes:  # type: ignore[type-arg]
    hj = json.dumps(head).encode()
    return wire.MAGIC + struct.pack("<I", len(hj)) + hj + payload


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "does not start with"),
        (wire.MAGIC + struct.pack("<I", 999) + b"{}", "runs past the end"),
        (_body({"encoding": "png", "frames": []}), "unknown encoding"),
        (_body({"encoding": "raw"}), "no 'frames' list"),
        (_body({"encoding": "raw", "frames": [{"bytes": 10}]}), "frame 0: header needs"),
        (
            _body(
                {
                    "encoding": "raw",
                    "frames": [{"bytes": 10, "height": 2, "width": 2, "ratio": 1, "src": [2, 2]}],
                },
                b"x" * 10,
            ),
            "frame 0: raw frame of 2x2 needs 12 bytes, got 10",
        ),
        (
            _body(
                {
                    "encoding": "raw",
                    "frames": [{"bytes": 12, "height": 2, "width": 2, "ratio": 1, "src": [2, 2]}],
                },
                b"x" * 5,
            ),
            "frame 0: 12 bytes announced, only 5 left",
        ),
        (
            _body(
                {
                    "encoding": "jpeg",
                    "frames": [{"bytes": 4, "height": 2, "width": 2, "ratio": 1, "src": [2, 2]}],
                },
                b"\xff\xd8xx",
            ),
            "frame 0: corrupt JPEG",
        ),
        (
            _body(
                {
                    "encoding": "raw",
                    "frames": [{"bytes": 12, "height": 2, "width": 2, "ratio": 0, "src": [2, 2]}],
                },
                b"x" * 12,
            ),
            "impossible sizes",
        ),
        (_body({"encoding": "raw", "frames": []}, b"trailing"), "8 bytes after the last frame"),
    ],
)
def test_malformed_requests(body: bytes, message: str) -> None:
    with pytest.raises(DetectorInputError, match=message):
        wire.decode_batch(body)


def test_result_round_trip_and_malformed_results() -> None:
    dets = [np.array([[1.23456, 2.0, 30.5, 40.25, 0.912345, 0]]), np.empty((0, 6))]
    back = wire.decode_result(wire.encode_result(dets), 2)
    np.testing.assert_allclose(back[0], [[1.235, 2.0, 30.5, 40.25, 0.91234, 0]], atol=1e-9)
    assert back[1].shape == (0, 6)
    with pytest.raises(ValueError, match="2 frames, request had 3"):
        wire.decode_result(wire.encode_result(dets), 3)
    with pytest.raises(ValueError, match="not JSON"):
        wire.decode_result(b"\x00\x01", 1)
