"""Market data in: tables of bars from files, standard input, uploads or DataFrames, as :class:`Series`.

One reader for every part of the package (forecasting, training, evaluation, the service, charts).
It reads CSV (separator ``,`` ``;`` or tab, found from the header; decimal commas), Parquet, JSON
(records or columns) and JSON lines, from a path, ``-`` (standard input), bytes or a DataFrame, and
understands the exports people have:

* column names in any case, with surrounding spaces or MetaTrader's ``<ANGLE>`` brackets;
* Yahoo's ``Adj Close`` (used with ``adjusted=True``: close becomes the adjusted close and open,
  high, low are scaled by the same per-row factor);
* MetaTrader's separate ``<DATE>`` (``2024.01.02``) and ``<TIME>`` columns, and its tick volume
  when there is no real volume;
* epoch numbers in seconds, milliseconds, microseconds or nanoseconds (the unit from the magnitude,
  or ``time_unit``), and ``YYYYMMDD`` integers;
* timestamps with UTC offsets, also offsets that change with daylight saving: each bar keeps its
  local wall-clock time (a 09:30 open stays 09:30 across the change); only if that would make two bars
  share a time (a round-the-clock market over the autumn change) are the times converted to UTC;
* newest-first files (reversed, with a log line), rows out of order (``sort=True``), repeated rows
  (identical ones dropped; different bars at one time are an error naming the rows);
* many series in one long table, told apart by a symbol column (``id_column``; found by itself when
  named symbol, ticker, item_id or id).

* dates written day first or month first (``10.04.2015``, ``4/10/2015``): read day first when a
  first field is above 12, month first when a second one is, else in the one reading that puts the
  rows in time order; when the file cannot tell, it is refused (``date_format`` or ``dayfirst`` says);

Options have the same names everywhere (library keyword / command-line flag): ``time_column``,
``sort``, ``nan`` (drop, ffill, error), ``rename``, ``id_column``, ``adjusted``, ``time_unit``,
``date_format``, ``dayfirst``.
Bad input raises :class:`TableError`: one line naming the source, column and row, and the option
that fixes it, phrased for whoever asked (``time_column=`` in the library, ``--time-column`` on the
command line; see :func:`option_style`).

The parts live in their own modules: file formats in :mod:`kronos.data.formats`, column names in
:mod:`kronos.data.columns`, timestamps in :mod:`kronos.data.times`, errors in :mod:`kronos.data.errors`; their
public names are importable from here too.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .columns import ADJ_CLOSE_NAMES, TICK_VOLUME_NAMES, column_key, find_id_column, find_time_column, normalise_columns
from .errors import TableError, command_line_option, library_option, option_style, rows_text
from .features import FEATURE_COLUMNS, PRICE_COLUMNS, bar_features, time_features
from .formats import (
    DATA_SUFFIXES,
    FOLDER_SUFFIXES,
    STDIN,
    expand_paths,
    parse_table,
    read_table,
    source_name,
    table_stem,
    table_suffix,
)
from .times import TIME_UNITS, join_date_time, misread_error, parse_times

__all__ = [  # the reader's public names, wherever they are defined
    "DATA_SUFFIXES", "FOLDER_SUFFIXES", "NAN_POLICIES", "STDIN", "TIME_UNITS", "ReadOptions", "Series", "TableError",
    "column_key", "command_line_option", "expand_paths", "find_id_column", "find_time_column", "frame_to_series",
    "library_option", "load_series", "normalise_columns", "option_style", "parse_rename", "parse_table",
    "parse_times", "read_series", "read_table", "rows_text", "source_name", "table_stem", "table_suffix",
]

log = logging.getLogger("kronos.data.tables")

NAN_POLICIES = ("drop", "ffill", "error")


# -- options -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReadOptions:
    """How to read bars from a table (see the module docstring).

    time_column: the timestamp column (default: the first of timestamps, timestamp, date, datetime,
    time, ts; else a DatetimeIndex). sort: None sorts newest-first files ascending and refuses other
    disorder; True sorts any order; False refuses any disorder. nan: rows with missing values in the
    used columns are dropped, forward-filled (leading ones dropped) or an error. rename: file column ->
    our column (``{"Last": "close"}``). id_column: the symbol column of a long table (default: found).
    adjusted: use the adjusted close and scale open, high, low with it. time_unit: s, ms, us or ns for
    epoch numbers (default: from their magnitude). date_format: the strftime format of the timestamps
    (``%d.%m.%Y``; a time of day after the date is read too). dayfirst: True reads ``10.04.2015`` as
    10 April, False as October 4 (default None: from the file, see the module docstring).
    """

    time_column: str | None = None
    sort: bool | None = None
    nan: str = "error"
    rename: Mapping[str, str] | None = None
    id_column: str | None = None
    adjusted: bool = False
    time_unit: str | None = None
    date_format: str | None = None
    dayfirst: bool | None = None

    def __post_init__(self) -> None:
        if self.nan not in NAN_POLICIES:
            raise TableError(None, f"nan must be one of {', '.join(NAN_POLICIES)}, got {self.nan!r}")
        if self.time_unit is not None and self.time_unit not in TIME_UNITS:
            raise TableError(None, f"time_unit must be one of {', '.join(TIME_UNITS)}, got {self.time_unit!r}")
        if self.sort is not None and not isinstance(self.sort, bool):
            raise TableError(None, f"sort must be True, False or None, got {self.sort!r}")
        if not isinstance(self.adjusted, bool):
            raise TableError(None, f"adjusted must be True or False, got {self.adjusted!r}")
        if self.dayfirst is not None and not isinstance(self.dayfirst, bool):
            raise TableError(None, f"dayfirst must be True, False or None, got {self.dayfirst!r}")
        if self.date_format is not None and (not isinstance(self.date_format, str) or "%" not in self.date_format):
            raise TableError(None, f"date_format must be a strftime format such as '%d.%m.%Y', got "
                                   f"{self.date_format!r}")
        if self.date_format is not None and self.dayfirst is not None:
            raise TableError(None, "give date_format or dayfirst, not both (the format says where the day is)")
        object.__setattr__(self, "rename", parse_rename(self.rename))
        for name in ("time_column", "id_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise TableError(None, f"{name} must be a column name, got {value!r}")

    @classmethod
    def of(cls, options: ReadOptions | None = None, **keywords: Any) -> ReadOptions:
        if options is not None and keywords:
            raise TypeError("give either options or keywords, not both")
        if options is not None:
            return options
        unknown = sorted(set(keywords) - set(cls.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown table option(s) {', '.join(unknown)}; known: "
                            f"{', '.join(cls.__dataclass_fields__)}")
        return cls(**keywords)


def parse_rename(rename: Mapping[str, str] | Iterable[str | tuple[str, str]] | None) -> dict[str, str]:
    """``{"Last": "close"}``, ``["Last=close"]`` or ``[("Last", "close")]`` as a dict."""
    if not rename:
        return {}
    if isinstance(rename, Mapping):
        items = list(rename.items())
    elif isinstance(rename, str):
        items = [rename]
    else:
        items = list(rename)
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            if "=" not in item:
                raise TableError(None, f"rename expects OLD=NEW, got {item!r}")
            item = tuple(item.split("=", 1))
        old, new = (str(part).strip() for part in item)
        if not old or not new:
            raise TableError(None, f"rename expects OLD=NEW with both names, got {old!r}={new!r}")
        out[old] = new
    return out


# -- the Series ----------------------------------------------------------------------------------------

@dataclass
class Series:
    """One validated series of bars.

    ``bars`` (T, 6) float32 open, high, low, close, volume, amount (the rules of
    :func:`kronos.data.features.bar_features`: no volume -> volume and amount 0, no amount -> volume × mean
    price); ``timestamps`` a strictly increasing DatetimeIndex; ``stamps`` (T, 5) float32 time features
    (minute, hour, weekday, day, month). ``id_column`` is the symbol column of the long table the series
    came from (its ``name`` is the symbol), None for a table of one series; ``source`` says where it was
    read from, for messages.
    """

    name: str
    bars: np.ndarray
    timestamps: pd.DatetimeIndex
    stamps: np.ndarray
    id_column: str | None = None
    source: str | None = None

    @classmethod
    def from_arrays(cls, name: str, bars: np.ndarray, timestamps: pd.DatetimeIndex) -> Series:
        return cls(name, bars, timestamps, time_features(timestamps))

    def __len__(self) -> int:
        return len(self.bars)

    def slice(self, start: int | None, stop: int | None) -> Series:
        return Series(self.name, self.bars[start:stop], self.timestamps[start:stop], self.stamps[start:stop],
                      self.id_column, self.source)

    def frame(self) -> pd.DataFrame:
        """The bars as a DataFrame indexed by ``timestamp``, columns open ... amount."""
        return pd.DataFrame(self.bars, index=self.timestamps.rename("timestamp"), columns=list(FEATURE_COLUMNS))

    def __repr__(self) -> str:
        span = f"{self.timestamps[0]} to {self.timestamps[-1]}" if len(self) else "empty"
        return f"Series({self.name!r}, {len(self)} bars, {span})"


def check_unique_names(series: Sequence[Series]) -> None:
    """Raise ValueError naming every series name that appears more than once (results are keyed by name)."""
    counts = Counter(s.name for s in series)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise ValueError(f"series names must be unique; repeated: {', '.join(repeated)}")


# -- frames to series ------------------------------------------------------------------------------------

def _numeric_columns(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Feature columns (and the adjusted close and tick volume) as floats; TableError naming a non-number."""
    frame = frame.copy()
    for column in [c for c in (*FEATURE_COLUMNS, "tickvol", "adj close") if c in frame.columns]:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            text = series.astype("string").str.strip().replace("", pd.NA)
            converted = pd.to_numeric(text, errors="coerce")
            if converted.isna().sum() > text.isna().sum():  # decimal commas inside a comma-separated file?
                converted = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
            bad = np.flatnonzero(converted.isna().to_numpy() & text.notna().to_numpy())
            if len(bad):
                rows = frame.index[bad]
                raise TableError(where, f"column '{column}' row {rows[0]}: {series.loc[rows[0]]!r} is not a number"
                                        + (f" ({len(bad)} such rows)" if len(bad) > 1 else ""))
            frame[column] = converted.astype("float64")
        else:
            frame[column] = series.astype("float64")
    return frame


