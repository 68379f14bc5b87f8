"""Per-origin records -> per-series and pooled metric tables, and the cross-sectional rank IC.

Scale: ``*_rel`` metrics are fractions of the last observed close at each origin (volume: of the mean
history volume), log-return and coverage metrics are scale-free; these pool across series. Price-unit
metrics (``close_mae``, ``close_rmse``, ``crps``, ``volume_mae``) are per series only (NaN when pooled).
Pooled numbers weight every origin equally.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats.significance import cross_sectional_ic, ic_summary
from .metrics import CALIBRATION_LEVELS

POOLED = "ALL"
METHOD_ORDER = ("kronos", "persistence", "rw_drift", "gaussian_rw", "bootstrap", "garch_t", "ewma", "har_rv",
                "seasonal_naive")
MIN_CROSS_SECTION = 5
IC_COLUMNS = ["method", "timestamps", "ics", "mean_ic", "std_ic", "icir", "nw_t", "p", "hit_rate"]

# metric -> (record column, how: mean | rmse), its unit, and whether it pools across series.
METRICS: dict[str, tuple[str, str, str, bool]] = {
    "close_mae": ("close_ae", "mean", "price units, close at the horizon", False),
    "close_rmse": ("close_se", "rmse", "price units, close at the horizon", False),
    "close_mae_rel": ("close_ae_rel", "mean", "fraction of last close, close at the horizon", True),
    "close_rmse_rel": ("close_se_rel", "rmse", "fraction of last close, close at the horizon", True),
    "logret_mae": ("logret_ae", "mean", "log return to the horizon", True),
    "logret_rmse": ("logret_se", "rmse", "log return to the horizon", True),
    "direction_acc": ("direction", "mean", "share of horizon returns with the right sign", True),
    "crps": ("crps", "mean", "price units, mean over horizon bars", False),
    "crps_rel": ("crps_rel", "mean", "fraction of last close, mean over horizon bars", True),
    "crps_high_rel": ("crps_high_rel", "mean", "fraction of last close, CRPS of the bars' highs (model, bootstrap)",
                      True),
    "crps_low_rel": ("crps_low_rel", "mean", "fraction of last close, CRPS of the bars' lows (model, bootstrap)", True),
    "pinball_rel": ("pinball_rel", "mean", "fraction of last close, mean over levels 0.1..0.9 and horizon bars", True),
    "coverage_50": ("coverage_50", "mean", "share of closes in the central 50% interval (target 0.5)", True),
    "coverage_80": ("coverage_80", "mean", "share of closes in the central 80% interval (target 0.8)", True),
    "vol_mae": ("vol_ae", "mean", "per-bar log-return std over the horizon", True),
    "volume_mae": ("volume_ae", "mean", "volume units, mean over horizon bars", False),
    "volume_mae_rel": ("volume_ae_rel", "mean", "fraction of mean history volume", True),
    "ohlc_break": ("ohlc_break", "mean", "share of sample-path bars with high<max(o,c) or low>min(o,c)", True),
    "ohlc_break_mean": ("ohlc_break_mean", "mean", "same, for the mean forecast bars", True),
}
CALIBRATION_COLUMNS = [f"coverage_{round(level * 100)}" for level in CALIBRATION_LEVELS]
STEP_PREFIX = "crps_rel_h"  # per-origin CRPS of horizon bar k: column crps_rel_h{k}


def ordered_methods(methods) -> list[str]:
    present = list(dict.fromkeys(methods))
    return [m for m in METHOD_ORDER if m in present] + sorted(m for m in present if m not in METHOD_ORDER)


def _reduce(values: pd.Series, how: str) -> float:
    values = values.dropna()
    if values.empty:
        return float("nan")
    return float(np.sqrt(values.mean())) if how == "rmse" else float(values.mean())


def _row(group: pd.DataFrame, pooled: bool) -> dict[str, float]:
    row: dict[str, float] = {"n_origins": float(group["origin"].count())}
    for metric, (column, how, _, pools) in METRICS.items():
        usable = column in group and (pools or not pooled)
        row[metric] = _reduce(group[column], how) if usable else float("nan")
    return row


def summarise(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, method), then the pooled rows (series ``ALL``); columns ``METRICS``."""
    rows = []
    for (series, method), group in records.groupby(["series", "method"], sort=False):
        rows.append({"series": series, "method": method, **_row(group, pooled=False)})
    for method, group in records.groupby("method", sort=False):
        rows.append({"series": POOLED, "method": method, **_row(group, pooled=True)})
    table = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(ordered_methods(table["method"]))}
    series_order = {s: i for i, s in enumerate(dict.fromkeys(records["series"]))}
    series_order[POOLED] = len(series_order)
    table = table.sort_values(["series", "method"], key=lambda c: c.map(series_order if c.name == "series" else order))
    return table.reset_index(drop=True)


