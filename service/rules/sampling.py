"""Frame sampling: which frames of a source to detect, to reach ``detect_fps``.

The time of each frame is passed in (its presentation time, or the wall clock for sources without
one). Frames are kept evenly; a jump back in time (a file that loops, a reconnect, a PTS reset)
starts over.
"""

from __future__ import annotations


class Sampler:
    """Picks frames evenly to reach ``detect_fps`` from a source at ``source_fps``."""

    def __init__(self, detect_fps: float | None) -> None:
        self.detect_fps = detect_fps
        self._next: float | None = None

    def keep(self, t: float) -> bool:
        """``t``: the frame's time in seconds (pts, or wall clock for sources without one)."""
        if not self.detect_fps:
            return True
        period = 1.0 / self.detect_fps
        if self._next is not None and t < self._next - 2 * period:
            self._next = None  # time went backwards (loop, reconnect, pts reset): start over
        if self._next is None or t >= self._next - 1e-6:
            base = t if self._next is None or t - self._next > period else self._next
            self._next = base + period
            return True
        return False