def _adjust(frame: pd.DataFrame, where: str, adjusted: bool, logger: logging.Logger) -> pd.DataFrame:
    adj = next((c for c in ADJ_CLOSE_NAMES if c in frame.columns), None)
    if adj is not None and adj != "adj close":
        frame = frame.rename(columns={adj: "adj close"})
    if not adjusted:
        return frame
    if adj is None:
        raise TableError(where, "adjusted prices need an adjusted close column (Adj Close); there is none",
                         "leave out {0}", [("adjusted", True)])
    frame = _numeric_columns(frame, where)  # the adjusted close, now under its usual name
    factor = frame["adj close"] / frame["close"]
    frame = frame.copy()
    for column in ("open", "high", "low"):
        frame[column] = frame[column] * factor
    frame["close"] = frame["adj close"]
    logger.info("%s: prices adjusted with the adjusted close", where)
    return frame


def _volume(frame: pd.DataFrame, where: str, logger: logging.Logger) -> pd.DataFrame:
    tick = next((c for c in TICK_VOLUME_NAMES if c in frame.columns), None)
    if tick is None:
        return frame
    frame = frame.rename(columns={tick: "tickvol"})
    real = frame["volume"] if "volume" in frame.columns else None
    if real is None or bool((pd.to_numeric(real, errors="coerce").fillna(0) == 0).all()):
        frame = frame.drop(columns=["volume"], errors="ignore").rename(columns={"tickvol": "volume"})
        logger.info("%s: no real volume; using the tick volume", where)
    return frame


