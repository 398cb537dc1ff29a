"""A track's motion on the ground: smoothed position, speed and distance so far (pure, time passed in).

Input: at each processed frame, the frame's time (seconds) and the track's anchor on the ground
(metres, through a calibration). Raw differences of detector boxes are noise: a box edge that
jitters by 2 px is several centimetres on the ground, and at 25-30 frames/s that is metres per
second of fake speed. So:

- **Velocity** is the slope of a least-squares line fitted to the positions of the trailing
  ``window_s`` seconds (a causal first-order Savitzky-Golay filter, the same live and offline).
  Its noise falls with the window as ``n^-3/2``: with ``window_s = 1.0`` at 25 frames/s (25
  samples) and 5 cm of position noise, the speed's standard error is about 0.07 m/s, under 2% of
  a 5 m/s run; a 0.3 s window would be near 0.4 m/s. The price is lag: a speed change shows fully
  after one window. 1.0 s is the default for people; vehicles at road speed can use less.
- **Position** is the fitted line's value at the latest time (the smoothed anchor).
- **Speed is known** once the window spans at least half of ``window_s`` (fewer samples give
  slopes dominated by noise); until then it is None.
- **Distance** integrates the speed over time: when the speed first becomes known, the fit's
  path over the samples so far (speed x their span), then speed x each frame's time step. Steps
  between raw (or even smoothed) positions would add the jitter up: a person standing still would
  "walk" metres a minute (measured: 22 m in 10 s from raw steps, 2.8 m from smoothed steps, 0.5 m
  integrated, with 5 cm of noise).
- **Gaps**: a track not seen for more than ``max_gap_s`` (re-found after an occlusion) starts a
  new window; the straight step from its last smoothed position to the new raw one is added to
  its distance (it moved at least that far), and its speed is unknown again until the new window
  spans half of ``window_s``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit


@dataclass(frozen=True, slots=True)
class Motion:
    x: float  # smoothed ground position, metres
    y: float
    speed_mps: float | None  # None until the window holds two samples
    distance_m: float  # along the smoothed path so far


@dataclass
class Kinematics:
    """One track's ground motion; ``update(t, x, y)`` per processed frame, in time order.

    The window's sums are kept running (O(1) per update), times relative to the window's first
    sample so they stay small; they are recomputed from the window every ``_REBASE`` updates.
    """

    window_s: float = 1.0
    max_gap_s: float = 1.0
    _samples: deque[tuple[float, float, float]] = field(default_factory=deque)
    _last: tuple[float, float] | None = None  # last smoothed position
    _last_t: float | None = None
    _known: bool = False  # the speed of the current window is known
    _base: float = 0.0
    _sums: list[float] = field(default_factory=lambda: [0.0] * 6)  # t, x, y, tt, tx, ty
    _age: int = 0
    distance_m: float = 0.0
    max_speed_mps: float = 0.0
    first_t: float | None = None

    def __post_init__(self) -> None:
        if not self.window_s > 0 or not self.max_gap_s > 0:
            raise ValueError("window_s and max_gap_s must be > 0")

    def _rebase(self) -> None:
        q = self._samples
        self._base = q[0][0] if q else 0.0
        b = self._base
        self._sums = [0.0] * 6
        s = self._sums
        for t, x, y in q:
            _accumulate(s, t - b, x, y, 1.0)
        self._age = 0

    def update(self, t: float, x: float, y: float) -> Motion:
        if self._last_t is not None and t <= self._last_t:
            raise ValueError(f"time must increase: {t} after {self._last_t}")
        if self.first_t is None:
            self.first_t = t
        q = self._samples
        prev_t = self._last_t
        if prev_t is not None and t - prev_t > self.max_gap_s:
            q.clear()  # re-found: a new window
            self._known = False
            if self._last is not None:  # it moved at least the straight step
                self.distance_m += ((x - self._last[0]) ** 2 + (y - self._last[1]) ** 2) ** 0.5
            prev_t = None
        self._last_t = t
        if not q:
            self._base = t
            self._sums = [0.0] * 6
            self._age = 0
        s = self._sums
        q.append((t, x, y))
        _accumulate(s, t - self._base, x, y, 1.0)
        while t - q[0][0] > self.window_s + _TIME_EPS:
            ot, ox, oy = q.popleft()
            _accumulate(s, ot - self._base, ox, oy, -1.0)
        self._age += 1
        if self._age >= _REBASE:
            self._rebase()
            s = self._sums
        speed: float | None = None
        sx, sy = x, y
        n = len(q)
        if n >= 2:
            mt, mx, my = s[0] / n, s[1] / n, s[2] / n
            stt = s[3] - n * mt * mt
            if stt > 0:
                vx = (s[4] - n * mt * mx) / stt
                vy = (s[5] - n * mt * my) / stt
                rt = t - self._base - mt
                sx, sy = mx + vx * rt, my + vy * rt
                span = t - q[0][0]
                if span >= 0.5 * self.window_s - _TIME_EPS:
                    speed = (vx * vx + vy * vy) ** 0.5
                    if not self._known:  # the fit's path over the window so far
                        self.distance_m += speed * span
                        self._known = True
                    elif prev_t is not None:
                        self.distance_m += speed * (t - prev_t)
                    if speed > self.max_speed_mps:
                        self.max_speed_mps = speed
        self._last = (sx, sy)
        return Motion(sx, sy, speed, self.distance_m)


_REBASE = 512
#: Times closer than this are equal (frame times from pts x time base carry rounding).
_TIME_EPS = 1e-6


def _accumulate(s: list[float], r: float, x: float, y: float, k: float) -> None:
    """Add (k = 1) or remove (k = -1) a sample at relative time ``r`` from the window's sums."""
    s[0] += k * r
    s[1] += k * x
    s[2] += k * y
    s[3] += k * r * r
    s[4] += k * r * x
    s[5] += k * r * y


