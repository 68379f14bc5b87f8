"""Baseline forecasts computed from the same history window the model sees.

- ``persistence``: every future close (and volume) equals the last one: the random-walk point forecast.
- ``rw_drift``: random walk with drift, ``close_t = c0 * exp(t * mu)``, mu the mean of the last N log returns.
- ``gaussian_rw``: zero-drift Gaussian random walk in log price with the standard deviation (ddof 1) of the
  last N log returns; gives sample paths, hence CRPS and interval coverage.
- ``bootstrap``: historical simulation: each path's log returns are drawn i.i.d. with replacement from the
  last N log returns (not demeaned), cumulated from the last close. Each drawn return brings its whole
  bar: the open as a ratio to the previous close, the high and low as ratios to the close, so the
  bootstrap also forecasts highs and lows (scored as ``crps_high_rel``, ``crps_low_rel``).
- ``garch_t``: GARCH(1,1) with Student-t innovations fitted on the last N log returns (needs the optional
  ``arch`` package, see :mod:`kronos.stats.garch`); where the fit fails, the Gaussian random walk's
  paths stand in and the forecast is flagged ``fallback``.
- ``ewma``: zero-drift Gaussian random walk whose per-bar variance is the RiskMetrics exponentially weighted
  mean of squared log returns (lambda 0.94) at the origin (:func:`kronos.evaluation.volatility.ewma_variance`).
- ``har_rv``: daily data only: zero-drift Gaussian random walk with the HAR-RV forecast of the mean per-bar
  variance over the horizon (:func:`kronos.evaluation.volatility.har_variance`); left out where the history
  is too short for its regression.
- ``seasonal_naive``: volume only, intraday series only: each future bar's volume is the volume of the bar
  with the same time of day 1..7 days earlier (the nearest found in the history), else the last volume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..bars import CLOSE, FEATURE_COLUMNS, HIGH, LOW, OPEN, VOLUME
from ..stats.garch import fit_garch_t, garch_available, simulate_garch_t
from .volatility import ewma_variance, har_variance

BASELINES = ("persistence", "rw_drift", "gaussian_rw", "bootstrap", "garch_t", "ewma", "har_rv", "seasonal_naive")
PATH_BASELINES = ("gaussian_rw", "bootstrap", "garch_t", "ewma", "har_rv")  # the baselines with sample paths
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class MethodForecast:
    """One method's forecast at one origin: (S, P) closes and volumes (None where the method has none)
    and (S, P, 6) full bars (the model and the bootstrap). ``fallback``: the method could not be fitted at
    this origin and these are the Gaussian random walk's paths."""

    close: np.ndarray | None
    volume: np.ndarray | None
    bars: np.ndarray | None = None
    fallback: bool = False


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


def paths_from_returns(last_close: float, returns: np.ndarray) -> np.ndarray:
    """(S, P) closes from (S, P) per-bar log returns cumulated from ``last_close``."""
    return last_close * np.exp(np.cumsum(returns, axis=1))


def bootstrap_returns(returns: np.ndarray, sample_count: int, pred_len: int, rng: np.random.Generator) -> np.ndarray:
    """(S, P) log returns drawn i.i.d. with replacement from the history's log returns (N,), as they are
    (no demeaning); zeros when there is no history return."""
    if len(returns) == 0:
        return np.zeros((sample_count, pred_len))
    return np.asarray(returns, dtype=np.float64)[rng.integers(0, len(returns), size=(sample_count, pred_len))]


