"""Forecast metrics as pure numpy functions.

Conventions: sample axes come first (``samples`` is (S, ...)); the realised value ``y`` has the
remaining shape. Every function returns float64. Prices stay in their own units; the scale-free
versions used for pooling divide by the last observed close (see :func:`score_origin`).
"""

from __future__ import annotations

import numpy as np

from ..bars import CLOSE, HIGH, LOW, OPEN
from ..stats.scores import central_interval, crps_samples
from ..stats.significance import rankdata

CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PINBALL_LEVELS = CALIBRATION_LEVELS


def expected_sample_coverage(level: float, paths: int) -> float:
    """About the coverage that a perfectly calibrated forecast's central ``level`` interval reaches on average
    when its bounds are the empirical quantiles (:func:`central_interval`) of ``paths`` sample paths:
    ``level * (paths - 1) / (paths + 1)``. With 20 paths a nominal 80% interval covers about 72.4%, with
    100 paths 78.4%.

    Why: for exchangeable continuous draws the k-th smallest of n sits at probability k / (n + 1) on average,
    and linear interpolation puts the tau-quantile at rank ``1 + tau * (n - 1)``. The value is exact when
    those ranks are whole numbers; otherwise the interpolation makes it depend slightly on the distribution
    (within half a point from 20 paths on, in simulations with normal and Student-t draws).
    """
    if not 0 < level < 1:
        raise ValueError(f"interval level must be in (0, 1), got {level!r}")
    if paths < 2:
        raise ValueError(f"paths must be at least 2, got {paths!r}")
    return level * (paths - 1) / (paths + 1)


def interval_coverage(samples: np.ndarray, y: np.ndarray, level: float) -> float:
    """Share of realised values ``y`` (...) inside the central ``level`` interval (bounds included)."""
    lo, hi = central_interval(samples, level)
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean((y >= lo) & (y <= hi)))


def coverages(samples: np.ndarray, y: np.ndarray, levels: tuple[float, ...] = CALIBRATION_LEVELS) -> np.ndarray:
    """(len(levels),) coverage of each central interval, with one quantile pass for all levels."""
    levels_arr = np.asarray(levels, dtype=np.float64)
    if np.any((levels_arr <= 0) | (levels_arr >= 1)):
        raise ValueError(f"interval levels must be in (0, 1), got {list(levels)}")
    bounds = np.quantile(np.asarray(samples, dtype=np.float64), np.r_[(1 - levels_arr) / 2, (1 + levels_arr) / 2],
                         axis=0)
    lo, hi = bounds[:len(levels)], bounds[len(levels):]  # (L, ...)
    y = np.asarray(y, dtype=np.float64)
    inside = (y >= lo) & (y <= hi)
    return inside.reshape(len(levels), -1).mean(axis=1)


def pinball_loss(samples: np.ndarray, y: np.ndarray | float,
                 levels: tuple[float, ...] = PINBALL_LEVELS) -> np.ndarray:
    """Mean pinball (quantile) loss over ``levels``, in the units of ``y`` (lower is better).

    For each level tau the forecast quantile q is the empirical tau-quantile of ``samples`` (S, ...) over
    axis 0 (linear interpolation), and the loss is ``max(tau * (y - q), (tau - 1) * (y - q))``; the result,
    shape of ``y`` broadcast with (...), is the mean over the levels.
    """
    taus = np.asarray(levels, dtype=np.float64)
    if taus.size == 0 or np.any((taus <= 0) | (taus >= 1)):
        raise ValueError(f"pinball levels must be in (0, 1), got {list(levels)}")
    q = np.quantile(np.asarray(samples, dtype=np.float64), taus, axis=0)  # (L, ...)
    u = np.asarray(y, dtype=np.float64) - q
    taus = taus.reshape((-1,) + (1,) * (u.ndim - 1))
    return np.maximum(taus * u, (taus - 1) * u).mean(axis=0)


