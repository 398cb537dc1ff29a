"""Tracker parameters as a validated, immutable value object."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tracker.errors import TrackerConfigError

#: Detections at or below this score are ignored entirely (the reference's fixed 0.1).
LOW_SCORE_THRESH = 0.1
#: IoU-distance limit of the second association (low-score detections), as in the reference.
SECOND_MATCH_THRESH = 0.5
#: IoU-distance limit for matching unconfirmed (one-frame-old) tracks, as in the reference.
UNCONFIRMED_MATCH_THRESH = 0.7
#: Tracked/lost pairs closer than this IoU distance are duplicates (reference value).
DUPLICATE_IOU_DIST = 0.15


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """BYTE tracker parameters (names and defaults of the ByteTrack reference).

    track_thresh: detections above it enter the first association; a new track needs a score of
        at least ``track_thresh + 0.1``; detections in (0.1, track_thresh) feed the second stage.
    track_buffer: frames (at 30 fps) a lost track is kept; scaled by ``frame_rate / 30``.
    match_thresh: cost limit of the first association (1 - IoU, times score unless ``mot20``).
    mot20: turn off score fusion (the reference's crowded-scene mode).
    frame_rate: the rate at which ``update`` is called (the processed rate, not the camera's).
    per_class: only associate detections with tracks of the same class id (off in the reference).
    """

    track_thresh: float = 0.5
    track_buffer: int = 30
    match_thresh: float = 0.8
    mot20: bool = False
    frame_rate: float = 30.0
    per_class: bool = False

    def __post_init__(self) -> None:
        def finite(name: str, v: float) -> None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TrackerConfigError(name, v, "must be a finite number")

        finite("track_thresh", self.track_thresh)
        if not 0.0 < self.track_thresh < 1.0:
            raise TrackerConfigError("track_thresh", self.track_thresh, "must be in (0, 1)")
        if isinstance(self.track_buffer, bool) or not isinstance(self.track_buffer, int):
            raise TrackerConfigError("track_buffer", self.track_buffer, "must be an integer")
        if self.track_buffer < 0:
            raise TrackerConfigError("track_buffer", self.track_buffer, "must be >= 0")
        finite("match_thresh", self.match_thresh)
        if not 0.0 < self.match_thresh <= 1.0:
            raise TrackerConfigError("match_thresh", self.match_thresh, "must be in (0, 1]")
        finite("frame_rate", self.frame_rate)
        if self.frame_rate <= 0:
            raise TrackerConfigError("frame_rate", self.frame_rate, "must be > 0")
        if not isinstance(self.mot20, bool):
            raise TrackerConfigError("mot20", self.mot20, "must be true or false")
        if not isinstance(self.per_class, bool):
            raise TrackerConfigError("per_class", self.per_class, "must be true or false")

    @property
    def new_track_thresh(self) -> float:
        """Minimum score that starts a track (the reference's ``det_thresh``)."""
        return self.track_thresh + 0.1

    @property
    def max_time_lost(self) -> int:
        """Frames a lost track survives: ``int(frame_rate / 30 * track_buffer)``."""
        return int(self.frame_rate / 30.0 * self.track_buffer)
