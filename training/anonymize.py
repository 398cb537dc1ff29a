"""``trackcast anonymize``: blur faces and licence plates before a labelling workforce sees a frame.

Detectors:

- ``opencv`` (default, no model file, no network): the Haar cascades that opencv-python ships,
  ``haarcascade_frontalface_alt2`` and ``haarcascade_profileface`` (both directions) for faces,
  ``haarcascade_russian_plate_number`` for plates. Fast enough for frames, honest about what it
  misses (see ``loadtest.bench_anonymize`` for its recall on the LFW faces scikit-image ships).
- ``rekognition``: Amazon Rekognition DetectFaces (faces) and DetectText (text lines: plates,
  names on shirts), boxes given as ratios of the frame.

Each region is grown by ``pad`` (a fraction of its size) and blurred with a Gaussian kernel as large
as the region: nothing outside the regions changes. Inputs: a folder (or ``s3://`` prefix) of frames,
a video (re-encoded, H.264), or a catalog (``--catalog``): each frame's anonymised copy is written to
``--out`` under the raw frame's name and its location recorded in the catalog. ``regions.jsonl``
next to the copies lists what was blurred per frame, for review.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training import storage as st
from training.errors import TrainingError

Box = tuple[int, int, int, int, str]  # x, y, w, h, kind ("face" / "plate" / "text")


class AnonymizeError(TrainingError, ValueError):
    pass


class CascadeDetector:
    name = "opencv"

    def __init__(self, faces: bool = True, plates: bool = True, min_size: int = 20) -> None:
        import cv2

        folder = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]  # opencv-python's data files

        def load(file: str) -> Any:
            c = cv2.CascadeClassifier(str(folder / file))
            if c.empty():
                raise AnonymizeError(f"OpenCV's {file} cannot be loaded from {folder}")
            return c

        self.faces = (
            [load("haarcascade_frontalface_alt2.xml"), load("haarcascade_profileface.xml")] if faces else []
        )
        self.plates = [load("haarcascade_russian_plate_number.xml")] if plates else []
        self.min_size = min_size

    def detect(self, bgr: np.ndarray, data: bytes = b"", uri: str = "") -> list[Box]:
        import cv2

        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        w = gray.shape[1]
        out: list[Box] = []
        for k, c in enumerate(self.faces):
            passes = [(gray, False)] + (
                [(cv2.flip(gray, 1), True)] if k == 1 else []
            )  # profiles face both ways
            for img, flipped in passes:
                for x, y, bw, bh in c.detectMultiScale(img, 1.1, 3, minSize=(self.min_size, self.min_size)):
                    out.append((int(w - x - bw if flipped else x), int(y), int(bw), int(bh), "face"))
        for c in self.plates:
            for x, y, bw, bh in c.detectMultiScale(
                gray, 1.1, 4, minSize=(self.min_size * 2, self.min_size // 2)
            ):
                out.append((int(x), int(y), int(bw), int(bh), "plate"))
        return merge_boxes(out)


class RekognitionDetector:
    name = "rekognition"

    def __init__(self, clients: Any, min_confidence: float = 50.0) -> None:
        self.client = clients("rekognition")
        self.min_confidence = min_confidence

    def _call(self, op: str, image: dict[str, Any], where: str) -> dict[str, Any]:
        try:
            res: dict[str, Any] = getattr(self.client, op)(Image=image)
            return res
        except Exception as exc:
            from deploy.sagemaker.manage import explain_aws_error

            raise AnonymizeError(str(explain_aws_error(exc, f"Rekognition {op}, {where}"))) from exc

    def detect(self, bgr: np.ndarray, data: bytes = b"", uri: str = "") -> list[Box]:
        h, w = bgr.shape[:2]
        if st.is_s3(uri):
            bucket, key = st.split_s3(uri)
            image: dict[str, Any] = {"S3Object": {"Bucket": bucket, "Name": key}}
        else:
            image = {"Bytes": data or _jpeg(bgr)}

        def box(bb: dict[str, Any], kind: str) -> Box:
            x, y = float(bb.get("Left", 0)) * w, float(bb.get("Top", 0)) * h
            return (
                round(x),
                round(y),
                round(float(bb.get("Width", 0)) * w),
                round(float(bb.get("Height", 0)) * h),
                kind,
            )

        out = [box(f["BoundingBox"], "face") for f in self._call("detect_faces", image, uri or "frame")["FaceDetails"]
               if float(f.get("Confidence", 100)) >= self.min_confidence]  # fmt: skip
        for t in self._call("detect_text", image, uri or "frame").get("TextDetections", []):
            if t.get("Type") == "LINE" and float(t.get("Confidence", 100)) >= self.min_confidence:
                out.append(box(t["Geometry"]["BoundingBox"], "text"))
        return merge_boxes(out)


def _jpeg(bgr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return buf.tobytes() if ok else b""


def merge_boxes(boxes: list[Box], iou: float = 0.3) -> list[Box]:
    """Overlapping detections of one object (several cascades, scales) as one box: their union."""
    out: list[list[Any]] = []
    for x, y, w, h, kind in sorted(boxes, key=lambda b: (-b[2] * b[3], b[0], b[1], b[4])):
        for o in out:
            ix = max(0, min(x + w, o[0] + o[2]) - max(x, o[0]))
            iy = max(0, min(y + h, o[1] + o[3]) - max(y, o[1]))
            inter = ix * iy
            if (inter and inter / (w * h + o[2] * o[3] - inter) >= iou) or inter >= 0.8 * w * h:
                x2, y2 = max(x + w, o[0] + o[2]), max(y + h, o[1] + o[3])
                o[0], o[1] = min(x, o[0]), min(y, o[1])
                o[2], o[3] = x2 - o[0], y2 - o[1]
                break
        else:
            out.append([x, y, w, h, kind])
    return [(int(a), int(b), int(c), int(d), str(k)) for a, b, c, d, k in out]


def grow(box: Box, pad: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The region blurred for a box: grown by ``pad`` of its size on each side, inside the frame."""
    x, y, w, h, _k = box
    dx, dy = round(w * pad), round(h * pad)
    x1, y1 = max(0, x - dx), max(0, y - dy)
    x2, y2 = min(width, x + w + dx), min(height, y + h + dy)
    return x1, y1, x2, y2


