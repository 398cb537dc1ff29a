"""Linear assignment with a cost limit, equal to ``lap.lapjv(cost, extend_cost=True, cost_limit=L)``.

Matching row i to column j costs ``c[i, j]``; leaving a row or a column unmatched costs ``L / 2``
(lap's extension). So a pair is worth ``L - c`` and only entries below ``L`` can be in an optimal
matching: the problem falls apart into the connected components of the graph of those entries.
In tracking these components are tiny (one track, its one or two candidate boxes), so each is
solved exactly by enumeration in compiled code.

Where enumeration cannot prove that its optimum is the only one (an entry exactly at the limit,
two matchings within 1e-9 of each other, or a component too large to enumerate) the whole matrix
goes to ``lap.lapjv`` itself, the reference's solver: with a unique optimum any exact solver
returns it, and on ties only lapjv's own tie-breaking reproduces the reference.
"""

from __future__ import annotations

import lap
import numpy as np
from numba import njit, objmode

#: Matchings whose worth differs by less than this are treated as a tie (sent to lapjv).
TIE_EPS = 1e-9
#: Enumeration budget (search nodes) per component before falling back to lapjv.
NODE_BUDGET = 20000
MAX_COMPONENT_ROWS = 12


def lapjv_rows_cols(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference's call: ``x[i]`` = column of row i or -1, ``y[j]`` = row of column j or -1."""
    _, x, y = lap.lapjv(np.ascontiguousarray(cost), extend_cost=True, cost_limit=limit)
    return np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.int64)


@njit(cache=True, nogil=True)
def _find(parent: np.ndarray, a: int) -> int:  # pragma: no cover - compiled
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@njit(cache=True, nogil=True)
def _solve_component(
    cost: np.ndarray, limit: float, rows: np.ndarray, cols: np.ndarray, x: np.ndarray, y: np.ndarray
) -> bool:  # pragma: no cover - compiled
    """Best matching of one component by depth-first enumeration; False if not provably unique."""
    nr = rows.shape[0]
    nc = cols.shape[0]
    used = np.zeros(nc, dtype=np.bool_)
    choice = np.full(nr, -2, dtype=np.int64)  # -2: not decided yet, -1: unmatched, k: cols[k]
    best = np.full(nr, -1, dtype=np.int64)
    best_gain = -1.0
    second_gain = -1.0
    gains = np.zeros(nr + 1)
    depth = 0
    nodes = 0
    while depth >= 0:
        nodes += 1
        if nodes > NODE_BUDGET:
            return False
        if depth == nr:
            g = float(gains[nr])
            if g > best_gain:
                second_gain = best_gain
                best_gain = g
                best[:] = choice
            elif g > second_gain:
                second_gain = g
            depth -= 1
            continue
        # Advance this row's choice: -2 -> -1 (unmatched) -> next usable column.
        c = choice[depth]
        if c >= 0:
            used[c] = False
        nxt = c + 1
        if c == -2:
            nxt = -1
        if nxt >= 0:
            while nxt < nc and (used[nxt] or not cost[rows[depth], cols[nxt]] < limit):
                nxt += 1
        if nxt >= nc:
            choice[depth] = -2
            depth -= 1
            continue
        choice[depth] = nxt
        g = float(gains[depth])
        if nxt >= 0:
            used[nxt] = True
            g += limit - cost[rows[depth], cols[nxt]]
        gains[depth + 1] = g
        depth += 1
    if second_gain >= 0.0 and best_gain - second_gain < TIE_EPS:
        return False
    for k in range(nr):
        if best[k] >= 0:
            x[rows[k]] = cols[best[k]]
            y[cols[best[k]]] = rows[k]
    return True


@njit(cache=True)
def assign(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``(x, y)`` exactly as ``lap.lapjv(cost, extend_cost=True, cost_limit=limit)`` returns them."""
    n, m = cost.shape
    x = np.full(n, -1, dtype=np.int64)
    y = np.full(m, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return x, y
    parent = np.arange(n + m)
    has_edge = np.zeros(n + m, dtype=np.bool_)
    fallback = False
    for i in range(n):
        for j in range(m):
            c = cost[i, j]
            if c < limit:
                has_edge[i] = True
                has_edge[n + j] = True
                a = _find(parent, i)
                b = _find(parent, n + j)
                if a != b:
                    parent[a] = b
            elif c == limit or c != c:
                fallback = True
    if not fallback:
        roots = np.empty(n + m, dtype=np.int64)
        for k in range(n + m):
            roots[k] = _find(parent, k)
        done = np.zeros(n + m, dtype=np.bool_)
        for k in range(n):
            if not has_edge[k] or done[roots[k]]:
                continue
            r = roots[k]
            done[r] = True
            rows = np.array([i for i in range(n) if roots[i] == r and has_edge[i]], dtype=np.int64)
            cols = np.array([j for j in range(m) if roots[n + j] == r and has_edge[n + j]], dtype=np.int64)
            if rows.shape[0] == 1 and cols.shape[0] == 1:
                x[rows[0]] = cols[0]
                y[cols[0]] = rows[0]
                continue
            if rows.shape[0] > MAX_COMPONENT_ROWS or not _solve_component(cost, limit, rows, cols, x, y):
                fallback = True
                break
    if fallback:
        with objmode(x="int64[:]", y="int64[:]"):
            x, y = lapjv_rows_cols(cost, limit)
    return x, y
