"""The trackcast batch wire format between the SageMaker client and the serving handler (version 1).

Request, content type ``application/x-trackcast-batch``::

    b"TCB1"                      magic and format version
    uint32 little-endian         length L of the JSON header
    L bytes                      header, UTF-8 JSON (below)
    payload                      the frames' bytes, back to back, in header order

    header = {
      "encoding": "raw" | "jpeg",           # raw: H*W*3 uint8 bytes; jpeg: a JPEG file per frame
      "frames": [{"bytes": n, "height": H, "width": W, "ratio": r, "src": [w, h]}, ...],
      "score_thresh": 0.1, "nms_thresh": 0.45, "classes": [0] | null, "clip": true   # optional
    }

Frames are already letterboxed to the model's input (size, colour order) by the client, so the
endpoint neither resizes nor knows the source resolution beyond ``src`` (for clipping) and ``ratio``
(to map boxes back to source pixels). ``raw`` is lossless (the endpoint's detections equal local
inference) at H*W*3 bytes a frame (519 KB at 416x416); ``jpeg`` is ~10x smaller but lossy.

Response, ``application/json``: ``{"version": 1, "detections": [[[x1, y1, x2, y2, score, class],
...] per frame]}`` in source pixels, boxes rounded to 3 decimals and scores to 5.

The endpoint also accepts a single image (``application/x-image``, ``image/jpeg``, ``image/png``:
a whole frame, any size) and answers ``{"version": 1, "detections": [[x1, ...], ...]}`` for it.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from detector_client.base import PreparedFrame
from detector_client.errors import DetectorInputError
from detector_client.yolox import DEFAULT_NMS_THRESH, DEFAULT_SCORE_THRESH, PostProcess

CONTENT_TYPE = "application/x-trackcast-batch"
IMAGE_TYPES = ("application/x-image", "image/jpeg", "image/png")
MAGIC = b"TCB1"
VERSION = 1
F64 = npt.NDArray[np.float64]


def encode_frame(frame: PreparedFrame, encoding: str, jpeg_quality: int = 90) -> bytes:
    if encoding == "raw":
        return np.ascontiguousarray(frame.image).tobytes()
    if encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise DetectorInputError(f"cannot JPEG-encode frame {frame.stream}#{frame.index}")
        return bytes(buf.tobytes())
    raise ValueError(f"encoding must be 'raw' or 'jpeg', got {encoding!r}")


def frame_header(frame: PreparedFrame, nbytes: int) -> dict[str, Any]:
    h, w = frame.image.shape[:2]
    head: dict[str, Any] = {
        "bytes": nbytes,
        "height": h,
        "width": w,
        "ratio": frame.ratio,
        "src": [frame.src_width, frame.src_height],
    }
    if frame.pad_x or frame.pad_y:  # a centred letterbox (Ultralytics)
        head["pad"] = [frame.pad_x, frame.pad_y]
    if frame.ratio_y:  # a stretched resize (GluonCV)
        head["ratio_y"] = frame.ratio_y
    return head


def pack(
    encoding: str, headers: Sequence[dict[str, Any]], payloads: Sequence[bytes], pp: PostProcess | None
) -> bytes:
    head: dict[str, Any] = {"encoding": encoding, "frames": list(headers)}
    if pp is not None:
        head.update(
            score_thresh=pp.score_thresh,
            nms_thresh=pp.nms_thresh,
            classes=None if pp.classes is None else list(pp.classes),
            clip=pp.clip,
        )
    hj = json.dumps(head, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<I", len(hj)), hj, *payloads])


def header_overhead(n_frames: int) -> int:
    """Upper bound of the bytes a request adds around its frames' payloads."""
    return 512 + 160 * n_frames


def encode_batch(
    frames: Sequence[PreparedFrame],
    encoding: str = "raw",
    jpeg_quality: int = 90,
    pp: PostProcess | None = None,
) -> bytes:
    payloads = [encode_frame(f, encoding, jpeg_quality) for f in frames]
    return pack(
        encoding, [frame_header(f, len(p)) for f, p in zip(frames, payloads, strict=True)], payloads, pp
    )


def _bad(msg: str) -> DetectorInputError:
    return DetectorInputError(f"malformed {CONTENT_TYPE} request: {msg}")


