"""Capped, jittered exponential backoff: the one retry-delay rule of the project.

Sources reconnecting to a camera, the MQTT publisher reconnecting to its broker and remote detector
calls (SageMaker) all take their delays from ``Backoff``. It lives at the lowest layer because the
remote calls do (``detector_client``); the service imports it from here. Pure: no clock, no sleep;
the caller waits ``next()`` seconds however it waits.
"""

from __future__ import annotations

import random
from typing import Literal


class Backoff:
    """``next()`` gives the next delay (and counts the attempt); ``reset()`` after a success.

    Step ``k`` (from 0) is ``min(maximum, minimum * 2**k)``. ``jitter="equal"`` (reconnects) draws
    uniformly from the upper half of the step, so a retry never comes sooner than half of it;
    ``jitter="full"`` (remote calls, AWS's recommendation for contended endpoints) from all of it.
    """

    __slots__ = ("_rng", "attempt", "jitter", "maximum", "minimum")

    def __init__(
        self,
        minimum: float = 1.0,
        maximum: float = 30.0,
        rng: random.Random | None = None,
        jitter: Literal["equal", "full"] = "equal",
    ) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError(f"backoff needs 0 < minimum <= maximum, got {minimum} and {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self.jitter = jitter
        self.attempt = 0
        self._rng = rng or random.Random()

    def step(self) -> float:
        """The current step's upper bound, before jitter."""
        return min(self.maximum, self.minimum * 2.0 ** min(self.attempt, 64))

    def next(self) -> float:
        base = self.step()
        self.attempt += 1
        low = base / 2 if self.jitter == "equal" else 0.0
        return self._rng.uniform(low, base)

    def reset(self) -> None:
        self.attempt = 0
