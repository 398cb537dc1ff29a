"""The service's rules, without a broker, an event loop, threads or a clock (time is passed in)."""

from __future__ import annotations

import random

import pytest

from detector_client.backoff import Backoff
from service.rules.batching import BatchPolicy
from service.rules.lifecycle import TrackLifecycle
from service.rules.outbox import Message, Outbox
from service.rules.sequencer import FrameSequencer, Late, Ready

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------------- frame sequencer
def _samples(settled: object) -> list[tuple[str, int]]:
    assert isinstance(settled, list)
    return [("ready" if isinstance(s, Ready) else f"gap:{s.cause}", s.sample) for s in settled]


def test_results_out_of_order_are_released_in_frame_order() -> None:
    seq: FrameSequencer[str] = FrameSequencer(timeout_s=2.0)
    for s in (1, 2, 3, 4):
        seq.submit(s, now=0.0)
    assert _samples(seq.result(3, "c")) == []  # 1 and 2 still out
    assert _samples(seq.result(2, "b")) == []
    out = seq.result(1, "a")
    assert _samples(out) == [("ready", 1), ("ready", 2), ("ready", 3)]
    assert [s.value for s in out if isinstance(s, Ready)] == ["a", "b", "c"]  # type: ignore[union-attr]
    assert seq.waiting == 1
    assert _samples(seq.result(4, "d")) == [("ready", 4)] and seq.waiting == 0


def test_a_failed_detection_is_a_gap_and_the_frames_after_it_move_on() -> None:
    seq: FrameSequencer[str] = FrameSequencer(timeout_s=2.0)
    for s in (5, 6, 7):
        seq.submit(s, now=0.0)
    assert _samples(seq.result(6, "x")) == []
    assert _samples(seq.fail(5, "detector_error")) == [("gap:detector_error", 5), ("ready", 6)]


def test_a_gap_after_the_timeout_and_its_late_result_is_dropped() -> None:
    seq: FrameSequencer[str] = FrameSequencer(timeout_s=2.0)
    seq.submit(1, now=10.0)
    seq.submit(2, now=10.5)
    seq.submit(3, now=13.0)
    assert seq.expire(now=11.9) == []  # not yet: 1.9 s
    assert _samples(seq.result(2, "b")) == []  # waits for 1
    # At 12.1 s frame 1 has waited 2.1 s: a gap; 2 (done) follows; 3 is young and waits.
    assert _samples(seq.expire(now=12.1)) == [("gap:late", 1), ("ready", 2)]
    assert seq.oldest_wait(now=14.0) == pytest.approx(1.0)
    late = seq.result(1, "a")  # the result for the frame already given up on
    assert isinstance(late, Late) and late.sample == 1
    assert _samples(seq.result(3, "c")) == [("ready", 3)]


def test_a_result_twice_or_for_a_frame_never_submitted_is_late() -> None:
    seq: FrameSequencer[str] = FrameSequencer(timeout_s=1.0)
    seq.submit(1, 0.0)
    seq.submit(2, 0.0)
    assert _samples(seq.result(2, "b")) == []
    assert isinstance(seq.result(2, "again"), Late)  # already settled, waiting for 1
    assert isinstance(seq.result(9, "never"), Late)
    assert isinstance(seq.fail(9, "detector_error"), Late)
    assert _samples(seq.result(1, "a")) == [("ready", 1), ("ready", 2)]


def test_expire_gives_up_on_several_old_frames_in_order() -> None:
    seq: FrameSequencer[int] = FrameSequencer(timeout_s=1.0)
    for s in range(1, 6):
        seq.submit(s, now=float(s) / 10)
    assert seq.result(4, 4) == []
    out = seq.expire(now=1.35)  # 1, 2, 3 waited more than 1 s; 4 is done; 5 waited 0.85 s
    assert _samples(out) == [("gap:late", 1), ("gap:late", 2), ("gap:late", 3), ("ready", 4)]
    assert seq.waiting == 1


def test_random_completion_orders_always_come_out_in_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        seq: FrameSequencer[int] = FrameSequencer(timeout_s=1.0)
        n = rng.randint(1, 20)
        for s in range(1, n + 1):
            seq.submit(s, 0.0)
        order = list(range(1, n + 1))
        rng.shuffle(order)
        released: list[int] = []
        for s in order:
            out = seq.result(s, s) if rng.random() > 0.2 else seq.fail(s, "detector_error")
            assert isinstance(out, list)
            released += [x.sample for x in out]
        assert released == list(range(1, n + 1)) and seq.waiting == 0


