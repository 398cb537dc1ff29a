"""Kalman filter and IoU kernels against the textbook matrix formulas, written independently here."""

from __future__ import annotations

import numpy as np
import pytest

from tracker import _kernels as K

WP, WV = 1 / 20, 1 / 160
F = np.eye(8)
F[:4, 4:] = np.eye(4)
H = np.eye(4, 8)


def _start(xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(xyah)
    mean, cov = np.zeros((n, 8)), np.zeros((n, 8, 8))
    slots = np.arange(n, dtype=np.int64)
    K.initiate(mean, cov, slots, xyah)
    return mean, cov, slots


def test_initiate_matches_reference_noise_model() -> None:
    mean, cov, _ = _start(np.array([[100.0, 50.0, 0.5, 80.0]]))
    assert mean[0].tolist() == [100.0, 50.0, 0.5, 80.0, 0, 0, 0, 0]
    h = 80.0
    std = [2 * WP * h, 2 * WP * h, 1e-2, 2 * WP * h, 10 * WV * h, 10 * WV * h, 1e-5, 10 * WV * h]
    np.testing.assert_allclose(cov[0], np.diag(np.square(std)), rtol=1e-15)


def test_predict_is_constant_velocity_with_height_scaled_noise() -> None:
    rng = np.random.default_rng(0)
    mean, cov, slots = _start(np.array([[10.0, 20.0, 0.4, 60.0], [300.0, 200.0, 0.6, 120.0]]))
    mean[:, 4:] = rng.normal(0, 2, (2, 4))
    a = rng.normal(0, 1, (2, 8, 8))
    cov[:] = cov + 0.01 * (a @ a.transpose(0, 2, 1))  # a general SPD covariance
    state = np.array([K.TRACKED, K.LOST], dtype=np.int8)
    exp_mean, exp_cov = mean.copy(), cov.copy()
    exp_mean[1, 7] = 0.0  # not Tracked: height velocity is zeroed first
    for i in range(2):
        h = exp_mean[i, 3]
        q = np.square([WP * h, WP * h, 1e-2, WP * h, WV * h, WV * h, 1e-5, WV * h])
        exp_cov[i] = F @ exp_cov[i] @ F.T + np.diag(q)
        exp_mean[i] = F @ exp_mean[i]
    K.kalman_predict(mean, cov, slots, state, 1)
    np.testing.assert_allclose(mean, exp_mean, rtol=1e-13)
    np.testing.assert_allclose(cov, exp_cov, rtol=1e-12)


def test_predict_several_steps_equals_repeated_single_steps() -> None:
    mean, cov, slots = _start(np.array([[10.0, 20.0, 0.4, 60.0]]))
    mean[0, 4:] = [3.0, -1.0, 0.001, 0.5]
    state = np.array([K.TRACKED], dtype=np.int8)
    m2, c2 = mean.copy(), cov.copy()
    K.kalman_predict(mean, cov, slots, state, 4)
    for _ in range(4):
        K.kalman_predict(m2, c2, slots, state, 1)
    np.testing.assert_array_equal(mean, m2)
    np.testing.assert_array_equal(cov, c2)


def test_update_is_the_kalman_correction() -> None:
    mean, cov, slots = _start(np.array([[100.0, 50.0, 0.5, 80.0]]))
    state = np.array([K.TRACKED], dtype=np.int8)
    K.kalman_predict(mean, cov, slots, state, 1)
    z = np.array([[104.0, 49.0, 0.52, 82.0]])
    m, p = mean[0].copy(), cov[0].copy()
    h = m[3]
    r = np.diag(np.square([WP * h, WP * h, 1e-1, WP * h]))
    s = H @ p @ H.T + r
    gain = p @ H.T @ np.linalg.inv(s)
    exp_mean = m + gain @ (z[0] - H @ m)
    exp_cov = p - gain @ s @ gain.T
    K.kalman_correct(mean, cov, slots, z)
    np.testing.assert_allclose(mean[0], exp_mean, rtol=1e-12)
    np.testing.assert_allclose(cov[0], exp_cov, rtol=1e-9, atol=1e-12)
    # the corrected state moves toward the measurement, never past it
    assert 100.0 < mean[0, 0] < 104.0


def test_iou_uses_plus_one_pixel_areas() -> None:
    a = np.array([[0.0, 0.0, 9.0, 9.0]])  # 10x10 pixels in the +1 convention
    b = np.array([[5.0, 0.0, 14.0, 9.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 9.0, 9.0]])
    none = np.zeros(3, dtype=np.int64)
    cost = K.iou_cost(a, b, np.ones(3), False, none[:1], none, False)
    # overlap 5x10 = 50, union 100 + 100 - 50 = 150
    np.testing.assert_allclose(cost[0], [1 - 50 / 150, 1.0, 0.0])


def test_iou_touching_boxes_overlap_by_one_pixel_column() -> None:
    # In the +1 convention boxes sharing an edge coordinate overlap by one pixel.
    a = np.array([[0.0, 0.0, 9.0, 9.0]])
    b = np.array([[9.0, 0.0, 18.0, 9.0]])
    z = np.zeros(1, dtype=np.int64)
    cost = K.iou_cost(a, b, np.ones(1), False, z, z, False)
    assert cost[0, 0] == pytest.approx(1 - 10 / 190)


def test_score_fusion_and_per_class_gate() -> None:
    a = np.array([[0.0, 0.0, 9.0, 9.0]])
    b = np.array([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 9.0]])
    cost = K.iou_cost(a, b, np.array([0.8, 0.3]), True, np.array([1]), np.array([1, 2]), False)
    np.testing.assert_allclose(cost[0], [1 - 0.8, 1 - 0.3])
    cost = K.iou_cost(a, b, np.array([0.8, 0.3]), True, np.array([1]), np.array([1, 2]), True)
    assert cost[0, 1] > 1.0  # different class: above every threshold