def _order(frame: pd.DataFrame, times: pd.Series, where: str, column: str, sort: bool | None,
           logger: logging.Logger) -> tuple[pd.DataFrame, pd.Series]:
    """Rows in ascending time: as they are, reversed (newest first), or sorted (``sort=True``)."""
    ns = times.to_numpy().astype("datetime64[ns]").view(np.int64)
    steps = np.diff(ns)
    if len(steps) == 0 or (steps >= 0).all():
        return frame, times
    if sort is None and (steps <= 0).all():
        logger.info("%s: rows are newest first; sorted oldest first", where)
        return frame.iloc[::-1], times.iloc[::-1]
    if sort:
        order = np.argsort(ns, kind="stable")
        logger.info("%s: rows sorted by time (sort)", where)
        return frame.iloc[order], times.iloc[order]
    i = int(np.flatnonzero(steps < 0)[0])
    rows = frame.index
    count = int((steps < 0).sum())
    raise TableError(where, f"column '{column}' is not in time order: row {rows[i + 1]} ({times.iloc[i + 1]}) comes "
                            f"after row {rows[i]} ({times.iloc[i]})" + (f"; {count} such rows" if count > 1 else ""),
                     "sort the rows with {0}", [("sort", True)])


def _dedupe(frame: pd.DataFrame, times: pd.Series, where: str, logger: logging.Logger) -> tuple[pd.DataFrame,
                                                                                              pd.Series]:
    """Identical rows at one time -> one; different bars at one time -> TableError naming the rows."""
    repeated = times.duplicated(keep=False).to_numpy()
    if not repeated.any():
        return frame, times
    used = [c for c in FEATURE_COLUMNS if c in frame.columns]
    values = frame[used].reset_index(drop=True).assign(_t=times.to_numpy())
    identical = values.duplicated(keep="first").to_numpy()
    conflicting = values.loc[repeated & ~identical, "_t"].duplicated(keep=False).to_numpy()
    if conflicting.any():
        stamp = values.loc[repeated & ~identical, "_t"].iloc[np.flatnonzero(conflicting)[0]]
        rows = frame.index[np.flatnonzero(times.to_numpy() == stamp.to_datetime64())]
        raise TableError(where, f"rows {rows_text(rows)} have the same time {stamp} but different values")
    logger.info("%s: dropped %d repeated row(s)", where, int(identical.sum()))
    keep = ~identical
    return frame.iloc[keep], times.iloc[keep]


