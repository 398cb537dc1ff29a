"""Batch policy: which ready frames of which streams form the next detector batch, and until when.

The batcher holds a free detector slot and asks ``plan(ready, want)`` which streams to take frames
from, given how many frames each stream has ready. Frames are taken round-robin, one per stream
per pass, so one busy replay stream cannot starve the others; the pass's starting stream rotates
from one pass to the next, so no stream is always first. A batch is sent when it holds
``max_batch`` frames or at its ``deadline``, ``max_wait_s`` after its first frame became ready,
whichever comes first; the batcher never waits for any particular stream.

Waiting for the deadline only pays when a frame can still join the batch before it. A camera's
frames (or a paced replay's, or a sampled stream's) come at their own pace, so ``Arrivals`` keeps
such a stream's last arrival and its typical gap, and ``send_at`` sends the batch as soon as no
stream's next frame is due before the deadline: with four 25-30 frames/s cameras and a 5 ms
deadline, most batches go at once instead of 5 ms later, and the frames the wait would have
caught are still caught. A frame that comes earlier than its stream's pace says goes with the
next batch. A replay as fast as it decodes always has a frame due (the caller says so).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class BatchPolicy(Generic[K]):
    __slots__ = ("_rr", "max_batch", "max_wait_s")

    def __init__(self, max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._rr = 0

    def plan(self, ready: Sequence[tuple[K, int]], want: int | None = None) -> list[K]:
        """Stream keys to take one frame from each, in order, for up to ``want`` frames
        (``max_batch`` by default). ``ready``: (stream, frames it has ready), in a stable order."""
        want = self.max_batch if want is None else min(want, self.max_batch)
        keys = [k for k, n in ready if n > 0]
        left = [n for _, n in ready if n > 0]
        out: list[K] = []
        while keys and len(out) < want:
            start = self._rr % len(keys)
            self._rr += 1
            for i in range(len(keys)):
                j = (start + i) % len(keys)
                out.append(keys[j])
                left[j] -= 1
                if len(out) >= want:
                    break
            keys = [k for k, n in zip(keys, left, strict=True) if n > 0]
            left = [n for n in left if n > 0]
        return out

    def deadline(self, first_ready: float) -> float:
        """When a batch whose first frame became ready at ``first_ready`` goes out, full or not."""
        return first_ready + self.max_wait_s

    @staticmethod
    def send_at(now: float, deadline: float, due: Sequence[float | None]) -> float:
        """When a batch that is not full goes out: at ``deadline``, or at ``now`` when no stream's
        next frame is due before it. ``due``: when each stream's next frame is expected (None: not
        coming soon, as for a stalled camera)."""
        if now >= deadline:
            return now
        return deadline if any(t is not None and t <= deadline for t in due) else now


class Arrivals:
    """When a stream's next frame is due: its last arrival plus its typical gap between frames.

    The gap is a moving average (weight ``1/8`` for the newest gap), so a stream's pace is known
    after a few frames and follows a change of rate within a few dozen. A frame overdue by more
    than one gap is not counted on (a camera that stalls or ended does not hold batches back).
    """

    __slots__ = ("gap", "last")

    ALPHA = 0.125

    def __init__(self) -> None:
        self.last: float | None = None
        self.gap: float | None = None

    def arrived(self, t: float) -> None:
        if self.last is not None:
            g = max(0.0, t - self.last)
            self.gap = g if self.gap is None else self.gap + self.ALPHA * (g - self.gap)
        self.last = t

    def due(self, now: float) -> float | None:
        """When the next frame is expected: ``now`` while the pace is not known yet (it may come any
        moment), None once it is overdue by more than a gap."""
        if self.last is None or self.gap is None:
            return now
        t = self.last + self.gap
        return None if now > t + self.gap else t
