"""Frame sequencer: detection results (keyed by sample index) in, frames out strictly in order.

A stream's frames go to the detector in sample order (``submit``), but results may come back in
any order (several batches in flight) or not at all. The sequencer releases a frame only when all
earlier submitted frames are settled, so the tracker sees frames strictly in order:

- ``result(sample, value)``: the frame's detections came back. A result for a sample that is not
  pending (already given up on, or never submitted) is returned as ``Late`` and never applied.
- ``fail(sample, cause)``: its detection failed; it becomes a gap (``Gap(cause)``), and the frames
  after it move on.
- ``expire(now)``: the oldest pending frames whose result has not come ``timeout_s`` after they were
  submitted become gaps (cause ``"late"``); a result for them that comes later is ``Late``.

Every call returns what was settled, in frame order: ``Ready`` (apply its value), ``Gap`` (skip it,
count the cause). Frames skipped by sampling are never submitted, so they are not gaps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

LATE = "late"


@dataclass(frozen=True, slots=True)
class Ready(Generic[T]):
    sample: int
    value: T


@dataclass(frozen=True, slots=True)
class Gap:
    sample: int
    cause: str


@dataclass(frozen=True, slots=True)
class Late(Generic[T]):
    """A result for a frame already settled (given up on): dropped, never applied out of order."""

    sample: int
    value: T | None


Settled = Ready[T] | Gap


class FrameSequencer(Generic[T]):
    __slots__ = ("_done", "_pending", "_submitted", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._pending: deque[int] = deque()  # submitted and not yet released, in order
        self._submitted: dict[int, float] = {}  # sample -> when submitted
        self._done: dict[int, Ready[T] | Gap] = {}  # settled but waiting for earlier frames

    def submit(self, sample: int, now: float) -> None:
        """The frame went to the detector. Samples must increase."""
        if self._pending and sample <= self._pending[-1]:
            raise ValueError(f"sample {sample} submitted after {self._pending[-1]}")
        self._pending.append(sample)
        self._submitted[sample] = now

    def result(self, sample: int, value: T) -> list[Ready[T] | Gap] | Late[T]:
        if sample not in self._submitted or sample in self._done:
            return Late(sample, value)
        self._done[sample] = Ready(sample, value)
        return self._release()

    def fail(self, sample: int, cause: str) -> list[Ready[T] | Gap] | Late[T]:
        if sample not in self._submitted or sample in self._done:
            return Late(sample, None)
        self._done[sample] = Gap(sample, cause)
        return self._release()

    def expire(self, now: float) -> list[Ready[T] | Gap]:
        """Give up on the oldest frames still waiting ``timeout_s`` after they were submitted."""
        out: list[Ready[T] | Gap] = []
        while self._pending and self._pending[0] not in self._done:
            s = self._pending[0]
            if now - self._submitted[s] <= self.timeout_s:
                break
            self._pending.popleft()
            del self._submitted[s]
            out.append(Gap(s, LATE))
            out += self._release()
        return out

    def _release(self) -> list[Ready[T] | Gap]:
        out: list[Ready[T] | Gap] = []
        pending, done = self._pending, self._done
        while pending and pending[0] in done:
            s = pending.popleft()
            del self._submitted[s]
            out.append(done.pop(s))
        return out

    @property
    def waiting(self) -> int:
        """Frames submitted and not yet released."""
        return len(self._pending)

    def oldest_wait(self, now: float) -> float | None:
        """How long the oldest unreleased frame has waited (None when nothing is out)."""
        return now - self._submitted[self._pending[0]] if self._pending else None
