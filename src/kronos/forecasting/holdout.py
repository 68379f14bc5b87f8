"""Forecast against what happened: a forecast made from a cut-off inside the data, scored on the bars after it.

Used by ``kronos forecast --holdout N`` and by the web service's ``cutoff`` setting. Per forecast bar and
column: the realised value, the CRPS of the sample paths (in the column's units) and whether the realised
value fell inside the central 50% and 80% intervals of the paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..stats.scores import central_interval, crps_samples
from .predictor import Forecast

LEVELS = (0.5, 0.8)


def split_at(bars: pd.DataFrame, cutoff: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, realised): the bars before ``cutoff`` and those at or after it (``bars`` indexed by time)."""
    when = pd.Timestamp(cutoff)
    if when.tzinfo is not None:
        when = when.tz_localize(None)
    before = bars.index < when
    return bars[before], bars[~before]


def scores(forecast: Forecast, realised: pd.DataFrame) -> dict[str, np.ndarray]:
    """For the first ``len(realised)`` forecast bars (at most the horizon), per column (M, C): ``realised``,
    ``crps`` and ``in_50`` / ``in_80`` (1.0 inside the central interval, else 0.0)."""
    columns = list(forecast.columns)
    m = min(len(realised), forecast.samples.shape[1])
    paths = forecast.samples[:, :m].astype(np.float64)  # (S, M, C)
    y = np.column_stack([realised[c].to_numpy(dtype=np.float64)[:m] if c in realised.columns
                         else np.full(m, np.nan) for c in columns])
    out = {"realised": y, "crps": crps_samples(paths, y)}
    for level in LEVELS:
        lo, hi = central_interval(paths, level)
        out[f"in_{int(level * 100)}"] = ((y >= lo) & (y <= hi)).astype(np.float64)
    return out


def holdout_frame(forecast: Forecast, realised: pd.DataFrame) -> pd.DataFrame:
    """``forecast.to_frame()`` with the columns ``realised``, ``crps``, ``in_50`` and ``in_80`` (NaN where the
    horizon runs past the data)."""
    frame = forecast.to_frame()
    numbers = scores(forecast, realised)
    n_cols = len(forecast.columns)
    for name, values in numbers.items():
        full = np.full((forecast.samples.shape[1], n_cols), np.nan)
        full[:len(values)] = values
        frame[name] = full.reshape(-1)
    return frame


def summary(forecast: Forecast, realised: pd.DataFrame, last_close: float) -> dict[str, float]:
    """The close over the realised bars: mean CRPS, the same as a fraction of the last close before the
    cut-off, and the share of bars inside the 50% and 80% intervals."""
    numbers = scores(forecast, realised)
    j = list(forecast.columns).index("close")
    bars = len(numbers["crps"])
    if bars == 0:
        return {"bars": 0}
    crps = float(numbers["crps"][:, j].mean())
    return {"bars": bars, "crps_close": crps, "crps_close_rel": crps / last_close if last_close else float("nan"),
            "coverage_50": float(numbers["in_50"][:, j].mean()), "coverage_80": float(numbers["in_80"][:, j].mean())}
