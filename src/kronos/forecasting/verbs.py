"""The pandas verb both predictors share: a wide or long DataFrame in, one tidy forecast frame out.

:func:`forecast_frame_of` reads the frame into :class:`kronos.data.tables.Series` (no DataFrame is built
again on the way to the network), makes each series' future timestamps from its calendar and goes through
the door, :func:`kronos.forecasting.forecast.forecast_series`. NumPy and pandas only.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..data.features import check_count
from .forecast import Backend, forecast_frame
from .options import ForecastOptions

# forecast_df: the keywords that say how df is read (kronos.data.tables.ReadOptions)
READ_KEYWORDS = ("sort", "nan", "rename", "adjusted", "time_unit", "date_format", "dayfirst")


def forecast_frame_of(backend: Backend, df: pd.DataFrame, pred_len: int, id_column: str | None,
                      timestamp_column: str | None, freq: str | None, calendar: str | None,
                      keywords: dict[str, Any]) -> pd.DataFrame:
    """``forecast_df`` of a predictor: ``keywords`` are reading options and :class:`ForecastOptions` fields."""
    from ..data.tables import TableError, column_key, frame_to_series

    check_count("pred_len", pred_len)
    keywords = dict(keywords)
    reading = {k: keywords.pop(k) for k in READ_KEYWORDS if k in keywords}
    try:
        series = frame_to_series(df, "df", id_column=id_column, time_column=timestamp_column, **reading)
    except TableError as exc:  # name this method's argument, not the reader's
        options = [("timestamp_column" if n == "time_column" else n, v) for n, v in exc.options]
        raise TableError(exc.where, exc.problem, exc.fix, options) from None
    label = None
    if series[0].id_column is not None:
        label = str(next((c for c in df.columns if column_key(c) == series[0].id_column), series[0].id_column))
    return forecast_frame(backend, series, pred_len, ForecastOptions(**keywords), freq=freq, calendar=calendar,
                          id_column=label, label="source")
