"""detect_fps sampling: even spacing, robust to missing and jumping timestamps."""

from __future__ import annotations

import itertools

from service.rules.sampling import Sampler


def test_every_frame_without_detect_fps() -> None:
    s = Sampler(None)
    assert all(s.keep(i / 25) for i in range(50))


def test_even_sampling_25_to_5() -> None:
    s = Sampler(5)
    kept = [i for i in range(100) if s.keep(i / 25)]
    assert len(kept) == 20
    assert {b - a for a, b in itertools.pairwise(kept)} == {5}


def test_30_to_12_keeps_the_rate() -> None:
    s = Sampler(12)
    kept = [i for i in range(300) if s.keep(i / 30)]
    assert 118 <= len(kept) <= 121


def test_time_going_backwards_restarts_sampling() -> None:
    s = Sampler(5)
    first = [i for i in range(50) if s.keep(1000 + i / 25)]  # a large first timestamp
    again = [i for i in range(50) if s.keep(i / 25)]  # then the stream restarts at 0
    assert len(first) == 10 and len(again) == 10
