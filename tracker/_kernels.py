"""Compiled numeric kernels of the BYTE tracker (numba, no Python objects).

Track state lives in structure-of-arrays form (``mean[cap, 8]``, ``cov[cap, 8, 8]``) and the
kernels work in place on the rows named by a ``slots`` index array. The arithmetic follows the
reference implementation operation by operation (the constant-velocity Kalman filter of
DeepSORT/ByteTrack on the state ``(cx, cy, a, h, vcx, vcy, va, vh)`` with ``a = w / h``, and
cython_bbox's "+1 pixel" IoU), so results agree to the last few ulps; where the reference goes
through LAPACK (the 4x4 Cholesky solve) ours is an explicit Cholesky of the same matrix.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from tracker._assign import assign
from tracker.config import DUPLICATE_IOU_DIST, LOW_SCORE_THRESH, SECOND_MATCH_THRESH, UNCONFIRMED_MATCH_THRESH

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160

TRACKED = 1
LOST = 2
REMOVED = 3


class TrackState(NamedTuple):
    """Every track's state, one row per slot (rows are reused once a track is gone)."""

    mean: np.ndarray  # [cap, 8] Kalman mean (cx, cy, a, h, vcx, vcy, va, vh), a = w / h
    cov: np.ndarray  # [cap, 8, 8] Kalman covariance
    tid: np.ndarray  # [cap] track id
    status: np.ndarray  # [cap] TRACKED, LOST or REMOVED
    activated: np.ndarray  # [cap] confirmed (the reference's is_activated)
    score: np.ndarray  # [cap] score of the last matched detection
    cls: np.ndarray  # [cap] class of the last matched detection
    last: np.ndarray  # [cap] internal frame of the last match (the reference's frame_id)
    start: np.ndarray  # [cap] internal frame the track started (the reference's start_frame)
    was_removed: np.ndarray  # [cap] once in the reference's removed_stracks list
    lists: np.ndarray  # [3, cap] tracked slots, lost slots (the reference's list order), free-slot stack
    counts: np.ndarray  # [4] n_tracked, n_lost, n_free, next track id


class StepParams(NamedTuple):
    """What one BYTE step needs of ``TrackerConfig``."""

    track_thresh: float
    match_thresh: float
    new_thresh: float
    max_time_lost: int
    fuse: bool  # score fusion in the first association (off with mot20)
    per_class: bool


