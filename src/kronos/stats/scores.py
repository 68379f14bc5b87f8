"""Proper scoring of sample-path forecasts and their intervals (pure numpy), shared by calibration, the hold-out
check and evaluation."""

from __future__ import annotations

import numpy as np


def crps_samples(samples: np.ndarray, y: np.ndarray | float) -> np.ndarray:
    """Continuous ranked probability score of an ensemble, in the units of ``y`` (lower is better).

    Energy form ``mean|X - y| - 0.5 * mean|X - X'|`` over all S² ordered pairs of members, computed
    exactly in O(S log S) by sorting: ``sum_ij |x_i - x_j| = 2 * sum_k x_(k) * (2k - S + 1)`` for the
    ascending order statistics x_(0..S-1). ``samples`` (S, ...), ``y`` broadcastable to (...).
    A single member (S = 1) gives the absolute error.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=0)
    y = np.asarray(y, dtype=np.float64)
    s = x.shape[0]
    if s == 0:
        raise ValueError("crps_samples needs at least one sample")
    weights = (2 * np.arange(s) - s + 1).astype(np.float64).reshape((s,) + (1,) * (x.ndim - 1))
    spread = (weights * x).sum(axis=0) / s**2  # = 0.5 * mean|X - X'|
    return np.abs(x - y).mean(axis=0) - spread


def central_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the central ``level`` interval of ``samples`` (S, ...) over axis 0.

    Bounds are the (1 - level)/2 and (1 + level)/2 empirical quantiles (linear interpolation).
    """
    if not 0 < level < 1:
        raise ValueError(f"interval level must be in (0, 1), got {level!r}")
    lo, hi = np.quantile(np.asarray(samples, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi
