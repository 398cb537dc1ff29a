"""Pure BYTE (ByteTrack) multi-object tracker: numpy + lap + a numba core, no I/O, no asyncio.

from tracker import ByteTracker, TrackerConfig
tracks = ByteTracker(TrackerConfig(track_thresh=0.5)).update(dets)  # dets [N,5] or [N,6]
"""

from tracker.byte_tracker import ByteTracker, Tracks
from tracker.config import TrackerConfig
from tracker.errors import (
    DetectionsError,
    FrameOrderError,
    MotFormatError,
    TrackerConfigError,
    TrackerError,
)

__all__ = [
    "ByteTracker",
    "DetectionsError",
    "FrameOrderError",
    "MotFormatError",
    "TrackerConfig",
    "TrackerConfigError",
    "TrackerError",
    "Tracks",
]
