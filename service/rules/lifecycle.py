"""Track lifecycle: each frame's tracks in, ``track_started`` / ``track_ended`` events out.

A track starts at the first frame it appears among the tracker's output (the tracker confirms a
track before reporting it); it ends when the tracker reports it removed (``ended_ids``, reason
``lost``) or when the stream stops (``end_all(reason)``). An ended event carries the first and last
frame, time and box the track was seen with, and its duration. Times are passed in: ``ts`` is the
frame's capture time, ``now`` the wall clock of the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from service.messages import SCHEMA_VERSION, TrackEnded, TrackEvent, TrackStarted

Row = tuple[int, list[float], float, int]  # id, box xyxy, score, class


@dataclass(slots=True)
class _Seen:
    first_frame: int
    first_ts: float
    first_box: list[float]
    last_frame: int
    last_ts: float
    last_box: list[float]
    cls: int


class TrackLifecycle:
    __slots__ = ("_tracks", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._tracks: dict[int, _Seen] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def update(
        self, frame: int, ts: float, rows: Sequence[Row], ended: Iterable[int], now: float
    ) -> list[TrackEvent]:
        """One processed frame: its tracks (``rows``) and the ids the tracker removed (``ended``)."""
        out: list[TrackEvent] = []
        tracks = self._tracks
        for tid, box, score, cls in rows:
            seen = tracks.get(tid)
            if seen is None:
                tracks[tid] = _Seen(frame, ts, box, frame, ts, box, cls)
                started: TrackStarted = {"v": SCHEMA_VERSION, "stream": self.stream, "event": "track_started",
                                         "id": tid, "class": cls, "frame": frame, "ts": round(ts, 3), "box": box,
                                         "score": score}  # fmt: skip
                out.append(started)
            else:
                seen.last_frame, seen.last_ts, seen.last_box, seen.cls = frame, ts, box, cls
        for tid in ended:
            seen = tracks.pop(tid, None)
            if seen is not None:
                out.append(self._ended(tid, seen, "lost", now))
        return out

    def end_all(self, reason: str, now: float) -> list[TrackEnded]:
        """The stream stops: every open track ends with ``reason``."""
        out = [self._ended(tid, seen, reason, now) for tid, seen in self._tracks.items()]
        self._tracks.clear()
        return out

    def _ended(self, tid: int, s: _Seen, reason: str, now: float) -> TrackEnded:
        return {
            "v": SCHEMA_VERSION, "stream": self.stream, "event": "track_ended", "id": tid, "class": s.cls,
            "reason": reason, "first_frame": s.first_frame, "last_frame": s.last_frame,
            "first_ts": round(s.first_ts, 3), "last_ts": round(s.last_ts, 3),
            "duration_s": round(s.last_ts - s.first_ts, 3), "frames": s.last_frame - s.first_frame + 1,
            "first_box": s.first_box, "last_box": s.last_box, "ts": round(now, 3),
        }  # fmt: skip