@njit(cache=True, nogil=True)
def det_boxes(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """x1,y1,x2,y2 rows -> (tlbr as the reference rebuilds it from tlwh, xyah measurement)."""
    n = d.shape[0]
    tlbr = np.empty((n, 4))
    xyah = np.empty((n, 4))
    for i in range(n):
        x1 = d[i, 0]
        y1 = d[i, 1]
        w = d[i, 2] - x1
        h = d[i, 3] - y1
        tlbr[i, 0] = x1
        tlbr[i, 1] = y1
        tlbr[i, 2] = w + x1
        tlbr[i, 3] = h + y1
        xyah[i, 0] = x1 + w / 2
        xyah[i, 1] = y1 + h / 2
        xyah[i, 2] = w / h
        xyah[i, 3] = h
    return tlbr, xyah


@njit(cache=True, nogil=True)
def track_tlbr(mean: np.ndarray, slots: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Boxes (x1, y1, x2, y2) of the tracks in ``slots`` from their Kalman means."""
    out = np.empty((slots.shape[0], 4))
    for k in range(slots.shape[0]):
        s = slots[k]
        h = mean[s, 3]
        w = mean[s, 2] * h
        x1 = mean[s, 0] - w / 2
        y1 = mean[s, 1] - h / 2
        out[k, 0] = x1
        out[k, 1] = y1
        out[k, 2] = w + x1
        out[k, 3] = h + y1
    return out


@njit(cache=True, nogil=True)
def iou_cost(
    a: np.ndarray,
    b: np.ndarray,
    b_scores: np.ndarray,
    fuse: bool,
    a_cls: np.ndarray,
    b_cls: np.ndarray,
    per_class: bool,
) -> np.ndarray:  # pragma: no cover - compiled
    """Cost ``1 - IoU`` between boxes ``a`` [K,4] and ``b`` [M,4], "+1 pixel" areas.

    With ``fuse`` the similarity is multiplied by the detection score (the reference's
    ``fuse_score``, computed as it does: ``1 - (1 - cost) * score``). With ``per_class`` pairs of
    different class get cost 2, above every threshold.
    """
    k_n = a.shape[0]
    m_n = b.shape[0]
    cost = np.empty((k_n, m_n))
    for m in range(m_n):
        b_area = (b[m, 2] - b[m, 0] + 1) * (b[m, 3] - b[m, 1] + 1)
        for k in range(k_n):
            iou = 0.0
            iw = min(a[k, 2], b[m, 2]) - max(a[k, 0], b[m, 0]) + 1
            if iw > 0:
                ih = min(a[k, 3], b[m, 3]) - max(a[k, 1], b[m, 1]) + 1
                if ih > 0:
                    ua = (a[k, 2] - a[k, 0] + 1) * (a[k, 3] - a[k, 1] + 1) + b_area - iw * ih
                    iou = iw * ih / ua
            c = 1 - iou
            if fuse:
                c = 1 - (1 - c) * b_scores[m]
            if per_class and a_cls[k] != b_cls[m]:
                c = 2.0
            cost[k, m] = c
    return cost


@njit(cache=True, nogil=True)
def initiate(
    mean: np.ndarray, cov: np.ndarray, slots: np.ndarray, xyah: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Start tracks in ``slots`` from measurements ``xyah`` [K,4] (zero velocity)."""
    wp2 = 2 * STD_WEIGHT_POSITION
    wv10 = 10 * STD_WEIGHT_VELOCITY
    for k in range(slots.shape[0]):
        s = slots[k]
        h = xyah[k, 3]
        for i in range(4):
            mean[s, i] = xyah[k, i]
            mean[s, 4 + i] = 0.0
        std = (wp2 * h, wp2 * h, 1e-2, wp2 * h, wv10 * h, wv10 * h, 1e-5, wv10 * h)
        for i in range(8):
            for j in range(8):
                cov[s, i, j] = 0.0
        for i in range(8):
            cov[s, i, i] = std[i] * std[i]


@njit(cache=True, nogil=True)
def kalman_predict(
    mean: np.ndarray, cov: np.ndarray, slots: np.ndarray, state: np.ndarray, steps: int
) -> None:  # pragma: no cover - compiled
    """Advance tracks ``steps`` frames: x <- F x, P <- F P F^T + Q (Q from the current height).

    Tracks not in the Tracked state have their height velocity zeroed first, every step.
    """
    wp = STD_WEIGHT_POSITION
    wv = STD_WEIGHT_VELOCITY
    fp = np.empty((8, 8))
    for k in range(slots.shape[0]):
        s = slots[k]
        for _ in range(steps):
            if state[s] != TRACKED:
                mean[s, 7] = 0.0
            h = mean[s, 3]
            q = (wp * h, wp * h, 1e-2, wp * h, wv * h, wv * h, 1e-5, wv * h)
            for i in range(4):
                mean[s, i] = mean[s, i] + mean[s, 4 + i]
            # F P: rows i<4 gain row i+4.
            for i in range(8):
                for j in range(8):
                    if i < 4:
                        fp[i, j] = cov[s, i, j] + cov[s, i + 4, j]
                    else:
                        fp[i, j] = cov[s, i, j]
            # (F P) F^T: columns j<4 gain column j+4.
            for i in range(8):
                for j in range(8):
                    v = fp[i, j] + fp[i, j + 4] if j < 4 else fp[i, j]
                    if i == j:
                        v = v + q[i] * q[i]
                    cov[s, i, j] = v


@njit(cache=True, nogil=True)
def kalman_correct(
    mean: np.ndarray, cov: np.ndarray, slots: np.ndarray, xyah: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Kalman correction of tracks ``slots`` with measurements ``xyah`` [K,4], in place."""
    wp = STD_WEIGHT_POSITION
    sm = np.empty((4, 4))
    lo = np.empty((4, 4))
    gain = np.empty((8, 4))
    ks = np.empty((8, 4))
    y = np.empty(4)
    innov = np.empty(4)
    for k in range(slots.shape[0]):
        s = slots[k]
        h = mean[s, 3]
        r = (wp * h, wp * h, 1e-1, wp * h)
        # Projected covariance S = H P H^T + R.
        for i in range(4):
            for j in range(4):
                sm[i, j] = cov[s, i, j]
            sm[i, i] = sm[i, i] + r[i] * r[i]
        # Cholesky S = L L^T.
        for j in range(4):
            acc = sm[j, j]
            for t in range(j):
                acc -= lo[j, t] * lo[j, t]
            ljj = math.sqrt(acc)
            lo[j, j] = ljj
            for i in range(j + 1, 4):
                acc = sm[i, j]
                for t in range(j):
                    acc -= lo[i, t] * lo[j, t]
                lo[i, j] = acc / ljj
            for i in range(j):
                lo[i, j] = 0.0
        # K^T = S^-1 (P H^T)^T, one column of (P H^T)^T per state dimension c.
        for c in range(8):
            for i in range(4):
                acc = cov[s, c, i]
                for t in range(i):
                    acc -= lo[i, t] * y[t]
                y[i] = acc / lo[i, i]
            for i in range(3, -1, -1):
                acc = y[i]
                for t in range(i + 1, 4):
                    acc -= lo[t, i] * gain[c, t]
                gain[c, i] = acc / lo[i, i]
        for i in range(4):
            innov[i] = xyah[k, i] - mean[s, i]
        for c in range(8):
            acc = 0.0
            for i in range(4):
                acc += innov[i] * gain[c, i]
            mean[s, c] = mean[s, c] + acc
        # P <- P - K S K^T
        for c in range(8):
            for j in range(4):
                acc = 0.0
                for t in range(4):
                    acc += gain[c, t] * sm[t, j]
                ks[c, j] = acc
        for i in range(8):
            for j in range(8):
                acc = 0.0
                for t in range(4):
                    acc += ks[i, t] * gain[j, t]
                cov[s, i, j] = cov[s, i, j] - acc


@njit(cache=True)
def clean_rows(
    d: np.ndarray, max_coord: float, min_size: float, max_class: float
) -> tuple[np.ndarray, int]:  # pragma: no cover - compiled
    """The valid rows of detections ``d`` [N,5] or [N,6] as a new [M,6] array (class 0 when
    absent), and how many were dropped: a NaN/inf value, a coordinate beyond ``max_coord``, a
    side under ``min_size`` or a class id of ``max_class`` or more in magnitude."""
    n, k = d.shape
    ok = np.zeros(n, dtype=np.bool_)
    m = 0
    for i in range(n):
        good = True
        for j in range(k):
            if not math.isfinite(d[i, j]):
                good = False
        for j in range(4):
            if abs(d[i, j]) > max_coord:
                good = False
        if not (d[i, 2] - d[i, 0] >= min_size and d[i, 3] - d[i, 1] >= min_size):
            good = False
        if k == 6 and not abs(d[i, 5]) < max_class:
            good = False
        ok[i] = good
        m += good
    out = np.zeros((m, 6))
    r = 0
    for i in range(n):
        if ok[i]:
            for j in range(k):
                out[r, j] = d[i, j]
            r += 1
    return out, n - m


@njit(cache=True)
def boxes_of(
    mean: np.ndarray, slots: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Boxes of the tracks in ``slots`` from their Kalman means: (x, y, w, h) and (x1, y1, x2, y2)."""
    tlwh = np.empty((slots.shape[0], 4))
    xyxy = np.empty((slots.shape[0], 4))
    for k in range(slots.shape[0]):
        s = slots[k]
        h = mean[s, 3]
        w = mean[s, 2] * h
        x = mean[s, 0] - w / 2
        y = mean[s, 1] - h / 2
        tlwh[k, 0] = x
        tlwh[k, 1] = y
        tlwh[k, 2] = w
        tlwh[k, 3] = h
        xyxy[k, 0] = x
        xyxy[k, 1] = y
        xyxy[k, 2] = x + w
        xyxy[k, 3] = y + h
    return tlwh, xyxy


@njit(cache=True)
def byte_step(
    d: np.ndarray, frame: int, steps: int, prm: StepParams, st: TrackState
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """One BYTE frame, in place on ``st``. ``d``: cleaned detections [N,6] (x1,y1,x2,y2,score,class).

    ``frame`` is the internal frame counter after this step, ``steps`` how many frames it advanced
    (more than one after a gap). Returns (output slots, ended track ids). The caller guarantees
    at least N free slots.
    """
    # One field per statement: numba compiled a single tuple assignment of these arrays into
    # copies, so writes (to counts, lists) were lost; test_tracker caught it.
    mean = st.mean
    cov = st.cov
    tid = st.tid
    state = st.status
    activated = st.activated
    score = st.score
    cls = st.cls
    last = st.last
    start = st.start
    was_removed = st.was_removed
    lists = st.lists
    counts = st.counts
    track_thresh, match_thresh, new_thresh = prm.track_thresh, prm.match_thresh, prm.new_thresh
    max_time_lost, fuse, per_class = prm.max_time_lost, prm.fuse, prm.per_class
    cap = mean.shape[0]
    n_tracked, n_lost, n_free = counts[0], counts[1], counts[2]
    tracked_in = lists[0, :n_tracked].copy()
    lost_in = lists[1, :n_lost].copy()

    sc = d[:, 4]
    high = d[sc > track_thresh]
    # Reference quirk: a score exactly at track_thresh is in neither set, so it is ignored.
    low = d[(sc > LOW_SCORE_THRESH) & (sc < track_thresh)]
    hi_cls = high[:, 5].astype(np.int64)
    lo_cls = low[:, 5].astype(np.int64)
    hi_tlbr, hi_xyah = det_boxes(high)

    n_unc = 0
    for s in tracked_in:
        if not activated[s]:
            n_unc += 1
    unconfirmed = np.empty(n_unc, dtype=np.int64)
    pool = np.empty(n_tracked - n_unc + n_lost, dtype=np.int64)
    iu = 0
    ip = 0
    for s in tracked_in:
        if activated[s]:
            pool[ip] = s
            ip += 1
        else:
            unconfirmed[iu] = s
            iu += 1
    for s in lost_in:
        pool[ip] = s
        ip += 1

    # Step 2: first association (high-score detections vs confirmed + lost, predicted).
    # Reference quirk: unconfirmed tracks are not predicted before they are matched (step 3b).
    kalman_predict(mean, cov, pool, state, steps)
    cost = iou_cost(track_tlbr(mean, pool), hi_tlbr, high[:, 4], fuse, cls[pool], hi_cls, per_class)
    x, y = assign(cost, match_thresh)
    n_m = 0
    for i in range(x.shape[0]):
        if x[i] >= 0:
            n_m += 1
    m_slots = np.empty(n_m, dtype=np.int64)
    m_dets = np.empty(n_m, dtype=np.int64)
    refind = np.empty(n_m, dtype=np.int64)
    n_refind = 0
    k = 0
    for i in range(x.shape[0]):
        if x[i] >= 0:
            m_slots[k] = pool[i]
            m_dets[k] = x[i]
            if state[pool[i]] != TRACKED:
                refind[n_refind] = pool[i]
                n_refind += 1
            k += 1
    _take(mean, cov, state, activated, score, cls, last, m_slots, high[m_dets], hi_xyah[m_dets], frame)

    # Step 3: second association (remaining Tracked tracks vs low-score detections).
    n_r = 0
    for i in range(x.shape[0]):
        if x[i] < 0 and state[pool[i]] == TRACKED:
            n_r += 1
    r_tracked = np.empty(n_r, dtype=np.int64)
    k = 0
    for i in range(x.shape[0]):
        if x[i] < 0 and state[pool[i]] == TRACKED:
            r_tracked[k] = pool[i]
            k += 1
    u_det = np.array([j for j in range(y.shape[0]) if y[j] < 0], dtype=np.int64)
    lo_tlbr, lo_xyah = det_boxes(low)
    # Reference quirk: no score fusion in the second association, even without mot20.
    cost = iou_cost(track_tlbr(mean, r_tracked), lo_tlbr, low[:, 4], False, cls[r_tracked], lo_cls, per_class)
    x2, _y2 = assign(cost, SECOND_MATCH_THRESH)
    sel = np.array([i for i in range(n_r) if x2[i] >= 0], dtype=np.int64)
    cols = np.array([x2[i] for i in range(n_r) if x2[i] >= 0], dtype=np.int64)
    _take(mean, cov, state, activated, score, cls, last, r_tracked[sel], low[cols], lo_xyah[cols], frame)
    newly_lost = np.array([r_tracked[i] for i in range(n_r) if x2[i] < 0], dtype=np.int64)
    for s in newly_lost:
        state[s] = LOST

    # Unconfirmed tracks (started last frame, not predicted) vs the high-score leftovers.
    rest = high[u_det]
    rest_xyah = hi_xyah[u_det]
    rest_cls = hi_cls[u_det]
    cost = iou_cost(
        track_tlbr(mean, unconfirmed), hi_tlbr[u_det], rest[:, 4], fuse, cls[unconfirmed], rest_cls, per_class
    )
    x3, y3 = assign(cost, UNCONFIRMED_MATCH_THRESH)
    sel = np.array([i for i in range(n_unc) if x3[i] >= 0], dtype=np.int64)
    cols = np.array([x3[i] for i in range(n_unc) if x3[i] >= 0], dtype=np.int64)
    _take(mean, cov, state, activated, score, cls, last, unconfirmed[sel], rest[cols], rest_xyah[cols], frame)
    removed = np.empty(n_unc + n_lost, dtype=np.int64)
    n_removed = 0
    for i in range(n_unc):
        if x3[i] < 0:
            state[unconfirmed[i]] = REMOVED
            removed[n_removed] = unconfirmed[i]
            n_removed += 1

    # Step 4: new tracks at score >= track_thresh + 0.1.
    new_rows = np.array(
        [j for j in range(y3.shape[0]) if y3[j] < 0 and rest[j, 4] >= new_thresh], dtype=np.int64
    )
    n_new = new_rows.shape[0]
    new_slots = np.empty(n_new, dtype=np.int64)
    for k in range(n_new):
        n_free -= 1
        new_slots[k] = lists[2, n_free]
    if n_new:
        initiate(mean, cov, new_slots, rest_xyah[new_rows])
        for k in range(n_new):
            s = new_slots[k]
            j = new_rows[k]
            tid[s] = counts[3]
            counts[3] += 1
            state[s] = TRACKED
            activated[s] = frame == 1  # reference quirk: tracks of the very first frame start confirmed
            score[s] = rest[j, 4]
            cls[s] = rest_cls[j]
            last[s] = frame
            start[s] = frame
            was_removed[s] = False

    # Step 5: lost tracks past the buffer are removed.
    for s in lost_in:
        if frame - last[s] > max_time_lost:
            state[s] = REMOVED
            removed[n_removed] = s
            n_removed += 1

    # Lists, in the reference's order.
    mark = np.zeros(cap, dtype=np.bool_)
    for s in refind[:n_refind]:
        mark[s] = True
    tracked = np.empty(n_tracked + n_new + n_refind, dtype=np.int64)
    nt = 0
    for s in tracked_in:
        if state[s] == TRACKED:
            tracked[nt] = s
            nt += 1
    for s in new_slots:
        tracked[nt] = s
        nt += 1
    for s in refind[:n_refind]:
        tracked[nt] = s
        nt += 1
    lost = np.empty(n_lost + newly_lost.shape[0], dtype=np.int64)
    nl = 0
    # Reference quirk: its lost list subtracts the ever-removed list by id, so a track that was
    # once removed, then re-found, leaves the lost list at once the next time it is lost.
    for s in lost_in:
        if not mark[s] and not was_removed[s]:
            lost[nl] = s
            nl += 1
    for s in newly_lost:
        if not was_removed[s]:
            lost[nl] = s
            nl += 1
    for s in removed[:n_removed]:
        was_removed[s] = True
    tracked = tracked[:nt]
    lost = lost[:nl]

    # Tracked/lost duplicates: keep the one followed for longer.
    if nt and nl:
        dc = iou_cost(
            track_tlbr(mean, tracked),
            track_tlbr(mean, lost),
            score[:0],
            False,
            cls[tracked],
            cls[lost],
            per_class,
        )
        drop_t = np.zeros(nt, dtype=np.bool_)
        drop_l = np.zeros(nl, dtype=np.bool_)
        any_dup = False
        for p in range(nt):
            for q in range(nl):
                if dc[p, q] < DUPLICATE_IOU_DIST:
                    any_dup = True
                    # Reference quirk: a tie drops the tracked one, keeping the lost one.
                    if last[tracked[p]] - start[tracked[p]] > last[lost[q]] - start[lost[q]]:
                        drop_l[q] = True
                    else:
                        drop_t[p] = True
        if any_dup:
            tracked = tracked[~drop_t]
            lost = lost[~drop_l]

    # Free what left both lists; confirmed ones are reported as ended.
    mark[:] = False
    for s in tracked:
        mark[s] = True
    for s in lost:
        mark[s] = True
    ended = np.empty(n_tracked + n_lost + n_new, dtype=np.int64)
    ne = 0
    for group in (tracked_in, lost_in, new_slots):
        for s in group:
            if not mark[s]:
                if activated[s]:
                    ended[ne] = tid[s]
                    ne += 1
                lists[2, n_free] = s
                n_free += 1
    lists[0, : tracked.shape[0]] = tracked
    lists[1, : lost.shape[0]] = lost
    counts[0] = tracked.shape[0]
    counts[1] = lost.shape[0]
    counts[2] = n_free
    out = np.array([s for s in tracked if activated[s]], dtype=np.int64)
    return out, ended[:ne]


@njit(cache=True)
def _take(
    mean: np.ndarray,
    cov: np.ndarray,
    state: np.ndarray,
    activated: np.ndarray,
    score: np.ndarray,
    cls: np.ndarray,
    last: np.ndarray,
    slots: np.ndarray,
    dets: np.ndarray,
    xyah: np.ndarray,
    frame: int,
) -> None:  # pragma: no cover - compiled
    """Matched tracks take their detection: Kalman correction, score, class, Tracked state."""
    kalman_correct(mean, cov, slots, xyah)
    for k in range(slots.shape[0]):
        s = slots[k]
        state[s] = TRACKED
        activated[s] = True
        last[s] = frame
        score[s] = dets[k, 4]
        cls[s] = np.int64(dets[k, 5])
