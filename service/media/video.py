"""Decoding video with PyAV: files, and (later) network streams. Audio and data tracks are ignored."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from service.errors import SourceError, redact_url

if TYPE_CHECKING:
    from detector_client.base import InputSpec, PreparedFrame


def keep_freed_frame_buffers() -> bool:
    """glibc: serve frame-sized buffers from the heap and keep freed ones for reuse (process-wide).

    Each decoded frame is converted into fresh multi-megabyte buffers. By default glibc maps every
    one with mmap and unmaps it on free, so each frame pays page faults on brand-new memory: at 720p
    that is about a fifth of the decode threads' time. Raising the mmap threshold (and the trim
    threshold with it) keeps those buffers in the heap for the next frame. Returns False where the
    C library is not glibc (nothing changed). Called by the commands that decode video.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 64 << 20)) and bool(mallopt(m_trim_threshold, 128 << 20))


def tune_for_decoding() -> None:
    """Process-wide settings for the commands that decode video (called once at their start).

    - ``keep_freed_frame_buffers`` (glibc).
    - OpenCV in the calling thread only: each stream already decodes and letterboxes in its own
      thread, and OpenCV's pool (one worker per core, spinning between jobs) doubled the CPU
      time of the sub-millisecond letterbox calls (0.3 -> 0.6 ms per 720p frame measured).
    """
    import cv2

    keep_freed_frame_buffers()
    cv2.setNumThreads(1)


#: PyAV (AVColorSpace) colorspace codes -> YCbCr matrix names of ``detector_client.base``.
#: Anything else (unspecified, RGB, ...) is read as BT.601, as swscale does.
_MATRICES = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
_YUV420 = {"yuv420p": False, "yuvj420p": True}  # format -> full range by format


def prepare_frame(frame: Any, spec: InputSpec, stream: str = "", index: int = 0) -> PreparedFrame:
    """Letterbox a decoded PyAV frame for a detector: scaled and converted once, from its planes.

    8-bit 4:2:0 frames (nearly all camera and file video) go straight from their Y/U/V planes to
    the letterboxed image (``InputSpec.prepare_yuv420``) with the frame's colour matrix and range,
    as swscale would read them; other formats, and ``spec.letterbox == "exact"``, are converted to
    BGR first (``to_bgr``) and resized from there.
    """
    full = _YUV420.get(frame.format.name)
    if full is None or spec.letterbox == "exact":
        return spec.prepare(to_bgr(frame), stream=stream, index=index)
    w, h = frame.width, frame.height
    cw, ch = (w + 1) // 2, (h + 1) // 2

    def plane(i: int, pw: int, ph: int) -> npt.NDArray[np.uint8]:
        p = frame.planes[i]  # rows of line_size bytes (padded): a view, no copy
        return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:ph, :pw]

    y, u, v = plane(0, w, h), plane(1, cw, ch), plane(2, cw, ch)
    return spec.prepare_yuv420(
        y, u, v, matrix=_MATRICES.get(int(frame.colorspace), "bt601"),
        full_range=full or int(frame.color_range) == 2, stream=stream, index=index,
    )  # fmt: skip


def to_bgr(frame: Any) -> npt.NDArray[np.uint8]:
    """A decoded PyAV video frame as an HxWx3 BGR array, converted by swscale in the calling thread.

    PyAV's default (``threads=0``) makes a new swscale context per frame that starts its own
    worker threads each time: two thread creations per frame, and on 2 cores about 0.15-0.4 ms
    more CPU per 720p frame for the same pixels (checked identical). Every stream already decodes
    in its own thread, so one conversion thread is what we want.
    """
    return frame.to_ndarray(format="bgr24", threads=1)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    index: int  # 1-based, in decode order
    pts: float | None  # presentation time, seconds
    image: npt.NDArray[np.uint8]  # BGR


def open_video(
    url: str, options: dict[str, str] | None = None, timeout: float | tuple[float, float] | None = None
) -> Any:
    """Open a container and check it has a video stream; ``SourceError`` with a redacted URL."""
    import time

    import av

    open_timeout = timeout[0] if isinstance(timeout, tuple) else timeout
    t0 = time.monotonic()

    def timed_out() -> bool:
        return open_timeout is not None and "://" in url and time.monotonic() - t0 >= 0.9 * open_timeout

    try:
        container = av.open(url, options=options or {}, timeout=timeout)
    except FileNotFoundError as exc:
        raise SourceError(url, "no such file") from exc
    except av.error.InvalidDataError as exc:
        if timed_out():
            raise SourceError(url, f"timed out: no answer in {open_timeout:g}s") from exc
        raise SourceError(url, "not a video (FFmpeg cannot parse it)") from exc
    except av.error.FFmpegError as exc:
        if timed_out():
            raise SourceError(url, f"timed out: no answer in {open_timeout:g}s") from exc
        raise SourceError(url, f"cannot open: {_ffmpeg_reason(exc, url)}") from exc
    except OSError as exc:
        raise SourceError(url, f"cannot open: {exc.strerror or type(exc).__name__}") from exc
    if not container.streams.video:
        container.close()
        raise SourceError(url, "has no video stream")
    return container


def _ffmpeg_reason(exc: Exception, url: str) -> str:
    text = str(exc).replace(url, redact_url(url))
    return text[:300]


def video_info(url: str) -> dict[str, Any]:
    c = open_video(url)
    try:
        s = c.streams.video[0]
        rate = float(s.average_rate) if s.average_rate else None
        return {
            "width": s.codec_context.width,
            "height": s.codec_context.height,
            "fps": rate,
            "frames": s.frames or None,
        }
    finally:
        c.close()


def ended_early(decoded: int, expected: int) -> bool:
    """Fewer frames decoded than the container says it holds (one frame of slack: edit lists)."""
    return expected > 0 and decoded + 1 < expected


def iter_decoded(url: str, max_frames: int | None = None) -> Iterator[tuple[int, float | None, Any]]:
    """Every video frame of a file, in order, as ``(index, pts seconds, PyAV frame)`` (FFmpeg's threads)."""
    import av

    container = open_video(url)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else None
        index = 0
        try:
            for frame in container.decode(stream):
                index += 1
                yield index, (frame.pts * tb if (frame.pts is not None and tb) else None), frame
                if max_frames is not None and index >= max_frames:
                    return
        except av.error.FFmpegError as exc:
            raise SourceError(url, f"decode failed after {index} frames: {_ffmpeg_reason(exc, url)}") from exc
        expected = stream.frames or 0
        if ended_early(index, expected):
            raise SourceError(
                url, f"ended early: {index} of its {expected} frames decoded (truncated or damaged)"
            )
    finally:
        container.close()


def iter_frames(url: str, max_frames: int | None = None) -> Iterator[DecodedFrame]:
    """Every video frame of a file, in order, as BGR arrays (decoded in FFmpeg's threads)."""
    for index, pts, frame in iter_decoded(url, max_frames):
        yield DecodedFrame(index, pts, to_bgr(frame))


def iter_prepared(url: str, spec: InputSpec, max_frames: int | None = None) -> Iterator[PreparedFrame]:
    """Every video frame of a file, in order, letterboxed for a detector as the service does it."""
    for index, _pts, frame in iter_decoded(url, max_frames):
        yield prepare_frame(frame, spec, stream="video", index=index)
