"""The assignment solver returns exactly what lap.lapjv (the reference's solver) returns."""

from __future__ import annotations

import lap
import numpy as np
import pytest

from tracker._assign import assign


def _lapjv(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    if cost.size == 0:
        return np.full(cost.shape[0], -1), np.full(cost.shape[1], -1)
    _, x, y = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
    return x, y


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (4, 0)])
def test_empty(shape: tuple[int, int]) -> None:
    x, y = assign(np.ones(shape), 0.8)
    assert (x == -1).all() and (y == -1).all() and x.shape == (shape[0],) and y.shape == (shape[1],)


def test_one_row_many_columns_takes_the_cheapest_below_limit() -> None:
    x, y = assign(np.array([[0.9, 0.3, 0.2, 0.85]]), 0.8)
    assert x.tolist() == [2] and y.tolist() == [-1, -1, 0, -1]


def test_all_above_threshold_matches_nothing() -> None:
    x, y = assign(np.full((3, 4), 0.95), 0.8)
    assert (x == -1).all() and (y == -1).all()


def test_global_optimum_not_greedy() -> None:
    # Greedy would take (0,0)=0.1 and leave row 1 unmatched; the optimum matches both.
    cost = np.array([[0.1, 0.2], [0.3, 0.9]])
    x, _ = assign(cost, 0.8)
    assert x.tolist() == [1, 0]


@pytest.mark.parametrize("limit", [0.5, 0.7, 0.8, 1.0])
def test_equals_lapjv_on_random_sparse_matrices_with_ties(limit: float) -> None:
    rng = np.random.default_rng(int(limit * 10))
    for t in range(3000):
        n, m = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        cost = np.ones((n, m))
        mask = rng.random((n, m)) < rng.random()
        cost[mask] = rng.random(int(mask.sum())) * 1.1
        if t % 5 == 0:
            cost[rng.integers(0, n), rng.integers(0, m)] = limit  # exactly at the limit
        if t % 7 == 0 and n >= 2:
            cost[1, :] = cost[0, :]  # identical rows: tied optima
        if t % 13 == 0:
            cost = np.round(cost, 1)  # many exact ties
        x, y = assign(cost, limit)
        xr, yr = _lapjv(cost, limit)
        assert x.tolist() == list(xr) and y.tolist() == list(yr), cost


def test_large_dense_component_falls_back_to_lapjv() -> None:
    rng = np.random.default_rng(5)
    cost = rng.random((40, 40)) * 0.5
    x, y = assign(cost, 0.8)
    xr, yr = _lapjv(cost, 0.8)
    assert x.tolist() == list(xr) and y.tolist() == list(yr)
