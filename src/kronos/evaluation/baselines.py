"""Baseline forecasts computed from the same history window the model sees.

- ``persistence``: every future close (and volume) equals the last one: the random-walk point forecast.
- ``rw_drift``: random walk with drift, ``close_t = c0 * exp(t * mu)``, mu the mean of the last N log returns.
- ``gaussian_rw``: zero-drift Gaussian random walk in log price with the standard deviation (ddof 1) of the
  last N log returns; gives sample paths, hence CRPS and interval coverage.
- ``seasonal_naive``: volume only, intraday series only: each future bar's volume is the volume of the bar
  with the same time of day 1..7 days earlier (the nearest found in the history), else the last volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BASELINES = ("persistence", "rw_drift", "gaussian_rw", "seasonal_naive")
CLOSE, VOLUME = 3, 4
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class MethodForecast:
    """One method's forecast at one origin: (S, P) closes and volumes (None where the method has none)
    and (S, P, 6) full bars (model only)."""

    close: np.ndarray | None
    volume: np.ndarray | None
    bars: np.ndarray | None = None


def history_returns(close: np.ndarray, window: int | None) -> np.ndarray:
    """The last ``window`` log returns (all when None) of a history of closes (H,); non-positive closes dropped."""
    close = np.asarray(close, dtype=np.float64)
    close = close[close > 0]
    returns = np.diff(np.log(close))
    return returns if window is None else returns[-window:]


def _ns(timestamps: pd.DatetimeIndex) -> np.ndarray:
    return pd.DatetimeIndex(timestamps).as_unit("ns").asi8


def is_intraday(timestamps: pd.DatetimeIndex) -> bool:
    """True when the median spacing of ``timestamps`` is under one day."""
    return len(timestamps) > 1 and float(np.median(np.diff(_ns(timestamps)))) < DAY_NS


def seasonal_naive_volume(past_ts: pd.DatetimeIndex, past_volume: np.ndarray, future_ts: pd.DatetimeIndex,
                          max_days: int = 7) -> np.ndarray:
    """(P,) volumes: for each future bar, the volume of the past bar at the same clock time 1..``max_days``
    days earlier (nearest day first; past bars only), else the last past volume."""
    known = _ns(past_ts)
    volume = np.asarray(past_volume, dtype=np.float64)
    future = _ns(future_ts)
    out = np.full(len(future), volume[-1])
    found = np.zeros(len(future), dtype=bool)
    for day in range(1, max_days + 1):
        target = future - day * DAY_NS
        position = np.minimum(np.searchsorted(known, target), len(known) - 1)
        hit = ~found & (known[position] == target)
        out[hit] = volume[position[hit]]
        found |= hit
    return out


def baseline_forecasts(history: np.ndarray, history_ts: pd.DatetimeIndex, future_ts: pd.DatetimeIndex,
                       sample_count: int, rng: np.random.Generator, vol_window: int | None = None,
                       past: tuple[pd.DatetimeIndex, np.ndarray] | None = None) -> dict[str, MethodForecast]:
    """Every baseline's forecast for one origin.

    Args:
        history: (H, 6) bars open, high, low, close, volume, amount (the model's history window).
        history_ts, future_ts: timestamps of the history (H) and of the horizon (P).
        sample_count: paths of the Gaussian random walk.
        rng: numpy generator for those paths.
        vol_window: N, the number of most recent log returns for drift and volatility (all when None).
        past: timestamps and volumes of every bar before the origin, for the seasonal-naive volume
            (default: the history window).
    """
    pred_len = len(future_ts)
    last_close, last_volume = float(history[-1, CLOSE]), float(history[-1, VOLUME])
    returns = history_returns(history[:, CLOSE], vol_window)
    mu = float(returns.mean()) if len(returns) else 0.0
    sigma = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    steps = np.arange(1, pred_len + 1)
    flat_volume = np.full((1, pred_len), last_volume)
    shocks = rng.standard_normal((sample_count, pred_len)) * sigma
    out = {
        "persistence": MethodForecast(np.full((1, pred_len), last_close), flat_volume),
        "rw_drift": MethodForecast(last_close * np.exp(mu * steps)[None, :], None),
        "gaussian_rw": MethodForecast(last_close * np.exp(np.cumsum(shocks, axis=1)), None),
    }
    if is_intraday(history_ts):
        past_ts, past_volume = past if past is not None else (history_ts, history[:, VOLUME])
        volume = seasonal_naive_volume(past_ts, past_volume, future_ts)
        out["seasonal_naive"] = MethodForecast(None, volume[None, :])
    return out
