"""ROS bags for the tests, written by rosbags' own writers (ROS 1 ``.bag`` and ROS 2 folders)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

# ROS's bayer pattern names: the colour of the top-left 2x2 cell, row by row
_BAYER_CELLS = {"bayer_rggb8": "RGGB", "bayer_bggr8": "BGGR", "bayer_gbrg8": "GBRG", "bayer_grbg8": "GRBG"}


def mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """What a Bayer sensor records of ``bgr``: one colour sample per pixel, in ``pattern``'s 2x2 cell."""
    out = np.zeros(bgr.shape[:2], np.uint8)
    ch = {"B": 0, "G": 1, "R": 2}
    for k, c in enumerate(_BAYER_CELLS[pattern]):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = bgr[dy::2, dx::2, ch[c]]
    return out


def encode(bgr: np.ndarray, encoding: str) -> tuple[bytes, int, str]:
    """(data, step, encoding or format) of a frame as a publisher would send it."""
    _h, w = bgr.shape[:2]
    if encoding in ("jpeg", "png"):
        ok, buf = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", bgr)
        assert ok
        return buf.tobytes(), 0, encoding
    if encoding == "bgr8":
        return bgr.tobytes(), w * 3, encoding
    if encoding == "rgb8":
        return bgr[..., ::-1].tobytes(), w * 3, encoding
    if encoding == "mono8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).tobytes(), w, encoding
    if encoding in _BAYER_CELLS:
        return mosaic(bgr, encoding).tobytes(), w, encoding
    raise ValueError(encoding)


def write_bag(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    ros: int = 2,
    topic: str = "/camera/image",
    encoding: str = "bgr8",
    fps: float = 25.0,
    start_ns: int = 1_700_000_000_000_000_000,
    other_topics: bool = True,
) -> Path:
    """A bag with one camera topic (``encoding``: a raw one, or ``jpeg``/``png`` for CompressedImage),
    plus an IMU-like topic that is not an image (``other_topics``)."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC if ros == 1 else Stores.ROS2_HUMBLE)
    T = store.types
    compressed = encoding in ("jpeg", "png")
    msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    if ros == 1:
        from rosbags.rosbag1 import Writer as W1

        writer: object = W1(path)
        serialize = store.serialize_ros1
    else:
        from rosbags.rosbag2 import Writer as W2

        writer = W2(path, version=9)
        serialize = store.serialize_cdr
    Time = T["builtin_interfaces/msg/Time"]
    Header = T["std_msgs/msg/Header"]
    with writer as wr:  # type: ignore[attr-defined]
        cam = wr.add_connection(topic, msgtype, typestore=store)
        other = wr.add_connection("/status", "std_msgs/msg/String", typestore=store) if other_topics else None
        for i, bgr in enumerate(frames):
            t = start_ns + round(i * 1e9 / fps)
            stamp = Time(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)
            header = (
                Header(seq=i, stamp=stamp, frame_id="cam")
                if ros == 1
                else Header(stamp=stamp, frame_id="cam")
            )
            data, step, enc = encode(bgr, encoding)
            arr = np.frombuffer(data, np.uint8)
            if compressed:
                msg = T[msgtype](header=header, format=enc, data=arr)
            else:
                h, w = bgr.shape[:2]
                msg = T[msgtype](
                    header=header, height=h, width=w, encoding=enc, is_bigendian=0, step=step, data=arr
                )
            wr.write(cam, t, serialize(msg, msgtype))
            if other is not None and i % 5 == 0:
                wr.write(
                    other,
                    t + 1000,
                    serialize(T["std_msgs/msg/String"](data=f"frame {i}"), "std_msgs/msg/String"),
                )
    return path