# ---------------------------------------------------------------------- track lifecycle
def test_tracks_start_once_and_end_lost_with_their_span() -> None:
    life = TrackLifecycle("cam")
    ev = life.update(1, 100.0, [(1, [0.0, 0.0, 10.0, 10.0], 0.9, 0)], [], now=200.0)
    assert [(e["event"], e["id"]) for e in ev] == [("track_started", 1)]
    assert ev[0]["frame"] == 1 and ev[0]["box"] == [0.0, 0.0, 10.0, 10.0] and ev[0]["stream"] == "cam"
    ev = life.update(
        2, 100.5, [(1, [1.0, 1.0, 11.0, 11.0], 0.8, 0), (2, [5.0, 5.0, 9.0, 9.0], 0.7, 2)], [], 201.0
    )
    assert [(e["event"], e["id"]) for e in ev] == [("track_started", 2)]
    assert life.update(3, 101.0, [(2, [5.0, 5.0, 9.0, 9.0], 0.7, 2)], [], 202.0) == []  # 1 unseen, not ended
    ev = life.update(4, 102.25, [(2, [6.0, 6.0, 9.0, 9.0], 0.7, 2)], [1], now=203.0)
    assert len(ev) == 1
    ended = ev[0]
    assert ended["event"] == "track_ended" and ended["id"] == 1 and ended["reason"] == "lost"
    assert (ended["first_frame"], ended["last_frame"], ended["frames"]) == (1, 2, 2)
    assert ended["duration_s"] == 0.5 and ended["last_box"] == [1.0, 1.0, 11.0, 11.0] and ended["ts"] == 203.0
    assert len(life) == 1
    assert life.update(5, 103.0, [], [1], 204.0) == []  # an id ended twice is reported once


def test_end_all_ends_every_open_track_with_the_reason() -> None:
    life = TrackLifecycle("cam")
    life.update(1, 0.0, [(3, [0.0] * 4, 0.9, 0), (4, [1.0] * 4, 0.9, 0)], [], 0.0)
    life.update(2, 1.0, [(3, [2.0] * 4, 0.9, 0), (4, [3.0] * 4, 0.9, 0)], [], 1.0)
    ev = life.end_all("shutdown", now=5.0)
    assert sorted((e["id"], e["reason"], e["duration_s"]) for e in ev) == [
        (3, "shutdown", 1.0),
        (4, "shutdown", 1.0),
    ]
    assert len(life) == 0 and life.end_all("shutdown", 6.0) == []


# ---------------------------------------------------------------------- batch policy
def test_batches_take_round_robin_so_a_busy_stream_cannot_starve_the_others() -> None:
    policy: BatchPolicy[str] = BatchPolicy(max_batch=4, max_wait_s=0.01)
    plan = policy.plan([("busy", 8), ("a", 1), ("b", 1)])
    assert sorted(plan) == ["a", "b", "busy", "busy"]
    # Next time the first pass starts one stream further on, so "busy" is not always first.
    firsts = {policy.plan([("busy", 8), ("a", 8), ("b", 8)])[0] for _ in range(3)}
    assert firsts == {"busy", "a", "b"}


def test_batch_is_bounded_by_max_batch_and_what_is_ready() -> None:
    policy: BatchPolicy[int] = BatchPolicy(max_batch=8, max_wait_s=0.01)
    assert policy.plan([(0, 2), (1, 0), (2, 1)]) == [0, 2, 0]  # a stream with nothing ready is passed over
    assert len(policy.plan([(0, 100)])) == 8
    assert len(policy.plan([(0, 100)], want=3)) == 3
    assert policy.plan([]) == [] and policy.plan([(0, 0)]) == []


def test_every_stream_gets_its_share_over_many_batches() -> None:
    policy: BatchPolicy[int] = BatchPolicy(max_batch=5, max_wait_s=0.0)
    counts = [0, 0, 0]
    for _ in range(300):
        for k in policy.plan([(0, 50), (1, 50), (2, 50)]):
            counts[k] += 1
    assert counts == [500, 500, 500]