def pooled_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Pooled metrics side by side: one row per pooling metric, one column per method."""
    pooled = summary[summary["series"] == POOLED].set_index("method")
    metrics = ["n_origins"] + [m for m, spec in METRICS.items() if spec[3]]
    return pooled[metrics].T.reindex(columns=ordered_methods(pooled.index))


def calibration(records: pd.DataFrame) -> pd.DataFrame:
    """Pooled empirical coverage of the central intervals, rows = nominal level, columns = methods with paths."""
    table = {}
    for method, group in records.groupby("method", sort=False):
        columns = [c for c in CALIBRATION_COLUMNS if c in group]
        means = group[columns].mean()
        if means.notna().any():
            table[method] = means.to_numpy()
    frame = pd.DataFrame(table, index=list(CALIBRATION_LEVELS[:len(CALIBRATION_COLUMNS)]))
    return frame.reindex(columns=ordered_methods(frame.columns))


def rank_ic(records: pd.DataFrame, min_series: int = MIN_CROSS_SECTION) -> pd.DataFrame:
    """Cross-sectional Spearman IC of forecast vs realised horizon log return, per method.

    For each origin timestamp shared by at least ``min_series`` series, one IC across those series
    (:func:`kronos.stats.significance.cross_sectional_ic`, the one the backtest uses); the table gives per method the
    number of such timestamps, the number of ICs averaged (NaN ICs, e.g. from a constant forecast, left out),
    their mean and standard deviation, the IC information ratio (mean / std), the Newey–West t-statistic
    and p-value of the mean, and the share of positive ICs.
    """
    rows = []
    with_forecast = records.dropna(subset=["forecast_return"]) if "forecast_return" in records else records.iloc[:0]
    for method in ordered_methods(with_forecast["method"]):
        group = with_forecast[with_forecast["method"] == method]
        forecast = group.pivot_table(index="origin", columns="series", values="forecast_return", aggfunc="first")
        realised = group.pivot_table(index="origin", columns="series", values="realised_return", aggfunc="first")
        realised = realised.reindex(index=forecast.index, columns=forecast.columns)
        shared = (forecast.notna() & realised.notna()).sum(axis=1) >= min_series
        _, ics = cross_sectional_ic(forecast.to_numpy(dtype=float), realised.to_numpy(dtype=float), min_series)
        summary = ic_summary(ics[shared.to_numpy()])
        rows.append({"method": method, "timestamps": int(shared.sum()), "ics": int(summary["dates"]),
                     "mean_ic": summary["mean"], "std_ic": summary["std"], "icir": summary["icir"],
                     "nw_t": summary["t"], "p": summary["p"], "hit_rate": summary["hit_rate"]})
    return pd.DataFrame(rows, columns=IC_COLUMNS)


def crps_by_step(records: pd.DataFrame, series: str | None = None) -> pd.DataFrame:
    """Mean CRPS of the close at each horizon bar, as a fraction of the last close: rows = step 1..P,
    columns = methods with sample paths; pooled over all series (every origin weighs the same), or of one
    ``series``."""
    columns = sorted((c for c in records.columns if c.startswith(STEP_PREFIX)),
                     key=lambda c: int(c[len(STEP_PREFIX):]))
    rows = records if series is None else records[records["series"] == series]
    table = rows.groupby("method", sort=False)[columns].mean().T.dropna(axis=1, how="all")
    table.index = pd.Index([int(c[len(STEP_PREFIX):]) for c in table.index], name="step")
    return table.reindex(columns=ordered_methods(table.columns))