def blur(bgr: np.ndarray, boxes: list[Box], pad: float = 0.15) -> np.ndarray:
    """A copy of ``bgr`` with every region blurred beyond recognition; every other pixel as it was."""
    import cv2

    out = bgr.copy()
    h, w = bgr.shape[:2]
    for b in boxes:
        x1, y1, x2, y2 = grow(b, pad, w, h)
        if x2 <= x1 or y2 <= y1:
            continue
        roi = out[y1:y2, x1:x2]
        k = max(3, (max(x2 - x1, y2 - y1) // 2) | 1)
        # pixelate, then blur: no detail of the face survives, whatever its size
        small = cv2.resize(
            roi, (max(1, (x2 - x1) // 12), max(1, (y2 - y1) // 12)), interpolation=cv2.INTER_AREA
        )
        out[y1:y2, x1:x2] = cv2.GaussianBlur(
            cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR), (k, k), 0
        )
    return out


def _encode(img: np.ndarray, name: str) -> bytes:
    import cv2

    ext = Path(name).suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise AnonymizeError(f"{name}: cannot be encoded as {ext}")
    return buf.tobytes()


def anonymize_images(items: list[tuple[str, str]], out: str, detector: Any, store: st.Storage, pad: float = 0.15,
                     on_done: Callable[[str, str, list[Box]], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Each ``(source uri, output name)``: read, detect, blur, write to ``out``; regions.jsonl at the end."""
    import cv2

    t0 = time.perf_counter()
    regions = []
    kinds: dict[str, int] = {}
    for uri, name in items:
        data = store.read(uri)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise AnonymizeError(f"{uri}: not an image OpenCV can read")
        boxes = detector.detect(img, data, uri)
        dest = st.join(out, name)
        store.write(dest, _encode(blur(img, boxes, pad), name))
        regions.append({"frame": name, "source": uri, "regions": [list(b) for b in boxes]})
        for b in boxes:
            kinds[b[4]] = kinds.get(b[4], 0) + 1
        if on_done is not None:
            on_done(uri, dest, boxes)
    store.write(st.join(out, "regions.jsonl"), "".join(json.dumps(r) + "\n" for r in regions))
    return {"out": out, "frames": len(items), "detector": detector.name, "regions": kinds,
            "seconds": round(time.perf_counter() - t0, 2), "regions_file": st.join(out, "regions.jsonl")}  # fmt: skip


def anonymize_video(
    video: str, out: str, detector: Any, pad: float = 0.15, max_frames: int | None = None
) -> dict[str, Any]:
    """A video's frames blurred and re-encoded (H.264 MP4)."""
    from service.errors import SourceError
    from service.media.offline import VideoWriter
    from service.media.video import iter_frames, video_info

    t0 = time.perf_counter()
    try:
        info = video_info(video)
        writer = VideoWriter(out, info["width"], info["height"], info["fps"] or 25.0)
        kinds: dict[str, int] = {}
        n = 0
        for f in iter_frames(video, max_frames):
            boxes = detector.detect(f.image)
            writer.write(blur(f.image, boxes, pad))
            for b in boxes:
                kinds[b[4]] = kinds.get(b[4], 0) + 1
            n += 1
        writer.close()
    except SourceError as exc:
        raise AnonymizeError(str(exc)) from exc
    return {"out": out, "frames": n, "detector": detector.name, "regions": kinds,
            "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