def _missing_values(frame: pd.DataFrame, where: str, nan: str, logger: logging.Logger) -> pd.DataFrame:
    """Apply the ``nan`` policy to rows with missing values in the used columns (an all-empty volume or
    amount column stays empty: it counts as absent)."""
    used = [c for c in FEATURE_COLUMNS if c in frame.columns and not frame[c].isna().all()]
    values = frame[used]
    bad = values.isna().any(axis=1) | ~np.isfinite(values.to_numpy(dtype=np.float64)).all(axis=1)
    count = int(bad.sum())
    if not count:
        return frame
    if nan == "error":
        column = next(c for c in used if (~np.isfinite(frame[c].to_numpy(dtype=np.float64))).any())
        rows = frame.index[~np.isfinite(frame[column].to_numpy(dtype=np.float64))]
        raise TableError(where, f"column '{column}' has missing values at row(s) {rows_text(rows)}",
                         "drop or fill them with {0} or {1}", [("nan", "drop"), ("nan", "ffill")])
    frame = frame.copy()
    frame[used] = frame[used].where(np.isfinite(frame[used].to_numpy(dtype=np.float64)))
    if nan == "ffill":
        frame[used] = frame[used].ffill()
        still = frame[used].isna().any(axis=1)  # leading gaps have nothing to fill from
        frame = frame.loc[~still]
        logger.info("%s: forward-filled %d row(s) with missing values, dropped %d leading one(s)",
                    where, count - int(still.sum()), int(still.sum()))
    else:
        frame = frame.loc[~bad]
        logger.info("%s: dropped %d row(s) with missing values", where, count)
    return frame


def _one_series(frame: pd.DataFrame, name: str, where: str, opts: ReadOptions,
                logger: logging.Logger) -> Series:
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        columns = ", ".join(map(str, frame.columns)) or "none"
        raise TableError(where, f"missing price column(s) {', '.join(missing)}; columns are {columns}",
                         "map a column with {0}", [("rename", f"OLD={missing[0]}")])
    column = find_time_column(frame, where, opts.time_column)
    raw = join_date_time(frame, column, opts.time_column is not None)
    times = parse_times(raw, where, column, opts.time_unit, logger, opts.date_format, opts.dayfirst)
    bad = np.flatnonzero(times.isna().to_numpy())
    if len(bad):
        row = frame.index[bad[0]]
        more = f" ({len(bad)} such rows)" if len(bad) > 1 else ""
        raise TableError(where, f"column '{column}' row {row}: {raw.loc[row]!r} is not a timestamp{more}",
                         "name the timestamp column with {0}" if opts.time_column is None else None,
                         [("time_column", None)])
    frame = _volume(frame, where, logger)
    frame = _numeric_columns(frame, where)
    frame = _adjust(frame, where, opts.adjusted, logger)
    try:
        frame, times = _order(frame, times, where, column, opts.sort, logger)
    except TableError as exc:
        raise misread_error(raw, where, column, opts.dayfirst) or exc from None
    frame, times = _dedupe(frame, times, where, logger)
    frame = _missing_values(frame, where, opts.nan, logger)
    times = times.loc[frame.index]
    if len(frame) == 0:
        raise TableError(where, "has no rows with bars")
    index = pd.DatetimeIndex(times.to_numpy(), name="timestamp").as_unit("ns")
    bars = bar_features(frame[[c for c in FEATURE_COLUMNS if c in frame.columns]].reset_index(drop=True), where)
    series = Series.from_arrays(name, bars, index)
    series.source = where
    return series