def log_returns(path: np.ndarray, start: np.ndarray | float) -> np.ndarray:
    """Log returns (..., P) of a price path (..., P) that starts from ``start`` (the last observed close).

    Non-positive prices give NaN instead of a warning.
    """
    path = np.asarray(path, dtype=np.float64)
    start = np.broadcast_to(np.asarray(start, dtype=np.float64)[..., None], path.shape[:-1] + (1,))
    full = np.concatenate([start, path], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(full > 0, np.log(np.where(full > 0, full, 1.0)), np.nan)
    return np.diff(logs, axis=-1)


def realised_volatility(path: np.ndarray, start: np.ndarray | float) -> np.ndarray:
    """Standard deviation (population, ddof 0) of the P log returns of ``path`` (..., P) from ``start``.

    Per-bar volatility in log-return units, shape (...); NaN when P < 2.
    """
    returns = log_returns(path, start)
    if returns.shape[-1] < 2:
        return np.full(returns.shape[:-1], np.nan)
    return returns.std(axis=-1)


def direction_hits(forecast_return: np.ndarray, realised_return: np.ndarray) -> np.ndarray:
    """Per-forecast direction score: 1 when the signs agree, 0 when they differ, 0.5 when the forecast
    return is exactly 0 (no direction called, a coin flip); NaN where the realised return is 0 or NaN
    (no direction to call)."""
    f = np.asarray(forecast_return, dtype=np.float64)
    r = np.asarray(realised_return, dtype=np.float64)
    hits = np.where(np.sign(f) == np.sign(r), 1.0, 0.0)
    hits = np.where(f == 0, 0.5, hits)
    return np.where((r == 0) | np.isnan(r) | np.isnan(f), np.nan, hits)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays (NaN pairs dropped); NaN if fewer than 3 pairs
    remain or either side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return float("nan")
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def ohlc_break_rates(bars: np.ndarray) -> dict[str, float]:
    """How often forecast bars (..., 4+) over open, high, low, close break the candle rules.

    ``high_break``: share of bars with high < max(open, close); ``low_break``: low > min(open, close);
    ``any_break``: either.
    """
    bars = np.asarray(bars, dtype=np.float64)
    o, h, lo, c = bars[..., OPEN], bars[..., HIGH], bars[..., LOW], bars[..., CLOSE]
    high = h < np.maximum(o, c)
    low = lo > np.minimum(o, c)
    return {"high_break": float(high.mean()), "low_break": float(low.mean()), "any_break": float((high | low).mean())}


def score_origin(close_paths: np.ndarray | None, volume_paths: np.ndarray | None, last_close: float,
                 realised_close: np.ndarray, realised_volume: np.ndarray, volume_scale: float,
                 bars: np.ndarray | None = None, realised_bars: np.ndarray | None = None) -> dict[str, float]:
    """All per-origin numbers of one method at one forecast origin.

    Args:
        close_paths: (S, P) forecast closes (S = 1 for a point forecast), or None (no close forecast).
        volume_paths: (S, P) forecast volumes, or None.
        last_close: the last observed close before the horizon (the scale of the ``*_rel`` numbers).
        realised_close, realised_volume: (P,) what happened.
        volume_scale: mean volume of the history window (the scale of ``volume_ae_rel``).
        bars: (S, P, 4+) full forecast bars for the OHLC-consistency rates, or None.
        realised_bars: (P, 4+) the bars that happened; with ``bars`` they give ``crps_high_rel`` and
            ``crps_low_rel``, the CRPS of the forecast highs and lows (mean over the horizon, fraction of
            ``last_close``).

    The point forecast is the mean over paths (what ``KronosPredictor.predict`` returns). Point numbers
    are at the horizon (the last bar); CRPS, pinball loss and coverage average over every bar of the horizon.
    With more than one path there are also ``pinball_rel`` (mean pinball loss over ``PINBALL_LEVELS``) and
    ``crps_rel_h1`` .. ``crps_rel_hP`` (CRPS of each horizon bar), as fractions of ``last_close``.
    Returns errors per origin (``*_ae`` absolute, ``*_se`` squared); aggregation happens later.
    """
    nan = float("nan")
    out: dict[str, float] = {}
    realised_close = np.asarray(realised_close, dtype=np.float64)
    realised_return = float(log_returns(realised_close[-1:], last_close)[0])
    out["realised_return"] = realised_return
    out["realised_vol"] = float(realised_volatility(realised_close, last_close))
    if close_paths is not None:
        paths = np.asarray(close_paths, dtype=np.float64)
        point = paths.mean(axis=0)
        forecast_return = float(log_returns(point[-1:], last_close)[0])
        error = point[-1] - realised_close[-1]
        out.update(
            forecast_return=forecast_return,
            close_ae=abs(error), close_se=error**2,
            close_ae_rel=abs(error) / last_close, close_se_rel=(error / last_close) ** 2,
            logret_ae=abs(forecast_return - realised_return), logret_se=(forecast_return - realised_return) ** 2,
            direction=float(direction_hits(forecast_return, realised_return)),
        )
        crps_steps = crps_samples(paths, realised_close)
        out["crps"] = float(crps_steps.mean())
        out["crps_rel"] = out["crps"] / last_close
        if len(paths) > 1:
            out["pinball_rel"] = float(pinball_loss(paths, realised_close).mean()) / last_close
            out.update({f"crps_rel_h{k}": float(v) / last_close for k, v in enumerate(crps_steps, start=1)})
        covered = coverages(paths, realised_close) if len(paths) > 1 else np.full(len(CALIBRATION_LEVELS), nan)
        for level, value in zip(CALIBRATION_LEVELS, covered):
            out[f"coverage_{round(level * 100)}"] = float(value)
        forecast_vol = float(np.nanmean(realised_volatility(paths, last_close))) if paths.shape[1] > 1 else nan
        out["vol_ae"] = abs(forecast_vol - out["realised_vol"])
    if volume_paths is not None:
        error = np.abs(np.asarray(volume_paths, dtype=np.float64).mean(axis=0) - realised_volume).mean()
        out["volume_ae"] = float(error)
        out["volume_ae_rel"] = float(error / volume_scale) if volume_scale > 0 else nan
    if bars is not None:
        rates = ohlc_break_rates(bars)
        mean_rates = ohlc_break_rates(np.asarray(bars).mean(axis=0))
        out.update(ohlc_break=rates["any_break"], ohlc_high_break=rates["high_break"],
                   ohlc_low_break=rates["low_break"], ohlc_break_mean=mean_rates["any_break"])
        if realised_bars is not None:
            bars, realised_bars = np.asarray(bars, dtype=np.float64), np.asarray(realised_bars, dtype=np.float64)
            for name, j in (("high", 1), ("low", 2)):
                out[f"crps_{name}_rel"] = float(crps_samples(bars[..., j], realised_bars[:, j]).mean()) / last_close
    return out
