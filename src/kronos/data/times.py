"""Timestamps from what tables hold: datetimes, ISO 8601 text with or without UTC offsets, dates written day
first or month first, MetaTrader's dotted dates and separate time column, ``YYYYMMDD`` integers and epoch
numbers in any unit (see :mod:`kronos.data.tables` for the rules).
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
import pandas as pd

from .errors import TableError, first_line

log = logging.getLogger("kronos.data.times")

TIME_UNITS = ("s", "ms", "us", "ns")
EPOCH_FLOORS = (("ns", 1e17), ("us", 1e14), ("ms", 1e11), ("s", 1e8))
EARLIEST = pd.Timestamp("1971-01-01")

_OFFSET = re.compile(r"^(.*\d)\s*(Z|[+-]\d{2}:?\d{2}|UTC|GMT)$", re.IGNORECASE)
_DOTTED_DATE = re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})")
_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")


def _parse_strings(values: pd.Series) -> pd.Series:
    """Datetimes (naive) from strings; unreadable ones NaT. Tries ISO 8601, then one inferred format, then each."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kwargs in ({"format": "ISO8601"}, {}, {"format": "mixed"}):
            try:
                parsed = pd.to_datetime(values, errors="coerce", **kwargs)
            except (ValueError, TypeError, OverflowError):
                continue
            if getattr(parsed.dt, "tz", None) is not None:
                parsed = parsed.dt.tz_localize(None)
            if parsed.notna().sum() == values.notna().sum():
                return parsed
        return parsed


def _epoch_unit(numbers: np.ndarray, where: str, column: str, time_unit: str | None) -> str:
    if time_unit is not None:
        return time_unit
    finite = np.abs(numbers[np.isfinite(numbers)])
    typical = float(np.median(finite)) if len(finite) else 0.0
    for unit, floor in EPOCH_FLOORS:
        if typical >= floor:
            return unit
    raise TableError(where, f"column '{column}' holds numbers such as {typical:g}, which are not epoch seconds, "
                            "milliseconds, microseconds or nanoseconds of a date after 1973", "give the unit with {0}",
                     [("time_unit", None)])


