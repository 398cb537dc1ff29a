"""The BYTE multi-object tracker (ByteTrack), exact to the public reference, built for a service.

Behaviour on consecutive frames is the reference's (``yolox/tracker/byte_tracker.py`` of
ifzhang/ByteTrack), quirks included; see ``README.md`` (Tracker) for the list. What differs, and
why, for a long-running multi-stream service:

* Track IDs come from this tracker's own counter, starting at 1 (the reference shares one global
  counter between all trackers of a process, so streams' IDs interleave).
* Memory is bounded by the number of live tracks: track state sits in arrays whose rows are
  reused once a track is gone. The reference keeps every removed track in a list for ever and
  rescans it each frame; its only effect on outputs (a track whose ID was once removed, then
  re-found, is dropped at once the next time it is lost) is kept with a per-track flag.
* The caller's arrays are never modified; class ids ride through to the output.
* Rows with NaN/inf values, a coordinate beyond 1e6 px or a side under 1e-3 px (which includes
  non-positive width/height) are dropped and counted
  (``Tracks.n_invalid``, ``ByteTracker.invalid_total``); a wrongly shaped array raises
  ``DetectionsError``.
* Frame gaps: ``update(dets, frame_index=i)``. A jump of ``g = i - previous`` frames advances the
  Kalman prediction ``g`` steps and counts ``g`` frames toward the lost-track buffer, exactly as if
  ``g - 1`` empty frames had been seen except that no track is confirmed, lost or started on the
  skipped frames. A gap longer than the lost-track buffer ends every track and the tracker starts
  afresh (IDs keep counting). Without ``frame_index`` every call is the next frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tracker import _kernels as K
from tracker.config import TrackerConfig
from tracker.errors import DetectionsError, FrameOrderError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Rows with a coordinate beyond this many pixels, or a side shorter than MIN_SIZE, are invalid:
#: no camera produces them and the Kalman arithmetic would overflow or divide by ~0.
MAX_COORD = 1e6
MIN_SIZE = 1e-3

_EMPTY_I = np.empty(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Tracks:
    """The active (confirmed, currently matched) tracks after one ``update``.

    Parallel arrays, one row per track, in the reference's output order.
    """

    frame_index: int
    ids: I64
    xyxy: F64
    tlwh: F64
    scores: F64
    classes: I64
    #: IDs of confirmed tracks that ended at this update (will never be reported again).
    ended_ids: I64 = field(default_factory=lambda: _EMPTY_I)
    #: Input rows dropped at this update for NaN/inf values or non-positive size.
    n_invalid: int = 0

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class ByteTracker:
    """One BYTE tracker: feed it one frame of detections at a time, in frame order.

    Not thread-safe; one instance per stream. No I/O, no asyncio.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = cfg = config if config is not None else TrackerConfig()
        self._params = K.StepParams(cfg.track_thresh, cfg.match_thresh, cfg.new_track_thresh, cfg.max_time_lost,
                                    not cfg.mot20, cfg.per_class)  # fmt: skip
        self._cap = 0
        i64, f64 = np.int64, np.float64
        self._st = K.TrackState(
            mean=np.empty((0, 8), f64), cov=np.empty((0, 8, 8), f64), tid=np.empty(0, i64),
            status=np.empty(0, np.int8), activated=np.empty(0, np.bool_), score=np.empty(0, f64),
            cls=np.empty(0, i64), last=np.empty(0, i64), start=np.empty(0, i64), was_removed=np.empty(0, np.bool_),
            lists=np.empty((3, 0), i64), counts=np.array([0, 0, 0, 1], dtype=i64),
        )  # fmt: skip
        self._grow(64)
        self._frame = 0  # internal frame counter (the reference's frame_id)
        self._last_index: int | None = None
        self.invalid_total = 0

    # ------------------------------------------------------------------ state storage
    def _grow(self, extra: int) -> None:
        """More rows for track state; new rows go on the free-slot stack."""
        old, new, st = self._cap, self._cap + extra, self._st

        def g(a: np.ndarray) -> np.ndarray:
            out = np.zeros((new, *a.shape[1:]), dtype=a.dtype)
            out[:old] = a
            return out

        lists = np.zeros((3, new), dtype=np.int64)
        lists[:, :old] = st.lists
        n_free = int(st.counts[2])
        lists[2, n_free : n_free + extra] = np.arange(new - 1, old - 1, -1)
        st.counts[2] = n_free + extra
        self._st = K.TrackState(
            g(st.mean), g(st.cov), g(st.tid), g(st.status), g(st.activated), g(st.score), g(st.cls), g(st.last),
            g(st.start), g(st.was_removed), lists, st.counts,
        )  # fmt: skip
        self._cap = new

    @property
    def live_tracks(self) -> int:
        """Tracks held (tracked, unconfirmed and lost): what bounds this tracker's memory."""
        return int(self._st.counts[0] + self._st.counts[1])

    @property
    def capacity(self) -> int:
        """Rows allocated for track state (grows to the peak number of live tracks, never beyond)."""
        return self._cap

    @property
    def frame_index(self) -> int | None:
        """Index of the last frame given to ``update`` (None before the first)."""
        return self._last_index

    def reset(self) -> list[int]:
        """Forget every track (IDs keep counting). Returns the IDs of confirmed tracks ended."""
        st = self._st
        nt, nl, nf = (int(v) for v in st.counts[:3])
        held = np.concatenate([st.lists[0, :nt], st.lists[1, :nl]])
        ended = [int(t) for t in st.tid[held[st.activated[held]]]]
        st.lists[2, nf : nf + len(held)] = held
        st.counts[:3] = (0, 0, nf + len(held))
        self._frame = 0
        return ended

    # ------------------------------------------------------------------ input
    def _clean(self, dets: npt.ArrayLike) -> tuple[F64, int]:
        try:  # no copy here: K.clean_rows returns a new array, the caller's stays as it is
            d = np.asarray(dets, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DetectionsError(f"detections must be a numeric [N,5] or [N,6] array: {exc}") from exc
        if d.ndim == 1 and d.size == 0:
            d = d.reshape(0, 5)
        if d.ndim != 2 or d.shape[1] not in (5, 6):
            raise DetectionsError(
                f"detections must have shape [N,5] (x1,y1,x2,y2,score) or [N,6] (+class), got {d.shape}"
            )
        if not (d.flags.c_contiguous and d.flags.writeable):  # the one layout the kernel is compiled for
            d = np.array(d, order="C")
        out, n_bad = K.clean_rows(d, MAX_COORD, MIN_SIZE, 2.0**62)  # class ids are stored as int64
        return out, int(n_bad)

    # ------------------------------------------------------------------ the algorithm
    def update(self, dets: npt.ArrayLike, frame_index: int | None = None) -> Tracks:
        """Track one frame. ``dets``: [N,5] x1,y1,x2,y2,score or [N,6] with class id.

        ``frame_index`` (optional) is the frame's index in the stream; indices must increase and
        a jump larger than one is a gap (see the module docstring). Returns the frame's active
        tracks.
        """
        cfg = self.config
        d, n_bad = self._clean(dets)
        self.invalid_total += n_bad

        steps = 1
        ended: list[int] = []
        if frame_index is not None:
            frame_index = int(frame_index)
            if self._last_index is not None:
                if frame_index <= self._last_index:
                    raise FrameOrderError(frame_index, self._last_index)
                steps = frame_index - self._last_index
        else:
            frame_index = 1 if self._last_index is None else self._last_index + 1
        if steps - 1 > cfg.max_time_lost and self._frame > 0:
            ended = self.reset()
            steps = 1
        self._last_index = frame_index
        self._frame += steps

        if self._st.counts[2] < d.shape[0]:
            self._grow(max(int(d.shape[0] - self._st.counts[2]), self._cap))
        st = self._st
        out, ended_now = K.byte_step(d, self._frame, steps, self._params, st)
        tlwh, xyxy = K.boxes_of(st.mean, out)
        if ended:
            ended_now = np.concatenate([np.asarray(ended, dtype=np.int64), ended_now])
        return Tracks(
            frame_index=frame_index,
            ids=st.tid[out],
            xyxy=xyxy,
            tlwh=tlwh,
            scores=st.score[out],
            classes=st.cls[out],
            ended_ids=ended_now,
            n_invalid=n_bad,
        )
