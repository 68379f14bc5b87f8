"""Calibrating the spread of sample paths from a series' own past.

The model forecasts from several origins inside the history it was given; where each of those horizons
is already known, the realised closes say how wide the paths should have been. Per horizon step ``h`` the
nonconformity score of one past origin is the realised close's distance from the paths' median, in units
of the paths' own central interval on the realised value's side:

    r = (y_h - median_h) / (q_hi_h - median_h)   if y_h >= median_h
    r = (median_h - y_h) / (median_h - q_lo_h)   otherwise

so that ``y_h`` lies inside the central interval of the paths scaled by ``s`` around their median exactly
when ``r <= s``.

The conformal quantile ``s_h`` of those scores at the target level (with the finite-sample correction
``ceil((n + 1) * level) / n``) is the factor by which the paths' spread around their median must be
scaled so that the central ``level`` interval covers the realised value at the same rate on the past
origins. This is split-conformal prediction with a locally weighted score (Lei, G'Sell, Rinaldo,
Tibshirani and Wasserman, "Distribution-free predictive inference for regression", JASA 2018; the
normalised score follows Romano, Patterson and Candès, "Conformalized quantile regression", NeurIPS
2019). Bars of a time series are not exchangeable, so the coverage guarantee is approximate; the
held-out evaluation (``kronos evaluate``) measures what it gives.

Scores of neighbouring horizon steps are pooled (``window`` steps either side) because a history holds
few past origins.

Before the spread, the location: the paths' median move away from the last close is shrunk by the factor
``shrink`` in [0, 1] that best explains, by least squares over the past origins and steps, the realised
moves as ``shrink`` times the median's moves (0: the model's drift carried no information there, and the
paths are centred on the last close as a random walk would be; 1: kept as forecast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CALIBRATION_LEVEL = 0.8
MIN_ORIGINS = 4
MAX_ORIGINS = 12
PATHS_PER_ORIGIN = 16
SCALE_RANGE = (0.2, 20.0)


@dataclass(frozen=True)
class Calibration:
    """What calibration did to one forecast.

    ``scale`` (P,): factor applied to every path's distance from the median at each horizon step (all 1
    when calibration did not run). ``shrink``: factor applied to the median's move from the last close.
    ``origins``: past origins used (0 when it did not run). ``note``: why it did not run, else empty.
    """

    scale: np.ndarray
    origins: int
    shrink: float = 1.0
    level: float = CALIBRATION_LEVEL
    paths_per_origin: int = 0
    note: str = ""

    @property
    def applied(self) -> bool:
        return self.origins > 0

    @classmethod
    def skipped(cls, pred_len: int, note: str) -> Calibration:
        return cls(np.ones(pred_len), 0, note=note)


def plan_origins(history: int, pred_len: int, lookback: int, max_origins: int = MAX_ORIGINS) -> list[int]:
    """End rows (exclusive) of the past origins' histories inside a history of ``history`` bars.

    Each origin ``e`` forecasts bars ``[e, e + pred_len)``, all inside the history, from ``lookback`` bars
    before it when the history allows :data:`MIN_ORIGINS` such origins (histories of equal length share
    the network's batches), else from at least ``lookback // 2``. Up to ``max_origins`` ends, evenly
    spaced, the last one at ``history - pred_len``; an empty list when fewer than :data:`MIN_ORIGINS` fit.
    """
    last = history - pred_len
    first = lookback if last - lookback + 1 >= MIN_ORIGINS else max(2, lookback // 2)
    available = last - first + 1
    if available < MIN_ORIGINS:
        return []
    count = min(max_origins, available)
    return sorted({last - round(i * (last - first) / max(count - 1, 1)) for i in range(count)})


def minimum_history(pred_len: int, lookback: int) -> int:
    """Fewest history bars for which :func:`plan_origins` finds enough origins."""
    return max(2, lookback // 2) + pred_len + MIN_ORIGINS - 1


def conformal_scale(paths: np.ndarray, realised: np.ndarray, level: float = CALIBRATION_LEVEL,
                    window: int = 2) -> np.ndarray:
    """(P,) spread factors from past origins.

    Args:
        paths: (K, S, P) closes of the S sample paths at each of K past origins.
        realised: (K, P) the closes that happened.
        level: central-interval level to calibrate.
        window: scores of steps ``h - window .. h + window`` are pooled for step ``h``.
    """
    lo, median, hi = np.quantile(paths, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=1)  # each (K, P)
    floor = 1e-6 * np.maximum(np.abs(median), 1e-12)
    above = realised >= median
    reach = np.where(above, hi - median, median - lo)  # the interval's arm on the realised value's side
    scores = np.abs(realised - median) / np.maximum(reach, floor)  # (K, P)
    pred_len = scores.shape[1]
    scale = np.empty(pred_len)
    for h in range(pred_len):
        pooled = scores[:, max(0, h - window):h + window + 1].reshape(-1)
        pooled = pooled[np.isfinite(pooled)]
        if len(pooled) == 0:
            scale[h] = 1.0
            continue
        rank = min(1.0, math.ceil((len(pooled) + 1) * level) / len(pooled))
        scale[h] = np.quantile(pooled, rank, method="higher")
    return np.clip(scale, *SCALE_RANGE)


def fit_shrink(paths: np.ndarray, realised: np.ndarray, last_close: np.ndarray) -> float:
    """Least-squares factor in [0, 1] on the median's move: ``realised - c0 ≈ shrink * (median - c0)``.

    ``paths`` (K, S, P), ``realised`` (K, P), ``last_close`` (K,) the close before each past origin.
    """
    move = np.median(paths, axis=1) - last_close[:, None]
    happened = realised - last_close[:, None]
    denominator = float(np.sum(move * move))
    if not denominator > 0:
        return 1.0
    return float(np.clip(np.sum(move * happened) / denominator, 0.0, 1.0))


def recentre(paths: np.ndarray, last_close: np.ndarray | float, shrink: float) -> np.ndarray:
    """Shift every path so the per-step median's move from ``last_close`` is multiplied by ``shrink``.

    ``paths`` (..., S, P) closes; ``last_close`` broadcastable to (..., 1, 1).
    """
    median = np.median(paths, axis=-2, keepdims=True)
    return paths + (shrink - 1.0) * (median - last_close)


def rescale_paths(paths: np.ndarray, scale: np.ndarray, columns: list[int], last_close: float | None = None,
                  shrink: float = 1.0) -> np.ndarray:
    """Paths (S, P, C) with the given columns' per-step median moved to ``last_close + shrink * (median -
    last_close)`` (when ``last_close`` is given) and their distance from it scaled by ``scale`` (P,)."""
    out = paths.copy()
    median = np.median(paths[..., columns], axis=0, keepdims=True)  # (1, P, len(columns))
    centre = median if last_close is None else last_close + shrink * (median - last_close)
    out[..., columns] = centre + scale[None, :, None] * (paths[..., columns] - median)
    return out
