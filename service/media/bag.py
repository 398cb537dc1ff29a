"""ROS 1 and ROS 2 bags as a frame source, read with rosbags (pure Python: no ROS install).

A bag is a ROS 1 ``.bag`` file or a ROS 2 bag folder (``metadata.yaml`` with SQLite ``.db3`` or
``.mcap`` storage). Its ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` topics are
frame sources: every message in the bag's timestamp order, as BGR images, with its time. Raw
encodings: ``bgr8``, ``rgb8``, ``bgra8``, ``rgba8``, ``mono8``, ``mono16``, ``8UC1``/``8UC3``,
``bayer_{rggb,bggr,gbrg,grbg}8``, ``yuv422`` (UYVY) and ``yuv422_yuy2``; compressed: whatever
OpenCV decodes (JPEG, PNG). A frame's time is the bag's record timestamp (what a replay paces by);
``stamp_ns`` is the message header's.

``Bag`` is used by ``trackcast bag list|extract``, ``track``/``detect`` on a bag and the service's
replay source. Every failure is a ``SourceError`` naming the bag (and the topic or message).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.errors import SourceError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)

# ROS image encodings -> (channels, OpenCV conversion to BGR or None)
_BAYER = {  # ROS names the 2x2 pattern from the top-left; OpenCV from the second row and column
    "bayer_rggb8": "COLOR_BayerBG2BGR",
    "bayer_bggr8": "COLOR_BayerRG2BGR",
    "bayer_gbrg8": "COLOR_BayerGR2BGR",
    "bayer_grbg8": "COLOR_BayerGB2BGR",
}
RAW_ENCODINGS = ("bgr8", "rgb8", "bgra8", "rgba8", "mono8", "mono16", "8UC1", "8UC3", "16UC1",
                 "yuv422", "uyvy", "yuv422_yuy2", "yuyv", *_BAYER)  # fmt: skip


def is_bag(path: str) -> bool:
    """A ROS 1 ``.bag`` file, or a ROS 2 bag folder (one with ``metadata.yaml``)."""
    p = Path(path[len("file://") :] if path.startswith("file://") else path)
    return p.suffix == ".bag" or (p.is_dir() and (p / "metadata.yaml").is_file())


@dataclass(frozen=True, slots=True)
class TopicInfo:
    topic: str
    msgtype: str
    count: int
    rate_hz: float | None  # messages per second between the topic's first and last message

    @property
    def is_image(self) -> bool:
        return self.msgtype in IMAGE_TYPES


@dataclass(frozen=True, slots=True)
class BagFrame:
    index: int  # 1-based, in the topic's timestamp order
    t_ns: int  # the bag's record timestamp
    stamp_ns: int  # the message header's stamp (0 when the publisher left it unset)
    image: npt.NDArray[np.uint8]  # HxWx3 BGR


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A message as it is stored: JPEG/PNG bytes of a CompressedImage, else a decoded BGR image."""

    index: int
    t_ns: int
    stamp_ns: int
    encoded: bytes | None  # CompressedImage data
    ext: str  # ".jpg" / ".png" for encoded data, "" for raw images
    image: npt.NDArray[np.uint8] | None