def bootstrap_bars(history: np.ndarray, window: int | None, sample_count: int, pred_len: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Historical simulation of whole bars: ((S, P) closes, (S, P, 6) bars) from the history (H, 6).

    The draws are those of :func:`bootstrap_returns` on :func:`history_returns` (same ``rng`` calls, same
    closes); a drawn return's bar also gives the path's open (its ratio to the previous close), high and low
    (their ratios to its close). Volume and amount are 0.
    """
    history = np.asarray(history, dtype=np.float64)
    last_close = float(history[-1, CLOSE])
    kept = history[history[:, CLOSE] > 0]
    returns = history_returns(history[:, CLOSE], window)
    if len(returns) == 0:
        closes = np.full((sample_count, pred_len), last_close)
        bars = np.zeros((sample_count, pred_len, 6))
        bars[..., :4] = closes[..., None]
        return closes, bars
    shape = kept[1:][-len(returns):]  # the bar that ends each return
    previous = kept[:-1, CLOSE][-len(returns):]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.stack([shape[:, 0] / previous, shape[:, 1] / shape[:, CLOSE], shape[:, 2] / shape[:, CLOSE]], 1)
    ratios = np.where(np.isfinite(ratios), ratios, 1.0)
    idx = rng.integers(0, len(returns), size=(sample_count, pred_len))
    closes = paths_from_returns(last_close, returns[idx])
    before = np.concatenate([np.full((sample_count, 1), last_close), closes[:, :-1]], axis=1)
    bars = np.zeros((sample_count, pred_len, len(FEATURE_COLUMNS)))
    bars[..., OPEN] = before * ratios[idx, 0]
    bars[..., HIGH] = closes * ratios[idx, 1]
    bars[..., LOW] = closes * ratios[idx, 2]
    bars[..., CLOSE] = closes
    return closes, bars


def garch_forecast(returns: np.ndarray, last_close: float, sample_count: int, pred_len: int,
                   rng: np.random.Generator, fallback: MethodForecast) -> MethodForecast:
    """The ``garch_t`` forecast: (S, P) closes from a GARCH(1,1)-t fitted on ``returns`` (N,), or
    ``fallback`` (flagged) where no usable fit exists."""
    fit = fit_garch_t(returns)
    if fit is None:
        return MethodForecast(fallback.close, None, fallback=True)
    return MethodForecast(paths_from_returns(last_close, simulate_garch_t(fit, sample_count, pred_len, rng)), None)


def baseline_forecasts(history: np.ndarray, history_ts: pd.DatetimeIndex, future_ts: pd.DatetimeIndex,
                       sample_count: int, rng: np.random.Generator, vol_window: int | None = None,
                       past: tuple[pd.DatetimeIndex, np.ndarray] | None = None, garch: bool = True,
                       seconds: dict[str, float] | None = None) -> dict[str, MethodForecast]:
    """Every baseline's forecast for one origin.

    Args:
        history: (H, 6) bars open, high, low, close, volume, amount (the model's history window).
        history_ts, future_ts: timestamps of the history (H) and of the horizon (P).
        sample_count: paths of each baseline with sample paths.
        rng: numpy generator for those paths (drawn in the order gaussian_rw, bootstrap, garch_t, ewma, har_rv).
        vol_window: N, the number of most recent log returns for drift, volatility, bootstrap and GARCH
            (all when None).
        past: timestamps and volumes of every bar before the origin, for the seasonal-naive volume
            (default: the history window).
        garch: include ``garch_t`` (left out anyway when ``arch`` is not installed).
        seconds: when given, each baseline's time in seconds is added to ``seconds[name]``.
    """
    clock = _Clock(seconds)
    pred_len = len(future_ts)
    last_close, last_volume = float(history[-1, CLOSE]), float(history[-1, VOLUME])
    returns = history_returns(history[:, CLOSE], vol_window)
    mu = float(returns.mean()) if len(returns) else 0.0
    sigma = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    steps = np.arange(1, pred_len + 1)
    flat_volume = np.full((1, pred_len), last_volume)
    out = {
        "persistence": MethodForecast(np.full((1, pred_len), last_close), flat_volume),
        "rw_drift": MethodForecast(last_close * np.exp(mu * steps)[None, :], None),
    }
    clock.lap(None)
    shocks = rng.standard_normal((sample_count, pred_len)) * sigma
    out["gaussian_rw"] = MethodForecast(paths_from_returns(last_close, shocks), None)
    clock.lap("gaussian_rw")
    closes, bars = bootstrap_bars(history, vol_window, sample_count, pred_len, rng)
    out["bootstrap"] = MethodForecast(closes, None, bars)
    clock.lap("bootstrap")
    if garch and garch_available():
        out["garch_t"] = garch_forecast(returns, last_close, sample_count, pred_len, rng, out["gaussian_rw"])
        clock.lap("garch_t")
    out["ewma"] = _gaussian(last_close, ewma_variance(returns), sample_count, pred_len, rng)
    clock.lap("ewma")
    intraday = is_intraday(history_ts)
    har = har_variance(returns, pred_len) if not intraday else float("nan")
    if np.isfinite(har):
        out["har_rv"] = _gaussian(last_close, har, sample_count, pred_len, rng)
        clock.lap("har_rv")
    if intraday:
        past_ts, past_volume = past if past is not None else (history_ts, history[:, VOLUME])
        volume = seasonal_naive_volume(past_ts, past_volume, future_ts)
        out["seasonal_naive"] = MethodForecast(None, volume[None, :])
    return out


def _gaussian(last_close: float, variance: float, sample_count: int, pred_len: int,
              rng: np.random.Generator) -> MethodForecast:
    """Zero-drift Gaussian random-walk paths (S, P) with per-bar log-return ``variance`` (0 when not finite)."""
    sigma = float(np.sqrt(variance)) if np.isfinite(variance) and variance > 0 else 0.0
    return MethodForecast(paths_from_returns(last_close, rng.standard_normal((sample_count, pred_len)) * sigma), None)


class _Clock:
    """Adds the time since the previous lap to ``seconds[name]`` (nothing when ``seconds`` is None)."""

    def __init__(self, seconds: dict[str, float] | None):
        self.seconds, self.last = seconds, time.perf_counter()

    def lap(self, name: str | None) -> None:
        now = time.perf_counter()
        if self.seconds is not None and name is not None:
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now