def frame_to_series(frame: pd.DataFrame, name: str = "df", options: ReadOptions | None = None,
                    logger: logging.Logger | None = None, series_name: str | None = None,
                    **keywords: Any) -> list[Series]:
    """Validated :class:`Series` from one table: one, or one per symbol of a long table (named by the symbol).

    ``name`` labels the table in messages and names its series (``series_name`` instead, if given).
    Keywords are the :class:`ReadOptions` (``time_column``, ``sort``, ``nan``, ``rename``, ``id_column``,
    ``adjusted``, ``time_unit``). Raises :class:`TableError` naming ``name``, the column and the row.
    """
    opts = ReadOptions.of(options, **keywords)
    logger = logger or log
    frame = normalise_columns(frame, name, opts.rename).reset_index(drop=True)
    if frame.empty:
        raise TableError(name, "has no data rows (a header only)")
    id_column = find_id_column(frame, name, opts.id_column)
    if id_column is None:
        return [_one_series(frame, series_name or name, name, opts, logger)]
    ids = frame[id_column]
    if ids.isna().any():
        row = frame.index[np.flatnonzero(ids.isna().to_numpy())[0]]
        raise TableError(name, f"column '{id_column}' row {row} has no symbol")
    series = []
    for value, group in frame.groupby(ids.astype(str), sort=False):
        item = _one_series(group.drop(columns=[id_column]), str(value), f"{name} ({id_column} {value})", opts, logger)
        item.id_column = id_column
        series.append(item)
    return series


def read_series(source: str | os.PathLike | bytes | pd.DataFrame, name: str | None = None,
                options: ReadOptions | None = None, logger: logging.Logger | None = None,
                **keywords: Any) -> list[Series]:
    """:class:`Series` from a file path, ``-`` (standard input), bytes or a DataFrame (see :func:`frame_to_series`).

    ``name`` labels the source in messages. A file's series is named by the file's stem, standard
    input's ``stdin``; a long table's series by their symbols.
    """
    opts = ReadOptions.of(options, **keywords)
    if isinstance(source, pd.DataFrame):
        return frame_to_series(source, name or "df", opts, logger)
    label = name or source_name(source)
    frame = read_table(source, label)
    if isinstance(source, (str, os.PathLike)):
        single = "stdin" if str(source) == STDIN else table_stem(source)
    else:
        single = label
    return frame_to_series(frame, label, opts, logger, series_name=single)


def load_series(paths: Sequence[str | os.PathLike] | str | os.PathLike, options: ReadOptions | None = None,
                skip_bad: bool = False, logger: logging.Logger | None = None, option: str = "data",
                **keywords: Any) -> list[Series]:
    """Every series in the files and folders ``paths`` (see :func:`read_series`); names must be unique.

    With ``skip_bad`` a file that cannot be read is skipped with a warning naming it and the reason
    (and ``ValueError`` is raised when no file is usable); otherwise the first bad file raises.
    """
    opts = ReadOptions.of(options, **keywords)
    logger = logger or log
    files = expand_paths(paths, option)
    out: list[Series] = []
    owner: dict[str, Path] = {}
    for path in files:
        try:
            found = read_series(path, str(path), opts, logger)
        except (TableError, ValueError, OSError) as exc:
            if not skip_bad:
                raise
            logger.warning("skipping %s", exc if isinstance(exc, TableError) and exc.where else f"{path}: {exc}")
            continue
        for s in found:
            if s.name in owner:
                raise TableError(str(path), f"series {s.name!r} is also in {owner[s.name]}; series names must be "
                                            "unique")
            owner[s.name] = path
        out += found
    if not out:
        raise TableError(None, f"none of the {len(files)} file(s) is usable (see the warnings above)")
    return out
