"""What the forecasting door takes in and gives back: validated series as float arrays, future timestamps,
and the tidy frame of many forecasts.

:class:`SeriesInput` is one series to forecast: its (T, 6) float32 bars, time features and the timestamps of
the bars to forecast. It is made from a DataFrame (:func:`from_frame`, the predictors' verbs), from a
:class:`kronos.data.tables.Series` (:func:`from_series`: no DataFrame is built) or from arrays
(:func:`from_arrays`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..bars import FEATURE_COLUMNS
from ..data.errors import rows_text
from ..data.features import as_timestamps, bar_features, check_count, time_features
from .result import Forecast


@dataclass
class SeriesInput:
    """One series to forecast.

    ``bars`` (T, 6) float32 open ... amount in input units; ``x_stamp`` (T, 5) and ``y_stamp`` (P, 5) time
    features of the history and of the bars to forecast; ``x_index`` (T,) and ``y_index`` (P,) their
    timestamps.
    """

    bars: np.ndarray
    x_stamp: np.ndarray
    y_stamp: np.ndarray
    y_index: pd.DatetimeIndex
    x_index: pd.DatetimeIndex

    @property
    def pred_len(self) -> int:
        return len(self.y_stamp)

    def tail(self, bars: int) -> SeriesInput:
        """The same forecast from only the last ``bars`` history bars."""
        return SeriesInput(self.bars[-bars:], self.x_stamp[-bars:], self.y_stamp, self.y_index, self.x_index[-bars:])

    def past_origin(self, end: int, lookback: int) -> SeriesInput:
        """A forecast of history bars ``[end, end + pred_len)`` from at most ``lookback`` bars before them."""
        start = max(0, end - lookback)
        horizon = self.x_stamp[end:end + self.pred_len]
        return SeriesInput(self.bars[start:end], self.x_stamp[start:end], horizon,
                           self.x_index[end:end + self.pred_len], self.x_index[start:end])


def _with_future(bars: np.ndarray, x_index: pd.DatetimeIndex, x_stamp: np.ndarray | None, y_timestamp: Any,
                 pred_len: int) -> SeriesInput:
    if len(bars) < 2:
        raise ValueError(f"the history has {len(bars)} row(s); at least 2 are needed")
    if y_timestamp is None or len(y_timestamp) == 0:
        raise ValueError(f"y_timestamp is empty; give the {pred_len} timestamp(s) of the bars to forecast")
    y_index = as_timestamps(y_timestamp, "y_timestamp", expected_len=pred_len)
    if y_index[0] <= x_index[-1]:
        raise ValueError(f"y_timestamp must start after the last x_timestamp ({x_index[-1]}), got {y_index[0]}")
    stamps = time_features(x_index) if x_stamp is None else x_stamp
    return SeriesInput(bars, stamps, time_features(y_index), y_index, x_index)


def from_frame(df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int, name: str = "df") -> SeriesInput:
    """A series from a DataFrame of bars (checked by :func:`kronos.data.features.bar_features`), its
    timestamps and the ``pred_len`` timestamps to forecast."""
    bars = bar_features(df, name)
    if len(bars) < 2:
        raise ValueError(f"{name} has {len(bars)} history row(s); at least 2 are needed")
    x_index = as_timestamps(x_timestamp, "x_timestamp", expected_len=len(bars))
    return _with_future(bars, x_index, None, y_timestamp, pred_len)


def _float32_bars(bars: Any, name: str) -> np.ndarray:
    """(T, 6) finite float32 bars, column-major like :func:`~kronos.data.features.bar_features` (the
    normalising statistics' float32 sums depend on the layout)."""
    array = np.asarray(bars)
    if array.ndim != 2 or array.shape[1] != len(FEATURE_COLUMNS):
        raise ValueError(f"{name} must have shape (T, {len(FEATURE_COLUMNS)}) ({', '.join(FEATURE_COLUMNS)}), "
                         f"got {array.shape}")
    array = np.asfortranarray(array, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad):
        raise ValueError(f"{name} has NaN or inf values at row(s) {rows_text(bad)}; fill or drop them first")
    return array


def from_arrays(bars: Any, timestamps: Any, future: Any, name: str = "bars") -> SeriesInput:
    """A series from (T, 6) bars (open, high, low, close, volume, amount), their T timestamps and the
    timestamps of the bars to forecast."""
    array = _float32_bars(bars, name)
    x_index = as_timestamps(timestamps, "x_timestamp", expected_len=len(array))
    return _with_future(array, x_index, None, future, len(future) if future is not None else 0)


def from_series(series: Any, future: Any) -> SeriesInput:
    """A series from a :class:`kronos.data.tables.Series` (already checked when read) and the timestamps of
    the bars to forecast; its bars and time features are used as they are."""
    bars = _float32_bars(series.bars, series.name)
    stamps = series.stamps if len(series.stamps) == len(bars) else None
    return _with_future(bars, series.timestamps, stamps, future, len(future) if future is not None else 0)


def from_frames(df_list: Sequence[pd.DataFrame], x_timestamp_list: Sequence[Any], y_timestamp_list: Sequence[Any],
                pred_len: int | Sequence[int]) -> list[SeriesInput]:
    """The series of the predictors' ``forecast_batch``/``predict_batch`` arguments, checked."""
    n = len(df_list)
    if n == 0:
        raise ValueError("df_list is empty")
    if len(x_timestamp_list) != n or len(y_timestamp_list) != n:
        raise ValueError(f"df_list has {n} series but x_timestamp_list has {len(x_timestamp_list)} and "
                         f"y_timestamp_list {len(y_timestamp_list)}")
    pred_lens = list(pred_len) if isinstance(pred_len, Sequence) else [pred_len] * n
    if len(pred_lens) != n:
        raise ValueError(f"pred_len has {len(pred_lens)} entries for {n} series")
    pred_lens = [check_count("pred_len", p) for p in pred_lens]
    return [from_frame(df, xt, yt, p, name=f"df_list[{i}]" if n > 1 else "df")
            for i, (df, xt, yt, p) in enumerate(zip(df_list, x_timestamp_list, y_timestamp_list, pred_lens))]


def future_of(series: Sequence[Any], pred_len: int, freq: str | None = None, calendar: str | None = None,
              label: str = "name") -> list[tuple[pd.DatetimeIndex, str]]:
    """Per :class:`~kronos.data.tables.Series`, its ``pred_len`` future timestamps and the rule that made them
    (:func:`kronos.data.calendar.future_timestamps`); a ``ValueError`` starts with the series' ``label``
    attribute (``name`` or ``source``)."""
    from ..data.calendar import future_timestamps

    out = []
    for s in series:
        try:
            out.append(future_timestamps(s.timestamps, pred_len, freq, calendar))
        except ValueError as exc:
            raise ValueError(f"{getattr(s, label)}: {exc}") from None
    return out


def tidy_frame(forecasts: Sequence[Forecast], names: Sequence[str] | None = None, id_column: str | None = None,
               frames: Sequence[pd.DataFrame] | None = None, float32: bool = False) -> pd.DataFrame:
    """One tidy frame of many forecasts: each :meth:`Forecast.to_frame` (or the given ``frames``), with the
    ``id_column`` first holding each series' name when there is one, concatenated; with ``float32`` the
    numbers after ``timestamp`` and ``column`` are float32."""
    parts = [f.to_frame() for f in forecasts] if frames is None else list(frames)
    if id_column is not None:
        parts = [frame.assign(**{id_column: name}) for frame, name in zip(parts, names)]
        parts = [frame[[id_column, *frame.columns[:-1]]] for frame in parts]
    frame = parts[0] if len(parts) == 1 and id_column is None and not float32 else pd.concat(parts, ignore_index=True)
    if float32:
        numeric = frame.columns[2 + (id_column is not None):]
        frame[numeric] = frame[numeric].astype("float32")
    return frame
