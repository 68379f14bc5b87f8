"""The model against each baseline on the same origins: paired CRPS differences and per-series ratios.

Pooled CRPS (a fraction of the last close) is dominated by the most volatile series, so two numbers
complement it: the mean per-origin difference with its standard error (is the gap more than noise?) and
the geometric mean over series of the per-series CRPS ratio (does the model win on a typical series?).
The standard error treats origins as independent; consecutive origins of one series are not quite, so
read ±2 SE as a rough band rather than an exact test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .aggregate import POOLED, ordered_methods

METRIC = "crps_rel"
PAIRED_COLUMNS = ["baseline", "series", "n_origins", "model", "reference", "ratio", "mean_diff", "two_se"]
VERSUS_COLUMNS = ["n_origins", "model", "reference", "ratio", "mean_diff", "two_se", "geo_mean_ratio", "n_series",
                  "series_better"]


def paired_stats(model: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Numbers of paired per-origin scores (n,) of the model and a reference (NaN pairs dropped).

    ``mean_diff`` = mean of model - reference (negative: the model scores lower, i.e. better);
    ``two_se`` = 2 · std(ddof 1) / sqrt(n) of those differences (NaN when n < 2);
    ``ratio`` = mean(model) / mean(reference).
    """
    model, reference = np.asarray(model, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    keep = ~(np.isnan(model) | np.isnan(reference))
    model, reference = model[keep], reference[keep]
    n = len(model)
    nan = float("nan")
    if n == 0:
        return {"n_origins": 0.0, "model": nan, "reference": nan, "ratio": nan, "mean_diff": nan, "two_se": nan}
    diff = model - reference
    mean_reference = float(reference.mean())
    return {"n_origins": float(n), "model": float(model.mean()), "reference": mean_reference,
            "ratio": float(model.mean()) / mean_reference if mean_reference > 0 else nan,
            "mean_diff": float(diff.mean()), "two_se": 2 * float(diff.std(ddof=1)) / math.sqrt(n) if n > 1 else nan}


def geometric_mean_ratio(ratios: np.ndarray) -> float:
    """exp(mean(log r)) over the finite, positive ratios (n,); NaN when there are none."""
    ratios = np.asarray(ratios, dtype=np.float64)
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    return float(np.exp(np.log(ratios).mean())) if len(ratios) else float("nan")


def _scores(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-origin ``metric`` with rows (series, origin) and one column per method."""
    if records.empty or metric not in records:
        return pd.DataFrame()
    return records.set_index(["series", "origin", "method"])[metric].unstack("method")


def paired_differences(records: pd.DataFrame, model: str = "kronos", baselines: list[str] | None = None,
                       metric: str = METRIC) -> pd.DataFrame:
    """Model vs each baseline on their shared origins, per series and pooled (series ``ALL``).

    Columns ``PAIRED_COLUMNS`` (see :func:`paired_stats`; ``model``/``reference`` are the mean scores).
    ``baselines`` defaults to every other method with a non-NaN ``metric``. Empty when ``model`` has none.
    """
    scores = _scores(records, metric)
    if model not in scores:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    if baselines is None:
        baselines = [m for m in ordered_methods(scores.columns) if m != model and scores[m].notna().any()]
    rows = []
    for baseline in (b for b in baselines if b in scores):
        pair = scores[[model, baseline]].dropna()
        for series, group in pair.groupby(level="series", sort=False):
            rows.append({"baseline": baseline, "series": series,
                         **paired_stats(group[model].to_numpy(), group[baseline].to_numpy())})
        rows.append({"baseline": baseline, "series": POOLED,
                     **paired_stats(pair[model].to_numpy(), pair[baseline].to_numpy())})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def versus(paired: pd.DataFrame) -> pd.DataFrame:
    """One row per baseline from :func:`paired_differences`: the pooled numbers plus ``geo_mean_ratio``
    (geometric mean over series of the per-series ratio model/baseline), ``n_series`` (series with a
    ratio) and ``series_better`` (series where the model's ratio is below 1)."""
    rows = {}
    for baseline, group in paired.groupby("baseline", sort=False):
        pooled = group[group["series"] == POOLED].iloc[0]
        ratios = group.loc[group["series"] != POOLED, "ratio"].to_numpy(dtype=np.float64)
        finite = ratios[np.isfinite(ratios)]
        rows[baseline] = {**{c: pooled[c] for c in PAIRED_COLUMNS[2:]}, "geo_mean_ratio": geometric_mean_ratio(ratios),
                          "n_series": float(len(finite)), "series_better": float((finite < 1).sum())}
    return pd.DataFrame.from_dict(rows, orient="index", columns=VERSUS_COLUMNS).rename_axis("baseline")