def test_deadline_is_max_wait_after_the_first_frame() -> None:
    policy: BatchPolicy[int] = BatchPolicy(max_batch=8, max_wait_s=0.025)
    assert policy.deadline(10.0) == pytest.approx(10.025)
    with pytest.raises(ValueError):
        BatchPolicy(0, 0.01)


# ---------------------------------------------------------------------- outbox
def _msg(kind: str, n: int, qos: int = 0) -> Message:
    return Message(f"p/cam/{kind}", str(n).encode(), qos, kind == "status", kind)  # type: ignore[arg-type]


def _drain(ob: Outbox, now: float = 0.0, ref0: int = 1) -> list[tuple[str, int]]:
    """Write everything the window allows; returns (kind, n) in write order."""
    out = []
    ref = ref0
    while (m := ob.next()) is not None:
        ob.written(m, ref, now)
        ref += 1
        out.append((m.kind, int(m.payload)))
    return out


def test_events_are_never_overtaken_by_tracks_queued_after_them() -> None:
    ob = Outbox(max_events=10, max_tracks=10, window=64)
    ob.push(_msg("tracks", 1))
    ob.push(_msg("events", 1))
    ob.push(_msg("tracks", 2))
    ob.push(_msg("status", 2))
    # Statuses, then events, first; every event is written before any tracks message queued after it.
    assert _drain(ob) == [("status", 2), ("events", 1), ("tracks", 1), ("tracks", 2)]


def _status(stream: str, state: str) -> Message:
    return Message(f"p/{stream}/status", state.encode(), 1, True, "status")


def test_statuses_are_state_the_latest_per_topic_is_kept_and_never_dropped() -> None:
    """A long outage: thousands of events overflow their bound, statuses change many times. What
    reaches the broker afterwards is every topic's latest status, none dropped."""
    ob = Outbox(max_events=10, max_tracks=5, window=64)
    for i in range(5000):
        ob.push(_msg("events", i))
        ob.push(_status(f"cam{i % 7}", f"state{i}"))
    ob.push(_status("service", "online"))
    assert ob.dropped["events"] == 4990
    out = []
    while (m := ob.next()) is not None and m.kind == "status":
        out.append((m.topic, m.payload.decode()))
    latest = {f"p/cam{k}/status": f"state{max(i for i in range(5000) if i % 7 == k)}" for k in range(7)}
    assert dict(out) == {**latest, "p/service/status": "online"}
    assert len(out) == 8  # one per topic


def test_a_status_lost_in_flight_goes_back_unless_a_newer_one_is_queued() -> None:
    ob = Outbox(max_events=10, max_tracks=5, window=64)
    ob.push(_status("a", "online"))
    ob.push(_status("b", "online"))
    first, second = ob.next(), ob.next()
    assert (
        first is not None
        and second is not None
        and (first.topic, second.topic) == ("p/a/status", "p/b/status")
    )
    # both written, nothing acknowledged; then b goes offline and the connection breaks
    ob.written(_status("a", "online"), 1, 0.0)
    ob.written(_status("b", "online"), 2, 0.0)
    ob.push(_status("b", "offline"))
    assert ob.connection_lost() == []
    got = []
    while (m := ob.next()) is not None:
        got.append((m.topic, m.payload))
    assert got == [("p/a/status", b"online"), ("p/b/status", b"offline")]  # the stale "online" of b is gone
    ob.push(_status("c", "x"))
    m = ob.next()
    assert m is not None
    ob.push(_status("c", "y"))
    ob.refused(m)  # refused, but superseded meanwhile
    assert [(m.payload) for m in iter(ob.next, None)] == [b"y"]


def test_tracks_are_dropped_oldest_first_and_counted() -> None:
    ob = Outbox(max_events=10, max_tracks=3, window=64)
    dropped = [ob.push(_msg("tracks", i)) for i in range(5)]
    assert [None if d is None else int(d.payload) for d in dropped] == [None, None, None, 0, 1]
    assert ob.dropped == {"tracks": 2, "events": 0}
    assert _drain(ob) == [("tracks", 2), ("tracks", 3), ("tracks", 4)]


def test_events_beyond_their_bound_are_dropped_oldest_first_and_counted() -> None:
    ob = Outbox(max_events=2, max_tracks=3, window=64)
    for i in range(3):
        ob.push(_msg("events", i))
    ob.push(_msg("tracks", 9))
    assert ob.dropped == {"tracks": 0, "events": 1}
    assert _drain(ob) == [("events", 1), ("events", 2), ("tracks", 9)]