class GroundMotion:
    """``Kinematics`` for many tracks at once (numpy over the tracks of a frame): what the analytics use.

    Each track holds a slot: a ring of its window's samples (at most ``capacity``: size it for the
    highest frame rate expected; the analytics use twice the samples a window holds at the
    stream's frame rate) and the window's running sums, times relative to the slot's base (moved
    to the oldest sample every ``REBASE_S`` seconds, the sums recomputed then). Same rules as
    ``Kinematics`` (window, speed known after half of it, distance integrated, gaps), checked
    against it in the tests.
    """

    REBASE_S = 60.0

    def __init__(self, window_s: float = 1.0, max_gap_s: float = 1.0, capacity: int = 64) -> None:
        if not window_s > 0 or not max_gap_s > 0 or capacity < 2:
            raise ValueError("window_s and max_gap_s must be > 0, capacity >= 2")
        self.window_s, self.max_gap_s, self.k = window_s, max_gap_s, capacity
        self._free: list[int] = []
        self._size = 0
        self._grow(16)

    def _grow(self, size: int) -> None:
        k, old = self.k, self._size

        def grown(prev: Any, shape: tuple[int, ...], fill: Any, dtype: Any = np.float64) -> Any:
            a = np.full(shape, fill, dtype=dtype)
            if old:
                a[:old] = prev
            return a

        g = self.__dict__.get
        # one row per slot: the ring of samples, the window's sums, and the motion so far
        self.t: npt.NDArray[np.float64] = grown(g("t"), (size, k), 0.0)
        self.x: npt.NDArray[np.float64] = grown(g("x"), (size, k), 0.0)
        self.y: npt.NDArray[np.float64] = grown(g("y"), (size, k), 0.0)
        self.sums: npt.NDArray[np.float64] = grown(g("sums"), (size, 6), 0.0)
        self.n: npt.NDArray[np.intp] = grown(g("n"), (size,), 0, np.intp)
        self.head: npt.NDArray[np.intp] = grown(g("head"), (size,), 0, np.intp)
        self.tail: npt.NDArray[np.intp] = grown(g("tail"), (size,), 0, np.intp)
        self.known: npt.NDArray[np.bool_] = grown(g("known"), (size,), False, bool)
        self.last_t: npt.NDArray[np.float64] = grown(g("last_t"), (size,), np.nan)
        self.base: npt.NDArray[np.float64] = grown(g("base"), (size,), 0.0)
        self.last_x: npt.NDArray[np.float64] = grown(g("last_x"), (size,), 0.0)
        self.last_y: npt.NDArray[np.float64] = grown(g("last_y"), (size,), 0.0)
        self.distance: npt.NDArray[np.float64] = grown(g("distance"), (size,), 0.0)
        self.max_speed: npt.NDArray[np.float64] = grown(g("max_speed"), (size,), 0.0)
        self._free += list(range(size - 1, old - 1, -1))
        self._size = size

    def allocate(self) -> int:
        if not self._free:
            self._grow(2 * self._size)
        return self._free.pop()

    def release(self, slot: int) -> None:
        self.n[slot] = self.head[slot] = self.tail[slot] = 0
        self.sums[slot] = 0.0
        self.last_t[slot] = np.nan
        self.known[slot] = False
        self.distance[slot] = self.max_speed[slot] = 0.0
        self._free.append(slot)

    def update(self, t: float, slots: np.ndarray, x: np.ndarray, y: np.ndarray) -> npt.NDArray[np.float64]:
        """One frame at time ``t`` for the tracks in ``slots`` with ground positions ``x``, ``y``.

        Returns a 4 x N array, one column per slot: smoothed x, y, speed (NaN while unknown) and
        distance (``sx, sy, speed, dist = update(...)`` unpacks its rows)."""
        s = np.asarray(slots, dtype=np.intp)
        if np.any(self.last_t[s] >= t):
            raise ValueError(f"time must increase: {t} after {np.nanmax(self.last_t[s])}")
        out = np.empty((4, len(s)))
        # contiguous, as at the warm-up: a column view (gr[:, 0]) would compile a second kernel
        xs, ys = np.ascontiguousarray(x, np.float64), np.ascontiguousarray(y, np.float64)
        _motion_step(float(t), s, xs, ys, self.window_s, self.max_gap_s, _TIME_EPS, self.REBASE_S, self.t, self.x,
                     self.y, self.n, self.head, self.tail, self.sums, self.base, self.known, self.last_t,
                     self.last_x, self.last_y, self.distance, self.max_speed, out)  # fmt: skip
        return out