def _iso_times(values: pd.Series) -> pd.Series | None:
    """The common case, quickly: every value an ISO 8601 time with one UTC offset or none (wall-clock kept)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(values, format="ISO8601")
        except (ValueError, TypeError, OverflowError):
            return None
    if not pd.api.types.is_datetime64_any_dtype(parsed) or parsed.isna().any():
        return None
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


_TWO_FIELD_DATE = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})((?:[ T].*)?)$")
_WITH_TIME = ("", " %H:%M:%S", " %H:%M", "T%H:%M:%S", "T%H:%M", " %H:%M:%S.%f", "T%H:%M:%S.%f")


def _two_field_parts(text: pd.Series) -> pd.DataFrame | None:
    """Day, month (in either order), year and the rest of dates written ``10.04.2015`` or ``4/10/2015 09:30``:
    columns first, second, year (four digits) and rest, for the present values; None unless every one is so."""
    present = text.dropna()
    if not len(present):
        return None
    parts = present.str.extract(_TWO_FIELD_DATE)
    if parts[0].isna().any():
        return None
    year = parts[3].astype(int)
    short = parts[3].str.len() == 2
    year = year.where(~short, np.where(year < 69, 2000 + year, 1900 + year))  # strptime's %y rule
    return pd.DataFrame({"first": parts[0].astype(int), "second": parts[2].astype(int), "year": year,
                         "rest": parts[4].fillna("")}, index=present.index)


def _two_field_iso(parts: pd.DataFrame, dayfirst: bool, index: pd.Index) -> pd.Series:
    """The dates of :func:`_two_field_parts` as ISO text, read day first or month first (missing stay missing)."""
    day, month = (parts["first"], parts["second"]) if dayfirst else (parts["second"], parts["first"])
    iso = (parts["year"].map("{:04d}".format) + "-" + month.map("{:02d}".format) + "-" + day.map("{:02d}".format)
           + parts["rest"])
    return pd.Series(iso, index=parts.index, dtype="string").reindex(index)


def _in_order(parsed: pd.Series) -> bool:
    """Ascending or descending (a newest-first file) throughout, ignoring unreadable values."""
    ns = parsed.dropna().to_numpy().astype("datetime64[ns]").view(np.int64)
    steps = np.diff(ns)
    return bool((steps >= 0).all() or (steps <= 0).all())


def _dayfirst_reading(text: pd.Series, where: str, column: str, dayfirst: bool | None,
                      logger: logging.Logger) -> pd.Series:
    """``text`` with dates written day/month/year or month/day/year rewritten as ISO, in the reading the file
    (or ``dayfirst``) says; other text as it is. TableError when the file cannot tell."""
    parts = _two_field_parts(text)
    if parts is None:
        return text
    over_first, over_second = parts["first"] > 12, parts["second"] > 12
    if dayfirst is not None:
        wrong = over_second if dayfirst else over_first
        if wrong.any():
            row = wrong.index[np.flatnonzero(wrong.to_numpy())[0]]
            reading, other = ("day first", ("dayfirst", False)) if dayfirst else ("month first", ("dayfirst", True))
            raise TableError(where, f"column '{column}' row {row}: {text.loc[row]!r} is not a date read {reading} "
                                    "(no month above 12)", "read it the other way with {0}", [other])
        return _two_field_iso(parts, dayfirst, text.index)
    if over_first.any() and over_second.any():
        a = over_first.index[np.flatnonzero(over_first.to_numpy())[0]]
        b = over_second.index[np.flatnonzero(over_second.to_numpy())[0]]
        raise TableError(where, f"column '{column}' mixes day-first dates (row {a}: {text.loc[a]!r}) and month-first "
                                f"dates (row {b}: {text.loc[b]!r})", "give the format with {0}",
                         [("date_format", "%d.%m.%Y")])
    if over_first.any() or over_second.any():
        chosen = bool(over_first.any())
        flags = over_first if chosen else over_second
        row = flags.index[np.flatnonzero(flags.to_numpy())[0]]
        logger.info("%s: column '%s' read %s (row %s: %r)", where, column, "day first" if chosen else "month first",
                    row, text.loc[row])
        return _two_field_iso(parts, chosen, text.index)
    if (parts["first"] == parts["second"]).all():
        return _two_field_iso(parts, True, text.index)
    readings = {first: _two_field_iso(parts, first, text.index) for first in (True, False)}
    ordered = [first for first, iso in readings.items() if _in_order(_parse_strings(iso))]
    if len(ordered) == 1:
        logger.info("%s: column '%s' read %s: only that reading puts the rows in time order", where, column,
                    "day first" if ordered[0] else "month first")
        return readings[ordered[0]]
    row = parts.index[np.flatnonzero((parts["first"] != parts["second"]).to_numpy())[0]]
    why = "both readings are in time order" if ordered else "neither reading is in time order"
    raise TableError(where, f"column '{column}' has dates such as {text.loc[row]!r} that read day first or month "
                            f"first ({why}, no field is above 12)", "say which with {0}, {1} or {2}",
                     [("dayfirst", True), ("dayfirst", False), ("date_format", "%d.%m.%Y")])


def _with_format(text: pd.Series, where: str, column: str, date_format: str) -> pd.Series:
    """Datetimes from text in ``date_format`` (a time of day after the date is read too); TableError naming a
    value that does not match."""
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    todo = text.notna()
    for suffix in _WITH_TIME:
        if not todo.any():
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                got = pd.to_datetime(text[todo], format=date_format + suffix, errors="coerce", utc=True)
            except (ValueError, TypeError) as exc:
                raise TableError(where, f"date_format {date_format!r} is not a strftime format: {first_line(exc)}",
                                 "check {0}", [("date_format", None)]) from None
        got = got.dt.tz_localize(None).astype("datetime64[ns]")
        parsed[got.index] = parsed[got.index].fillna(got)
        todo = text.notna() & parsed.isna()
    if todo.any():
        row = text.index[np.flatnonzero(todo.to_numpy())[0]]
        raise TableError(where, f"column '{column}' row {row}: {text.loc[row]!r} does not match the date format "
                                f"{date_format!r}", "check {0}", [("date_format", None)])
    return parsed


def parse_times(values: pd.Series, where: str, column: str, time_unit: str | None = None,
                logger: logging.Logger | None = None, date_format: str | None = None,
                dayfirst: bool | None = None) -> pd.Series:
    """Naive datetime64[ns] from a column of datetimes, strings or epoch numbers (NaT where unreadable).

    ``date_format`` (strftime) reads text (or ``YYYYMMDD``-like integers) in that format; ``dayfirst`` says how
    ``10.04.2015`` reads (default: from the file; TableError when it cannot tell). A time outside the years
    timestamps hold (1677 to 2262) is a TableError naming the row."""
    try:
        return _parse_times(values, where, column, time_unit, logger or log, date_format, dayfirst)
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        raise _out_of_bounds(values, where, column, time_unit) from None


def _out_of_bounds(values: pd.Series, where: str, column: str, time_unit: str | None) -> TableError:
    """The error for a column holding a time beyond what datetime64[ns] holds, naming the first such row."""
    span = f"{pd.Timestamp.min.year + 1} to {pd.Timestamp.max.year - 1}"
    if pd.api.types.is_numeric_dtype(values) and time_unit is not None:
        numbers = values.to_numpy(dtype=np.float64)
        seconds = numbers / {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[time_unit]
        bad = np.flatnonzero(np.abs(np.nan_to_num(seconds)) > pd.Timestamp.max.timestamp())
        row = values.index[bad[0]] if len(bad) else values.index[0]
        typical = float(np.median(np.abs(numbers[np.isfinite(numbers)])))
        sized = next((unit for unit, floor in EPOCH_FLOORS if typical >= floor), None)
        hint = f" (their size says {sized})" if sized and sized != time_unit else ""
        return TableError(where, f"column '{column}' row {row}: epoch value {values.loc[row]:g} read as {time_unit} "
                                 f"is past {pd.Timestamp.max.year - 1}{hint}", "give the right unit with {0}",
                          [("time_unit", None)])
    years = values.astype("string").str.extract(r"(\d{4,})", expand=False)
    numbers = pd.to_numeric(years, errors="coerce")
    bad = np.flatnonzero(((numbers > pd.Timestamp.max.year - 1) | (numbers < pd.Timestamp.min.year + 1)).to_numpy(
        dtype=bool, na_value=False))
    row = values.index[bad[0]] if len(bad) else values.index[0]
    return TableError(where, f"column '{column}' row {row}: {values.loc[row]!r} is outside the years {span} that "
                             "timestamps can hold")


def _parse_times(values: pd.Series, where: str, column: str, time_unit: str | None, logger: logging.Logger,
                 date_format: str | None, dayfirst: bool | None) -> pd.Series:
    if date_format is not None and not pd.api.types.is_datetime64_any_dtype(values):
        text = values.astype("string").str.strip()
        if pd.api.types.is_numeric_dtype(values):
            text = pd.Series([None if pd.isna(v) else f"{int(v)}" if float(v).is_integer() else str(v)
                              for v in values], index=values.index, dtype="string")
        return _with_format(text, where, column, date_format)
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_localize(None)  # keep the wall-clock time
        return values.astype("datetime64[ns]")
    numbers = None
    if pd.api.types.is_bool_dtype(values):
        raise TableError(where, f"column '{column}' holds true/false values, not timestamps",
                         "name the timestamp column with {0}", [("time_column", None)])
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
    else:
        fast = _iso_times(values)
        if fast is not None:
            return fast
        text = values.astype("string").str.strip()
        as_numbers = pd.to_numeric(text, errors="coerce")
        if as_numbers.notna().sum() == text.notna().sum() and text.notna().any():
            numbers = as_numbers.to_numpy(dtype=np.float64)
    if numbers is not None:
        return _from_numbers(numbers, values.index, where, column, time_unit)
    text = values.astype("string").str.strip()
    text = text.str.replace(_DOTTED_DATE, lambda m: f"{m[1]}-{int(m[2]):02d}-{int(m[3]):02d}", regex=True)
    text = _dayfirst_reading(text, where, column, dayfirst, logger)
    split = text.str.extract(_OFFSET)
    has_offset = split[0].notna()
    if not has_offset.any():
        return _parse_strings(text)
    wall = _parse_strings(text.where(~has_offset, split[0]))
    if wall.dropna().duplicated().any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            utc = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        if not utc.dropna().duplicated().any():
            logger.info("%s: column '%s' has UTC offsets whose local times repeat (a daylight-saving change); "
                        "times converted to UTC", where, column)
            return utc.dt.tz_localize(None).astype("datetime64[ns]")
    return wall


def _from_numbers(numbers: np.ndarray, index: pd.Index, where: str, column: str,
                  time_unit: str | None) -> pd.Series:
    finite = numbers[np.isfinite(numbers)]
    if time_unit is None and len(finite) and np.all(finite == np.round(finite)) and np.all(
            (finite >= 1900_01_01) & (finite <= 2199_12_31)):
        dates = pd.to_datetime(pd.Series(numbers, index=index).map(
            lambda v: f"{int(v)}" if np.isfinite(v) else None), format="%Y%m%d", errors="coerce")
        if dates.notna().sum() == len(finite):
            return dates.astype("datetime64[ns]")
    unit = _epoch_unit(numbers, where, column, time_unit)
    try:
        parsed = pd.to_datetime(pd.Series(numbers, index=index), unit=unit, errors="coerce")
    except (ValueError, OverflowError) as exc:
        raise TableError(where, f"column '{column}' could not be read as epoch {unit}: {first_line(exc)}",
                         "check {0}", [("time_unit", None)]) from None
    early = parsed < EARLIEST
    if early.any():
        row = parsed.index[np.flatnonzero(early.to_numpy())[0]]
        raise TableError(where, f"column '{column}' row {row}: epoch value {numbers[index.get_loc(row)]:g} read as "
                                f"{unit} gives {parsed[row]}, before 1971", "give the right unit with {0}",
                         [("time_unit", None)])
    return parsed.astype("datetime64[ns]")


def join_date_time(frame: pd.DataFrame, column: str, explicit: bool) -> pd.Series:
    """MetaTrader-style separate date and time columns, joined; otherwise the column itself."""
    values = frame[column]
    if explicit or column != "date" or "time" not in frame.columns:
        return values
    times = frame["time"].astype("string").str.strip()
    if not times.dropna().str.match(_TIME_OF_DAY).all():
        return values
    return values.astype("string").str.strip() + " " + times


def misread_error(raw: pd.Series, where: str, column: str, dayfirst: bool | None) -> TableError | None:
    """When rows read out of order under ``dayfirst`` are in order the other way: the error that says so (not
    the one that offers to sort a misread series)."""
    if dayfirst is None or pd.api.types.is_datetime64_any_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
        return None
    text = raw.astype("string").str.strip()
    parts = _two_field_parts(text)
    if parts is None or ((parts["second"] if dayfirst else parts["first"]) > 12).any():
        return None
    if not _in_order(_parse_strings(_two_field_iso(parts, not dayfirst, text.index))):
        return None
    reading, other = ("day first", "month first") if dayfirst else ("month first", "day first")
    return TableError(where, f"column '{column}' is out of time order read {reading} but in order read {other}",
                      "read it {1} with {0}".replace("{1}", other), [("dayfirst", not dayfirst)])
