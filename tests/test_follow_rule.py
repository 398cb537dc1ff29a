"""The follow rule (service.rules.follow): binding to tracks, re-finding, the SOT alone, losing the object."""

from __future__ import annotations

import pytest

from service.rules.follow import FollowConfig, Follower, iou, pick_track

pytestmark = pytest.mark.unit

A = (100.0, 100.0, 140.0, 200.0)
B = (300.0, 100.0, 340.0, 200.0)


def shifted(b: tuple[float, float, float, float], dx: float) -> tuple[float, float, float, float]:
    return (b[0] + dx, b[1], b[2] + dx, b[3])


def test_binds_to_the_overlapping_track_and_follows_it_while_it_lives() -> None:
    f = Follower(A)
    s = f.step(A, [7, 9], [shifted(A, 3), B])
    assert (s.source, s.track_id, s.box, s.reseed) == ("track", 7, shifted(A, 3), None)
    # the SOT drifts away: the track's box wins and the SOT is re-seeded on it
    s = f.step(shifted(A, 30), [9, 7], [B, shifted(A, 6)])
    assert (s.source, s.track_id, s.box, s.reseed) == ("track", 7, shifted(A, 6), shifted(A, 6))
    assert f.frames == {"track": 2, "sot": 0, "none": 0}


def test_the_sot_carries_on_alone_and_the_same_track_is_found_again_under_its_id() -> None:
    f = Follower(A)
    f.step(A, [7], [A])
    s = f.step(shifted(A, 5), [9], [B])  # track 7 lost: the SOT alone
    assert (s.source, s.track_id, s.box, s.state) == ("sot", None, shifted(A, 5), "tracking")
    # track 7 comes back far from where the SOT drifted: the tracker re-found it, it is ours again
    s = f.step(shifted(A, 80), [9, 7], [B, shifted(A, 10)])
    assert (s.source, s.track_id, s.box) == ("track", 7, shifted(A, 10))


def test_a_new_track_is_acquired_only_when_it_overlaps_enough() -> None:
    f = Follower(A, FollowConfig(acquire_iou=0.5))
    near = shifted(A, 25)  # IoU about 0.23
    assert iou(A, near) < 0.5
    s = f.step(A, [3], [near])
    assert (s.source, s.track_id) == ("sot", None)
    s = f.step(shifted(A, 20), [3], [near])
    assert (s.source, s.track_id) == ("track", 3)


def test_searching_then_lost_without_sot_or_track() -> None:
    f = Follower(A, FollowConfig(lost_after=2))
    states = [f.step(None, [], []).state for _ in range(4)]
    assert states == ["searching", "searching", "lost", "lost"]
    s = f.step(None, [4], [A])  # the last known box meets a track again
    assert (s.state, s.source, s.track_id) == ("tracking", "track", 4)


def test_a_click_picks_the_smallest_track_under_it() -> None:
    big, small = (0.0, 0.0, 500.0, 500.0), (90.0, 90.0, 150.0, 210.0)
    assert pick_track((100, 100), [1, 2], [big, small]) == (2, small)
    assert pick_track((400, 400), [1, 2], [big, small]) == (1, big)
    assert pick_track((600, 10), [1, 2], [big, small]) is None