def decode_image(msg: Any, msgtype: str, where: str) -> npt.NDArray[np.uint8]:
    """One Image or CompressedImage message as an HxWx3 BGR array; ``ValueError`` naming ``where``."""
    import cv2

    data = np.asarray(msg.data, dtype=np.uint8)
    if msgtype == COMPRESSED:
        fmt = str(msg.format).lower()
        if "compresseddepth" in fmt:
            raise ValueError(f"{where}: compressedDepth images are depth maps, not camera frames")
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is None:
            raise ValueError(f"{where}: {len(data)} bytes of {fmt or 'compressed'} data OpenCV cannot decode")
        return np.asarray(img, np.uint8)
    h, w, step, enc = int(msg.height), int(msg.width), int(msg.step), str(msg.encoding)
    if enc not in RAW_ENCODINGS:
        raise ValueError(
            f"{where}: encoding {enc!r} is not supported (supported: {', '.join(RAW_ENCODINGS)})"
        )
    if h <= 0 or w <= 0:
        raise ValueError(f"{where}: empty image ({w}x{h})")
    channels = {"bgr8": 3, "rgb8": 3, "8UC3": 3, "bgra8": 4, "rgba8": 4, "mono16": 2, "16UC1": 2,
                "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2}.get(enc, 1)  # fmt: skip
    row = w * channels
    if step < row or data.size < step * (h - 1) + row:
        raise ValueError(
            f"{where}: {enc} {w}x{h} needs {row} bytes a row, but step is {step} and data {data.size} bytes"
        )
    if data.size < step * h:  # the last row without its padding
        data = np.concatenate([data, np.zeros(step * h - data.size, np.uint8)])
    rows = data[: step * h].reshape(h, step)[:, :row]
    if enc in ("mono16", "16UC1"):
        pix = rows.reshape(h, w, 2)
        hi = pix[..., 0] if bool(msg.is_bigendian) else pix[..., 1]  # the high byte of each sample
        return _cvt(np.ascontiguousarray(hi), cv2.COLOR_GRAY2BGR)
    if channels == 1:
        gray = np.ascontiguousarray(rows)
        if enc in _BAYER:
            return _cvt(gray, getattr(cv2, _BAYER[enc]))
        return _cvt(gray, cv2.COLOR_GRAY2BGR)
    pix = np.ascontiguousarray(rows).reshape(h, w, channels)
    if enc in ("bgr8", "8UC3"):
        return pix
    conv = {"rgb8": cv2.COLOR_RGB2BGR, "bgra8": cv2.COLOR_BGRA2BGR, "rgba8": cv2.COLOR_RGBA2BGR,
            "yuv422": cv2.COLOR_YUV2BGR_UYVY, "uyvy": cv2.COLOR_YUV2BGR_UYVY,
            "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUY2, "yuyv": cv2.COLOR_YUV2BGR_YUY2}[enc]  # fmt: skip
    return _cvt(pix, conv)


def _cvt(img: npt.NDArray[np.uint8], code: int) -> npt.NDArray[np.uint8]:
    import cv2

    return np.asarray(cv2.cvtColor(img, code), np.uint8)


def _stamp_ns(msg: Any) -> int:
    try:
        return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
    except AttributeError:
        return 0


class Bag:
    """An open bag (a context manager). ``SourceError`` for a missing, unreadable or corrupt bag."""

    def __init__(self, path: str) -> None:
        from rosbags.highlevel import AnyReader, AnyReaderError
        from rosbags.typesys import Stores, get_typestore

        self.path = path[len("file://") :] if path.startswith("file://") else path
        p = Path(self.path)
        if not p.exists():
            raise SourceError(path, "no such file or folder")
        if not is_bag(self.path):
            raise SourceError(path, "not a ROS bag (a ROS 1 .bag file, or a ROS 2 folder with metadata.yaml)")
        try:
            # ROS 2 bags may not embed their message definitions: the standard ones come from Humble.
            self._reader = AnyReader([p], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
            self._reader.open()
        except (AnyReaderError, OSError, ValueError, KeyError) as exc:
            raise SourceError(path, f"not a readable ROS bag: {_reason(exc)}") from exc
        except Exception as exc:  # rosbags' other reader errors (corrupt headers, bad chunks, ...)
            raise SourceError(path, f"not a readable ROS bag: {_reason(exc)}") from exc

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def ros_version(self) -> int:
        return 2 if self._reader.is2 else 1

    @property
    def duration_s(self) -> float:
        return max(0, self._reader.duration) / 1e9 if self._reader.message_count else 0.0

    def topics(self) -> list[TopicInfo]:
        """Every topic: its type, message count and rate (from its first and last timestamps)."""
        return [self._info(name, info) for name, info in sorted(self._reader.topics.items())]

    def _info(self, name: str, info: Any) -> TopicInfo:
        first = last = None
        if info.msgcount > 1:
            for _c, t, _raw in self._messages(info.connections):
                first = t if first is None else first
                last = t
        rate = None
        if first is not None and last is not None and last > first:
            rate = round((info.msgcount - 1) * 1e9 / (last - first), 3)
        return TopicInfo(name, info.msgtype or "?", info.msgcount, rate)

    def image_topic(self, topic: str | None) -> TopicInfo:
        """The topic to read frames from: ``topic``, or the bag's only image topic."""
        infos = {name: info for name, info in self._reader.topics.items()}
        images = sorted(n for n, i in infos.items() if i.msgtype in IMAGE_TYPES)
        if topic is None:
            if not images:
                listed = ", ".join(f"{n} ({i.msgtype})" for n, i in sorted(infos.items())) or "none"
                raise SourceError(
                    self.path, f"has no sensor_msgs/Image or CompressedImage topic (topics: {listed})"
                )
            if len(images) > 1:
                raise SourceError(
                    self.path,
                    f"has {len(images)} image topics ({', '.join(images)}): choose one with --topic",
                )
            topic = images[0]
        info = infos.get(topic)
        if info is None:
            listed = ", ".join(images) or "none"
            raise SourceError(self.path, f"has no topic {topic!r} (image topics: {listed})")
        if info.msgtype not in IMAGE_TYPES:
            raise SourceError(
                self.path, f"topic {topic} is {info.msgtype}, not sensor_msgs/Image or CompressedImage"
            )
        if info.msgcount == 0:
            raise SourceError(self.path, f"topic {topic} has no messages")
        return self._info(topic, info)

    def _messages(self, connections: Any) -> Iterator[tuple[Any, int, bytes]]:
        try:
            yield from self._reader.messages(connections=connections)
        except Exception as exc:  # a damaged chunk or record mid-bag
            raise SourceError(self.path, f"damaged: {_reason(exc)}") from exc

    def _decoded(self, topic: str, max_frames: int | None) -> Iterator[tuple[int, int, Any, str]]:
        conns = self._reader.topics[topic].connections
        for index, (conn, t, raw) in enumerate(self._messages(conns), 1):
            try:
                msg = self._reader.deserialize(raw, conn.msgtype)
            except Exception as exc:
                raise SourceError(
                    self.path, f"topic {topic}, message {index}: cannot be read: {_reason(exc)}"
                ) from exc
            yield index, t, msg, conn.msgtype
            if max_frames is not None and index >= max_frames:
                return

    def frames(self, topic: str, max_frames: int | None = None) -> Iterator[BagFrame]:
        """Every message of an image topic, in timestamp order, as BGR frames."""
        for index, t, msg, msgtype in self._decoded(topic, max_frames):
            try:
                img = decode_image(msg, msgtype, f"topic {topic}, message {index}")
            except ValueError as exc:
                raise SourceError(self.path, str(exc)) from exc
            yield BagFrame(index, t, _stamp_ns(msg), img)

    def raw_frames(self, topic: str, max_frames: int | None = None) -> Iterator[RawFrame]:
        """Every message as stored (compressed data untouched), for extraction."""
        for index, t, msg, msgtype in self._decoded(topic, max_frames):
            if msgtype == COMPRESSED:
                fmt = str(msg.format).lower()
                ext = ".png" if "png" in fmt else ".jpg"
                if "compresseddepth" in fmt:
                    raise SourceError(
                        self.path, f"topic {topic}, message {index}: compressedDepth is not a camera frame"
                    )
                yield RawFrame(index, t, _stamp_ns(msg), bytes(np.asarray(msg.data, np.uint8)), ext, None)
                continue
            try:
                img = decode_image(msg, msgtype, f"topic {topic}, message {index}")
            except ValueError as exc:
                raise SourceError(self.path, str(exc)) from exc
            yield RawFrame(index, t, _stamp_ns(msg), None, "", img)

    def first_frame(self, topic: str) -> BagFrame:
        for f in self.frames(topic, 1):
            return f
        raise SourceError(self.path, f"topic {topic} has no messages")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text or text == "()":
        return f"damaged data ({type(exc).__name__} in rosbags)"
    return text.splitlines()[0][:300]