def test_the_window_bounds_what_is_written_and_not_done() -> None:
    ob = Outbox(max_events=10, max_tracks=100, window=4)
    for i in range(10):
        ob.push(_msg("tracks", i))
    assert [n for _, n in _drain(ob)] == [0, 1, 2, 3] and ob.window_full
    assert ob.next() is None
    done = ob.done(2, now=1.0)
    assert done is not None and int(done.payload) == 1
    assert ob.done(2, now=1.0) is None  # once only
    assert [n for _, n in _drain(ob, ref0=10)] == [4]
    assert ob.depth() == 9 and ob.depth("tracks") == 9 and ob.depth("events") == 0


def test_requeue_on_loss_keeps_order_and_drops_beyond_the_bound_are_counted() -> None:
    ob = Outbox(max_events=10, max_tracks=4, window=3)
    ob.push(_msg("events", 100, qos=1))
    for i in range(4):
        ob.push(_msg("tracks", i))
    assert _drain(ob) == [("events", 100), ("tracks", 0), ("tracks", 1)]  # window of 3
    ob.done(2, 0.0)  # tracks 0 went out; the event (unacknowledged) and tracks 1 did not
    ob.push(_msg("tracks", 4))
    ob.push(_msg("tracks", 5))  # 2, 3, 4, 5 queued: the bound
    dropped = ob.connection_lost()
    # tracks 1 goes back before 2..5: one over the bound, so the oldest (1) is dropped.
    assert [int(m.payload) for m in dropped] == [1]
    assert ob.dropped["tracks"] == 1
    assert _drain(ob, ref0=50) == [("events", 100), ("tracks", 2), ("tracks", 3)]
    assert not ob.idle


def test_a_refused_message_goes_back_to_the_front() -> None:
    ob = Outbox(max_events=10, max_tracks=10)
    ob.push(_msg("tracks", 1))
    ob.push(_msg("tracks", 2))
    m = ob.next()
    assert m is not None
    ob.refused(m)
    assert [n for _, n in _drain(ob)] == [1, 2]


def test_stalled_when_nothing_is_done_for_the_timeout() -> None:
    ob = Outbox(max_events=10, max_tracks=10)
    assert not ob.stalled(now=100.0, timeout=10.0)  # nothing in flight
    ob.push(_msg("tracks", 1))
    ob.push(_msg("tracks", 2))
    _drain(ob, now=0.0)
    assert not ob.stalled(now=9.0, timeout=10.0)
    ob.done(1, now=9.0)  # progress
    assert not ob.stalled(now=18.0, timeout=10.0)
    assert ob.stalled(now=19.5, timeout=10.0)
    ob.done(2, now=19.5)
    assert ob.idle and not ob.stalled(now=100.0, timeout=10.0)


# ---------------------------------------------------------------------- backoff
def test_backoff_doubles_to_its_cap_with_jitter_and_resets() -> None:
    b = Backoff(1.0, 30.0, rng=random.Random(1))
    delays = [b.next() for _ in range(8)]
    steps = [1, 2, 4, 8, 16, 30, 30, 30]
    assert all(s / 2 <= d <= s for d, s in zip(delays, steps, strict=True)), delays
    b.reset()
    assert 0.5 <= b.next() <= 1.0
    full = Backoff(0.2, 5.0, rng=random.Random(2), jitter="full")
    assert all(0 <= full.next() <= min(5.0, 0.2 * 2**k) for k in range(10))
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)


# ---------------------------------------------------------------------- detections (the detectors' typed value)
def test_detections_name_the_columns_of_their_rows_and_reject_other_shapes() -> None:
    import numpy as np

    from detector_client.base import Detections

    rows = np.array([[1.0, 2.0, 11.0, 22.0, 0.9, 0.0], [5.0, 5.0, 9.0, 9.0, 0.3, 2.0]])
    d = Detections(rows)
    assert len(d) == 2 and d.xyxy.tolist() == [[1, 2, 11, 22], [5, 5, 9, 9]]
    assert d.scores.tolist() == [0.9, 0.3] and d.classes.tolist() == [0, 2] and d.classes.dtype == np.int64
    assert np.shares_memory(d.xyxy, rows)  # views, no copy per frame
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match=r"\[N,6\]"):
        Detections(rows[:, :5])
