"""What every remote detector call shares: which failures are retried, and how long to wait.

The SageMaker and Open Inference Protocol backends both run their calls through
``call_with_retries``: a failure that may pass (``EndpointThrottled``: throttling, 429, 5xx, a
connection refused or reset; ``EndpointTimeout``: no answer in time) is retried up to
``max_retries`` times with full-jitter exponential backoff (``Backoff``); anything else (a 4xx, a
model error, an answer that cannot be parsed) is raised at once. Blocking: runs in the detector's
worker threads, which bound the calls in flight.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from detector_client.backoff import Backoff
from detector_client.errors import EndpointThrottled, EndpointTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 5.0


def call_with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    where: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """``attempt()``, again after a retryable failure; the last failure says how many attempts it took."""
    backoff = Backoff(policy.backoff_base_s, policy.backoff_cap_s, rng, jitter="full")
    while True:
        try:
            return attempt()
        except (EndpointThrottled, EndpointTimeout) as err:
            if backoff.attempt >= policy.max_retries:
                err.args = (f"{err.args[0]} (after {backoff.attempt + 1} attempts)",)
                raise
            delay = backoff.next()
            if on_retry is not None:
                on_retry()
            log.warning(
                "%s: %s; retry %d/%d in %.2fs", where, err.code, backoff.attempt, policy.max_retries, delay
            )
            sleep(delay)
