"""Batch policy: which ready frames of which streams form the next detector batch, and until when.

The batcher holds a free detector slot and asks ``plan(ready, want)`` which streams to take frames
from, given how many frames each stream has ready. Frames are taken round-robin, one per stream
per pass, so one busy replay stream cannot starve the others; the pass's starting stream rotates
from one pass to the next, so no stream is always first. A batch is sent when it holds
``max_batch`` frames or at its ``deadline``, ``max_wait_s`` after its oldest frame became ready
(decoded and handed over by its source: a frame that already waited for a busy detector has used
its window up), whichever comes first; the batcher never waits for any particular stream.
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
