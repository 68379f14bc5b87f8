"""Volatility forecasts: realised-variance proxies, the EWMA and HAR-RV baselines, QLIKE / MSE losses,
the Mincer–Zarnowitz regression and Diebold–Mariano tests (numpy; pandas for the tables).

Units. Everything is the *variance of log returns over the whole horizon* of P bars (a per-bar variance
times P). A method's forecast is the mean over its sample paths of each path's sum of squared per-bar log
returns (the paths' spread; a method with one path has none). The realised proxies, from the P horizon bars:

- ``rv_close``: the sum of squared close-to-close log returns, starting from the last observed close;
- ``rv_parkinson``: ``sum (ln H/L)^2 / (4 ln 2)`` (Parkinson, 1980);
- ``rv_gk``: ``sum 0.5 (ln H/L)^2 - (2 ln 2 - 1) (ln C/O)^2`` (Garman & Klass, 1980).

The range proxies see no gap between one bar's close and the next bar's open (an overnight move of a
daily stock), so they run below ``rv_close`` where such gaps are large.

Losses (Patton, 2011: both rank forecasts correctly whatever the noise of an unbiased proxy), divided by
``scale``, the history's variance of log returns times P (known at the origin), so that they pool across
series: ``qlike = proxy / f + ln(f / scale)`` (Patton's QLIKE ``proxy / f - ln(proxy / f) - 1`` up to a term
that depends on the proxy alone, so differences between methods and the Diebold–Mariano tests are the
same, and a zero proxy stays finite) and ``mse = ((proxy - f) / scale) ** 2``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..stats.significance import default_lags, diebold_mariano

PROXIES = ("rv_close", "rv_parkinson", "rv_gk")
EWMA_LAMBDA = 0.94  # RiskMetrics, daily data
HAR_WINDOWS = (1, 5, 22)  # HAR-RV: daily, weekly, monthly averages (Corsi, 2009)
VOL_COLUMNS = ["method", "proxy", "origins", "qlike", "mse", "mz_alpha", "mz_beta", "mz_r2"]
DM_COLUMNS = ["method", "baseline", "proxy", "loss", "dates", "mean_diff", "t", "p"]


def _logs(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)


def realised_variances(bars: np.ndarray, last_close: float) -> dict[str, float]:
    """The three proxies (module docstring) of the horizon bars (P, 4+) open, high, low, close."""
    bars = np.asarray(bars, dtype=np.float64)
    o, h, lo, c = (_logs(bars[:, k]) for k in range(4))
    returns = np.diff(np.r_[_logs(np.array([last_close])), c])
    hl, co = h - lo, c - o
    return {"rv_close": float(np.sum(returns**2)), "rv_parkinson": float(np.sum(hl**2) / (4 * math.log(2))),
            "rv_gk": float(np.sum(0.5 * hl**2 - (2 * math.log(2) - 1) * co**2))}


def path_variance(close_paths: np.ndarray, last_close: float) -> float:
    """The forecast horizon variance of (S, P) close paths: the mean over paths of the sum of squared
    per-bar log returns from ``last_close``; NaN with fewer than 2 paths."""
    paths = np.asarray(close_paths, dtype=np.float64)
    if paths.ndim != 2 or len(paths) < 2:
        return float("nan")
    full = _logs(np.concatenate([np.full((len(paths), 1), last_close), paths], axis=1))
    return float(np.nanmean(np.sum(np.diff(full, axis=1) ** 2, axis=1)))


def ewma_variance(returns: np.ndarray, lam: float = EWMA_LAMBDA) -> float:
    """RiskMetrics per-bar variance for the bar after ``returns`` (N,): ``s2 <- lam * s2 + (1 - lam) * r^2``
    over the returns, started from the mean square of the first min(N, 30). NaN for no return."""
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return float("nan")
    variance = float(np.mean(r[:30] ** 2))
    weights = (1 - lam) * lam ** np.arange(len(r) - 1, -1, -1)  # closed form of the recursion
    return float(lam ** len(r) * variance + weights @ r**2)


def har_variance(returns: np.ndarray, horizon: int, windows: tuple[int, ...] = HAR_WINDOWS) -> float:
    """HAR-RV forecast of the mean per-bar variance over the next ``horizon`` bars from log returns (N,).

    With only bars at hand, a bar's realised variance is its squared log return. The regression (OLS on the
    history) is ``mean(rv[t+1..t+h]) = b0 + sum_w b_w * mean(rv[t-w+1..t])`` for the ``windows`` (1, 5 and 22
    bars: a day, a week, a month of daily bars); the fitted line at the last bar is the forecast, floored at
    a tenth of the history's mean squared return and capped at the highest mean over any ``max(windows)``
    bars of the history (a least-squares line can extrapolate far past anything seen after one extreme bar,
    such as an unadjusted split: 4.1 per bar against a highest monthly mean of 0.22 on one real series).
    NaN with too short a history (fewer than 4 * 22 + h returns).
    """
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    rv = r**2
    longest = max(windows)
    n = len(rv)
    if n < 4 * longest + horizon:
        return float("nan")
    cumulative = np.r_[0.0, np.cumsum(rv)]
    ends = np.arange(longest, n + 1)  # regressors use rv[end - w : end]
    features = np.column_stack([np.ones(len(ends))] + [(cumulative[ends] - cumulative[ends - w]) / w for w in windows])
    fit_rows = ends <= n - horizon
    target = (cumulative[ends[fit_rows] + horizon] - cumulative[ends[fit_rows]]) / horizon
    coefficients, *_ = np.linalg.lstsq(features[fit_rows], target, rcond=None)
    forecast = float(features[-1] @ coefficients)
    highest = float(features[:, 1 + windows.index(longest)].max())  # the longest window's mean, at every bar
    return min(max(forecast, 0.1 * float(rv.mean())), highest)


def origin_numbers(close_paths: np.ndarray | None, last_close: float, future_bars: np.ndarray,
                   scale: float) -> dict[str, float]:
    """Per-origin volatility numbers of one method: ``var_forecast`` (NaN without paths), the proxies, and
    ``var_scale`` (the history's horizon variance, the losses' scale)."""
    out = {"var_scale": scale, **realised_variances(future_bars, last_close)}
    out["var_forecast"] = path_variance(close_paths, last_close) if close_paths is not None else float("nan")
    return out


def losses(records: pd.DataFrame, proxy: str) -> pd.DataFrame:
    """Per record, ``qlike`` and ``mse`` of ``var_forecast`` against ``proxy`` (module docstring); NaN where the
    forecast or scale is not positive."""
    f = records["var_forecast"].to_numpy(dtype=float)
    y = records[proxy].to_numpy(dtype=float)
    scale = records["var_scale"].to_numpy(dtype=float)
    ok = (f > 0) & (scale > 0) & np.isfinite(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        qlike = np.where(ok, y / f + np.log(f / scale), np.nan)
        mse = np.where(ok, ((y - f) / scale) ** 2, np.nan)
    return pd.DataFrame({"qlike": qlike, "mse": mse}, index=records.index)


def mincer_zarnowitz(forecast: np.ndarray, proxy: np.ndarray) -> tuple[float, float, float]:
    """OLS of ``proxy = alpha + beta * forecast`` (an unbiased forecast has alpha 0, beta 1): alpha, beta, R^2."""
    f, y = np.asarray(forecast, dtype=np.float64), np.asarray(proxy, dtype=np.float64)
    ok = np.isfinite(f) & np.isfinite(y)
    f, y = f[ok], y[ok]
    if len(f) < 3 or f.std() == 0:
        return float("nan"), float("nan"), float("nan")
    beta = float(np.cov(f, y, ddof=0)[0, 1] / f.var())
    alpha = float(y.mean() - beta * f.mean())
    residual = y - alpha - beta * f
    r2 = float(1 - residual.var() / y.var()) if y.var() > 0 else float("nan")
    return alpha, beta, r2


def _with_forecast(records: pd.DataFrame) -> pd.DataFrame:
    if "var_forecast" not in records:
        return records.iloc[:0]
    return records[np.isfinite(records["var_forecast"].to_numpy(dtype=float))]


def volatility_table(records: pd.DataFrame) -> pd.DataFrame:
    """Pooled over origins, per method with paths and proxy: mean QLIKE and MSE (scaled, module docstring) and
    the Mincer–Zarnowitz alpha, beta, R^2 of the scaled proxy on the scaled forecast."""
    rows = []
    usable = _with_forecast(records)
    for (method, group) in usable.groupby("method", sort=False):
        scale = group["var_scale"].to_numpy(dtype=float)
        for proxy in PROXIES:
            loss = losses(group, proxy)
            alpha, beta, r2 = mincer_zarnowitz(group["var_forecast"].to_numpy(dtype=float) / scale,
                                               group[proxy].to_numpy(dtype=float) / scale)
            rows.append({"method": method, "proxy": proxy, "origins": int(loss["qlike"].notna().sum()),
                         "qlike": float(loss["qlike"].mean()), "mse": float(loss["mse"].mean()),
                         "mz_alpha": alpha, "mz_beta": beta, "mz_r2": r2})
    return pd.DataFrame(rows, columns=VOL_COLUMNS)


def paired_by_date(records: pd.DataFrame, values: pd.Series, method: str, baseline: str) -> np.ndarray:
    """Loss differences ``method - baseline`` summed over the series of each origin timestamp and divided by
    the mean number of series per timestamp, in time order: the series of one date are not independent, so a
    test counts dates, not origins, while the mean equals the mean difference over origins."""
    frame = records[["series", "origin", "method"]].assign(value=values)
    wide = frame[frame["method"].isin([method, baseline])].pivot_table(
        index=["origin", "series"], columns="method", values="value", aggfunc="first")
    if method not in wide or baseline not in wide:
        return np.array([])
    diff = (wide[method] - wide[baseline]).dropna()
    by_date = diff.groupby(level="origin")
    # per-date sums over the mean number of series per date: their mean is the mean over origins (every
    # origin weighs the same, as in the pooled tables) while the dates stay the units of the test
    return (by_date.sum() / by_date.size().mean()).sort_index().to_numpy()


def dm_tests(records: pd.DataFrame, method: str, baselines: list[str], loss_frame, proxies=PROXIES,
             loss_names=("qlike", "mse"), lags: int | None = None) -> pd.DataFrame:
    """Diebold–Mariano tests of ``method`` against each baseline, for every proxy and loss: the mean over
    dates of the per-date loss difference (negative: ``method`` better), its Newey–West t and p.
    ``loss_frame(records, proxy)`` gives the per-record losses."""
    rows = []
    for proxy in proxies:
        frame = loss_frame(records, proxy)
        for name in loss_names:
            for baseline in baselines:
                diff = paired_by_date(records, frame[name], method, baseline)
                test = diebold_mariano(diff, np.zeros_like(diff), lags if lags is not None else default_lags(len(diff)))
                rows.append({"method": method, "baseline": baseline, "proxy": proxy, "loss": name,
                             "dates": test.n, "mean_diff": test.mean, "t": test.t, "p": test.p})
    return pd.DataFrame(rows, columns=DM_COLUMNS)


def volatility_tests(records: pd.DataFrame, method: str) -> pd.DataFrame:
    """:func:`dm_tests` of ``method``'s variance forecasts against every other method with paths."""
    usable = _with_forecast(records)
    methods = list(dict.fromkeys(usable["method"]))
    if method not in methods:
        return pd.DataFrame(columns=DM_COLUMNS)
    return dm_tests(usable, method, [m for m in methods if m != method], losses)