def decode_batch(body: bytes) -> tuple[list[PreparedFrame], PostProcess | None]:
    """Parse a request; every problem is a ``DetectorInputError`` saying what and which frame."""
    if len(body) < 8 or body[:4] != MAGIC:
        raise _bad(f"does not start with {MAGIC!r} (format version {VERSION})")
    (hlen,) = struct.unpack("<I", body[4:8])
    if 8 + hlen > len(body):
        raise _bad(f"header length {hlen} runs past the end of the body ({len(body)} bytes)")
    try:
        head = json.loads(body[8 : 8 + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"header is not JSON ({exc})") from exc
    if not isinstance(head, dict) or not isinstance(head.get("frames"), list):
        raise _bad("header has no 'frames' list")
    encoding = head.get("encoding")
    if encoding not in ("raw", "jpeg"):
        raise _bad(f"unknown encoding {encoding!r} (raw or jpeg)")
    frames: list[PreparedFrame] = []
    pos = 8 + hlen
    for i, fh in enumerate(head["frames"]):
        try:
            n, h, w = int(fh["bytes"]), int(fh["height"]), int(fh["width"])
            ratio = float(fh["ratio"])
            src_w, src_h = (int(v) for v in fh["src"])
            pad_x, pad_y = (int(v) for v in fh.get("pad", (0, 0)))
            ratio_y = float(fh.get("ratio_y", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(f"frame {i}: header needs bytes, height, width, ratio, src ({exc})") from exc
        if n < 0 or h <= 0 or w <= 0 or not ratio > 0 or src_w <= 0 or src_h <= 0:
            raise _bad(f"frame {i}: impossible sizes {fh}")
        if not (0 <= pad_x < w and 0 <= pad_y < h and ratio_y >= 0 and math.isfinite(ratio_y)):
            raise _bad(f"frame {i}: impossible pad {fh.get('pad')} or ratio_y {fh.get('ratio_y')}")
        if pos + n > len(body):
            raise _bad(f"frame {i}: {n} bytes announced, only {len(body) - pos} left")
        data = body[pos : pos + n]
        pos += n
        if encoding == "raw":
            if n != h * w * 3:
                raise _bad(f"frame {i}: raw frame of {w}x{h} needs {h * w * 3} bytes, got {n}")
            img: Any = np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)
        else:
            img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise _bad(f"frame {i}: corrupt JPEG ({n} bytes)")
            if img.shape[:2] != (h, w):
                raise _bad(f"frame {i}: JPEG is {img.shape[1]}x{img.shape[0]}, header says {w}x{h}")
        frames.append(PreparedFrame(img, ratio, src_w, src_h, "", i, pad_x, pad_y, ratio_y))
    if pos != len(body):
        raise _bad(f"{len(body) - pos} bytes after the last frame")
    pp = None
    if any(k in head for k in ("score_thresh", "nms_thresh", "classes", "clip")):
        try:
            classes = head.get("classes")
            pp = PostProcess(
                score_thresh=float(head.get("score_thresh", DEFAULT_SCORE_THRESH)),
                nms_thresh=float(head.get("nms_thresh", DEFAULT_NMS_THRESH)),
                classes=None if classes is None else tuple(int(c) for c in classes),
                clip=bool(head.get("clip", True)),
            )
        except (TypeError, ValueError) as exc:
            raise _bad(f"bad score_thresh/nms_thresh/classes/clip ({exc})") from exc
    return frames, pp


def decode_image(body: bytes) -> npt.NDArray[np.uint8]:
    """A whole frame sent as an image file -> BGR array."""
    if not body:
        raise DetectorInputError("empty image body")
    img: Any = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DetectorInputError(f"corrupt or unsupported image ({len(body)} bytes; JPEG or PNG expected)")
    out: npt.NDArray[np.uint8] = img
    return out


def _rows(d: F64) -> list[list[float]]:
    return [[round(float(r[0]), 3), round(float(r[1]), 3), round(float(r[2]), 3), round(float(r[3]), 3),
             round(float(r[4]), 5), int(r[5])] for r in d]  # fmt: skip


def encode_result(dets: Sequence[F64], single: bool = False) -> bytes:
    body: dict[str, Any] = {"version": VERSION}
    body["detections"] = _rows(dets[0]) if single else [_rows(d) for d in dets]
    return json.dumps(body, separators=(",", ":")).encode()


def decode_result(body: bytes, n_frames: int) -> list[F64]:
    """Parse a batch response; ``ValueError`` saying what is wrong."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"response is not JSON: {exc}") from exc
    if (
        not isinstance(obj, dict)
        or obj.get("version") != VERSION
        or not isinstance(obj.get("detections"), list)
    ):
        raise ValueError(f"response is not a version-{VERSION} trackcast result")
    dets = obj["detections"]
    if len(dets) != n_frames:
        raise ValueError(f"response has {len(dets)} frames, request had {n_frames}")
    out = []
    for i, rows in enumerate(dets):
        try:
            a = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"frame {i}: detections are not [K,6] numbers ({exc})") from exc
        out.append(a)
    return out
