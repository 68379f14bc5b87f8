"""Bar features for the networks: column checks, OHLCV+amount features, time features, per-window
normalisation.

Reading data files is :mod:`kronos.data.tables`; this module turns a frame of bars into the arrays the networks
see (they only see tensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..bars import FEATURE_COLUMNS, NORM_EPS, PRICE_COLUMNS
from .errors import rows_text

TIME_COLUMNS = ("minute", "hour", "weekday", "day", "month")
TIME_COLUMN_NAMES = ("timestamps", "timestamp", "date", "datetime", "time", "ts")  # looked for, in this order


def check_count(name: str, value: Any) -> int:
    """``value`` as an int if it is an integer >= 1 (bools refused), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _is_empty(series: pd.Series) -> bool:
    return bool(series.isna().all())


def lower_columns(df: pd.DataFrame, name: str = "df") -> pd.DataFrame:
    """``df`` with column names stripped and lower-cased (the same frame when they already are);
    ``ValueError`` when two names become one."""
    keys = [str(c).strip().lower() for c in df.columns]
    if keys == list(df.columns):
        return df
    if len(set(keys)) < len(keys):
        clash = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"{name} has column names that differ only in case or spaces: {', '.join(clash)}")
    out = df.copy(deep=False)
    out.columns = keys
    return out


FLOAT32_MAX = float(np.finfo(np.float32).max)


def bar_features(df: pd.DataFrame, name: str = "df") -> np.ndarray:
    """Validated (T, 6) float32 array of open, high, low, close, volume, amount.

    Column names are matched ignoring case and surrounding spaces. open/high/low/close are required.
    Without volume (or an all-empty one), volume and amount are 0;
    with volume but no amount (or an all-empty one), amount = volume × mean(open, high, low, close).
    Raises ``ValueError`` naming the column and rows of any non-numeric, NaN or infinite value.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    df = lower_columns(df, name)
    missing = [c for c in PRICE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{name} is missing required column(s) {', '.join(missing)}; "
                         f"it has {', '.join(map(str, df.columns)) or 'no columns'}")
    optional_empty = {c for c in ("volume", "amount") if c in df.columns and _is_empty(df[c])}
    present = [c for c in FEATURE_COLUMNS if c in df.columns and c not in optional_empty]
    for column in present:
        if not pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_bool_dtype(df[column]):
            converted = pd.to_numeric(df[column], errors="coerce")
            bad = np.flatnonzero(converted.isna().to_numpy() & df[column].notna().to_numpy())
            example = df[column].iloc[bad[0]] if len(bad) else None
            raise ValueError(f"{name} column '{column}' must be numeric; dtype {df[column].dtype}, "
                             f"non-numeric value {example!r} at row(s) {rows_text(bad)}")
    # Column-major like a DataFrame's values: float32 column sums (the normalising statistics) depend on it.
    array = np.zeros((len(df), len(FEATURE_COLUMNS)), dtype=np.float64, order="F")
    for j, column in enumerate(FEATURE_COLUMNS):
        if column in present:
            array[:, j] = df[column].to_numpy(dtype=np.float64)
    for j, column in enumerate(FEATURE_COLUMNS):  # the user's own columns first: a message names what they sent
        huge = np.flatnonzero(np.isfinite(array[:, j]) & (np.abs(array[:, j]) > FLOAT32_MAX))
        if column in present and len(huge):
            raise ValueError(f"{name} column '{column}' has value {array[huge[0], j]:g} at row(s) {rows_text(huge)}; "
                             f"bars are float32, at most {FLOAT32_MAX:.3g}")
    if "volume" in present and "amount" not in present:
        # Row mean of the four prices, summed left to right like pandas' DataFrame.mean(axis=1).
        prices = array[:, :4]
        with np.errstate(over="ignore", invalid="ignore"):
            array[:, 5] = array[:, 4] * ((((prices[:, 0] + prices[:, 1]) + prices[:, 2]) + prices[:, 3]) / 4)
        derived = array[:, 5]
        huge = np.flatnonzero(np.isfinite(array[:, :5]).all(axis=1)
                              & ~(np.abs(np.nan_to_num(derived, nan=0.0)) <= FLOAT32_MAX))
        if len(huge):
            i = huge[0]
            raise ValueError(f"{name} has no amount column, and the one derived as volume × mean price overflows "
                             f"float32 at row(s) {rows_text(huge)} (volume {array[i, 4]:g}, close {array[i, 3]:g})")
    for j, column in enumerate(FEATURE_COLUMNS):
        bad = np.flatnonzero(~np.isfinite(array[:, j]))
        if len(bad):
            kind = "NaN" if np.isnan(array[bad[0], j]) else "inf"
            raise ValueError(f"{name} column '{column}' has NaN or inf values (first: {kind}) at row(s) "
                             f"{rows_text(bad)}; fill or drop them first")
    return array.astype(np.float32)


def as_timestamps(values: Any, name: str, expected_len: int | None = None) -> pd.DatetimeIndex:
    """Coerce timestamps (Series, DatetimeIndex, list, array) to a strictly increasing DatetimeIndex."""
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"{name} must be a sequence of timestamps, got {type(values).__name__}")
    index_name = getattr(values, "name", None)
    try:
        index = pd.DatetimeIndex(pd.to_datetime(pd.Series(values) if not isinstance(values, pd.Index) else values),
                                 name=index_name)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be read as timestamps: {exc}") from exc
    if expected_len is not None and len(index) != expected_len:
        raise ValueError(f"{name} has {len(index)} timestamps but {expected_len} were expected")
    if index.hasnans:
        raise ValueError(f"{name} has missing timestamps at position(s) {rows_text(np.flatnonzero(index.isna()))}")
    steps = np.flatnonzero(np.diff(index.asi8) <= 0)
    if len(steps):
        i = steps[0]
        more = f"; {len(steps)} such positions" if len(steps) > 1 else ""
        raise ValueError(f"{name} must be strictly increasing: position {i + 1} ({index[i + 1]}) does not come "
                         f"after position {i} ({index[i]}){more}")
    return index


def time_features(index: pd.DatetimeIndex) -> np.ndarray:
    """(T, 5) float32 of minute, hour, weekday (Monday = 0), day of month, month."""
    return np.stack([index.minute, index.hour, index.day_of_week, index.day, index.month], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Normalizer:
    """Per-window z-score with clipping; ``inverse`` undoes the affine part (not the clip).

    ``mean`` and ``std`` are (6,) float32 statistics of the history (population std); values are
    ``(x - mean) / (std + 1e-5)`` clipped to ±clip, all in float32 like the original.
    """

    mean: np.ndarray
    std: np.ndarray
    clip: float

    @classmethod
    def fit(cls, x: np.ndarray, clip: float) -> Normalizer:
        x = np.asarray(x, dtype=np.float32)
        return cls(np.mean(x, axis=0), np.std(x, axis=0), clip)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = (np.asarray(x, dtype=np.float32) - self.mean) / (self.std + np.float32(NORM_EPS))
        return np.clip(x, -self.clip, self.clip)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float32) * (self.std + np.float32(NORM_EPS)) + self.mean