@njit(cache=True, nogil=True)
def _motion_step(  # pragma: no cover - compiled
    t: float,
    slots: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    window: float,
    max_gap: float,
    eps: float,
    rebase_s: float,
    rt: np.ndarray,
    rx: np.ndarray,
    ry: np.ndarray,
    n: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    sums: np.ndarray,
    base: np.ndarray,
    known: np.ndarray,
    last_t: np.ndarray,
    last_x: np.ndarray,
    last_y: np.ndarray,
    dist: np.ndarray,
    maxsp: np.ndarray,
    out: np.ndarray,
) -> None:
    """``Kinematics.update`` for each slot (the same running sums), in place; results into ``out``."""
    k = rt.shape[1]
    for j in range(len(slots)):
        s = slots[j]
        x = xs[j]
        y = ys[j]
        pt = last_t[s]
        fresh = np.isnan(pt)
        gap = (not fresh) and (t - pt > max_gap)
        if gap:
            dist[s] += math.hypot(x - last_x[s], y - last_y[s])
            n[s] = 0
            tail[s] = head[s]
            sums[s, :] = 0.0
            known[s] = False
        if n[s] == 0:
            base[s] = t
        if n[s] >= k:  # the ring is full: its oldest sample goes first
            _take(s, tail[s], -1.0, rt, rx, ry, base, sums)
            tail[s] = (tail[s] + 1) % k
            n[s] -= 1
        h = head[s]
        rt[s, h] = t
        rx[s, h] = x
        ry[s, h] = y
        _take(s, h, 1.0, rt, rx, ry, base, sums)
        head[s] = (h + 1) % k
        n[s] += 1
        while n[s] > 0 and t - rt[s, tail[s]] > window + eps:
            _take(s, tail[s], -1.0, rt, rx, ry, base, sums)
            tail[s] = (tail[s] + 1) % k
            n[s] -= 1
        if t - base[s] > rebase_s:  # precision over hours: sums relative to the oldest sample
            base[s] = rt[s, tail[s]]
            sums[s, :] = 0.0
            for i in range(n[s]):
                _take(s, (tail[s] + i) % k, 1.0, rt, rx, ry, base, sums)
        cnt = float(n[s])
        mt = sums[s, 0] / cnt
        mx = sums[s, 1] / cnt
        my = sums[s, 2] / cnt
        stt = sums[s, 3] - cnt * mt * mt
        sx, sy, speed = x, y, np.nan
        if cnt >= 2 and stt > 1e-12:
            vx = (sums[s, 4] - cnt * mt * mx) / stt
            vy = (sums[s, 5] - cnt * mt * my) / stt
            r = t - base[s] - mt
            sx = mx + vx * r
            sy = my + vy * r
            span = t - rt[s, tail[s]]
            if span >= 0.5 * window - eps:
                v = math.hypot(vx, vy)
                speed = v
                if not known[s]:  # the fit's path over the window so far
                    dist[s] += v * span
                    known[s] = True
                elif not fresh and not gap:
                    dist[s] += v * (t - pt)
                if v > maxsp[s]:
                    maxsp[s] = v
        last_t[s] = t
        last_x[s] = sx
        last_y[s] = sy
        out[0, j] = sx
        out[1, j] = sy
        out[2, j] = speed
        out[3, j] = dist[s]


@njit(cache=True, nogil=True)
def _take(
    s: int,
    i: int,
    sign: float,
    rt: np.ndarray,
    rx: np.ndarray,
    ry: np.ndarray,
    base: np.ndarray,
    sums: np.ndarray,
) -> None:  # pragma: no cover - compiled
    r = rt[s, i] - base[s]
    x = rx[s, i]
    y = ry[s, i]
    sums[s, 0] += sign * r
    sums[s, 1] += sign * x
    sums[s, 2] += sign * y
    sums[s, 3] += sign * r * r
    sums[s, 4] += sign * r * x
    sums[s, 5] += sign * r * y
