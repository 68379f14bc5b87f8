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
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import io
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..model.checkpoint import atomic_write_bytes
from .features import FEATURE_COLUMNS, PRICE_COLUMNS, TIME_COLUMN_NAMES, bar_features, time_features

log = logging.getLogger("kronos.data.tables")

NAN_POLICIES = ("drop", "ffill", "error")
TIME_UNITS = ("s", "ms", "us", "ns")
ID_COLUMN_NAMES = ("symbol", "ticker", "item_id", "id")  # looked for, in this order
ADJ_CLOSE_NAMES = ("adj close", "adj_close", "adjclose", "adjusted close", "adjusted_close")
TICK_VOLUME_NAMES = ("tickvol", "tick_volume", "tick volume", "tickvolume")
ALIASES = {"vol": "volume", "turnover": "amount",
           # German exports (Datum;Eröffnung;Hoch;Tief;Schluss;Volumen)
           "datum": "date", "eröffnung": "open", "hoch": "high", "tief": "low", "schluss": "close",
           "schlusskurs": "close", "volumen": "volume"}
PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_SUFFIXES = (".json",)
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
DATA_SUFFIXES = (*TEXT_SUFFIXES, *PARQUET_SUFFIXES, *JSON_SUFFIXES, *JSON_LINES_SUFFIXES)
FOLDER_SUFFIXES = (".csv", ".tsv", *PARQUET_SUFFIXES, *JSON_SUFFIXES, *JSON_LINES_SUFFIXES)  # files taken from folders
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"
# Epoch numbers: the smallest magnitude of each unit for a date after 1973 (seconds from 1e8).
EPOCH_FLOORS = (("ns", 1e17), ("us", 1e14), ("ms", 1e11), ("s", 1e8))
EARLIEST = pd.Timestamp("1971-01-01")


# -- errors and how their fixes are phrased ------------------------------------------------------------

def library_option(name: str, value: Any = None) -> str:
    """How the library names an option: ``time_column=`` or ``nan='drop'``."""
    if name == "rename" and isinstance(value, str) and "=" in value:
        old, new = value.split("=", 1)
        return f"rename={{{old!r}: {new!r}}}"
    return f"{name}=" if value is None else f"{name}={value!r}"


def command_line_option(name: str, value: Any = None) -> str:
    """How the command line names an option: ``--time-column`` or ``--nan drop``."""
    flag = "--" + name.replace("_", "-")
    if value is None or value is True:
        return flag
    if value is False:
        return "--no-" + name.replace("_", "-")
    return f"{flag} {value}"


_STYLE: contextvars.ContextVar[Callable[[str, Any], str | None]] = contextvars.ContextVar(
    "kronos_option_style", default=library_option)


@contextlib.contextmanager
def option_style(render: Callable[[str, Any], str | None]) -> Iterator[None]:
    """Within the block, :class:`TableError` messages (and log lines) name options with ``render``.

    ``render(name, value)`` returns the text for the option (``None`` leaves the fix out: for callers
    that do not offer that option). The command line uses :func:`command_line_option`.
    """
    token = _STYLE.set(render)
    try:
        yield
    finally:
        _STYLE.reset(token)


class TableError(ValueError):
    """Input that cannot be read as bars: one line naming where, what, and the option that fixes it.

    ``fix`` is a template whose ``{0}``, ``{1}`` ... are the ``options`` (name, value) pairs; they are
    phrased when the message is made (:func:`option_style`), or by :meth:`phrased` with any renderer.
    """

    def __init__(self, where: str | None, problem: str, fix: str | None = None,
                 options: Sequence[tuple[str, Any]] = ()):
        self.where, self.problem, self.fix, self.options = where, problem, fix, tuple(options)
        super().__init__(problem)

    def phrased(self, render: Callable[[str, Any], str | None] | None = None) -> str:
        render = render or _STYLE.get()
        text = f"{self.where}: {self.problem}" if self.where else self.problem
        if self.fix:
            names = [render(name, value) for name, value in self.options]
            if all(n is not None for n in names):
                text += "; " + self.fix.format(*names)
        return text

    def __str__(self) -> str:
        return self.phrased()


def _rows_text(rows: Sequence[Any], limit: int = 5) -> str:
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


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


# -- reading tables --------------------------------------------------------------------------------------

def source_name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return "standard input" if str(source) == STDIN else str(source)
    return "input"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _decode(data: bytes, name: str) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:4096]:
        raise TableError(name, "is not a text table (CSV or JSON) nor Parquet: it holds binary data")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _sniff_csv(text: str) -> dict[str, Any]:
    """``sep``, ``decimal`` and ``thousands`` for ``pd.read_csv`` from the header and the first lines."""
    lines = [line for line in text[:65536].splitlines() if line.strip()][:50]
    header = lines[0] if lines else ""
    counts = {sep: header.count(sep) for sep in ("\t", ";", ",")}
    sep = max(counts, key=lambda s: (counts[s], s == ","))  # ties: comma
    if counts[sep] == 0:
        sep = ","
    kwargs: dict[str, Any] = {"sep": sep}
    body = "\n".join(lines[1:])
    # Commas between digits in a file not separated by commas are decimal commas, unless dots are decimal too.
    if sep != "," and re.search(r"\d,\d", body) and not re.search(r"\d\.\d+(" + re.escape(sep) + r"|$)", body,
                                                                 flags=re.M):
        kwargs["decimal"] = ","
        if re.search(r"\d{1,3}(\.\d{3})+,\d", body):
            kwargs["thousands"] = "."
    return kwargs


def _read_json(text: str, name: str, lines: bool | None) -> pd.DataFrame:
    """Records (``[{column: value}, ...]``, also wrapped as ``{"bars": [...]}``), columns (``{column: [values]}``)
    or, with ``lines`` (or when the whole text is not one JSON value), one record per line."""
    value = None
    if not lines:
        try:
            value = json.loads(text)
        except ValueError as exc:
            if lines is False:
                raise TableError(name, f"could not read as JSON: {_first_line(exc)}") from None
            lines = True
    if lines:
        try:
            value = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise TableError(name, f"could not read as JSON or JSON lines: {_first_line(exc)}") from None
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, list) and inner and all(isinstance(v, dict) for v in inner):
            value = inner  # {"bars": [{...}, ...]}
    if isinstance(value, list):
        if not all(isinstance(v, dict) for v in value):
            raise TableError(name, "JSON must be a list of records ({column: value}) or a mapping of columns "
                                   "({column: [values]})")
        return pd.DataFrame.from_records(value)
    if isinstance(value, dict):
        try:
            return pd.DataFrame(value)
        except ValueError as exc:
            raise TableError(name, f"JSON columns could not form a table: {_first_line(exc)}") from None
    raise TableError(name, f"JSON must be a list of records or a mapping of columns, got {type(value).__name__}")


def parse_table(data: bytes, name: str = "input", kind: str | None = None) -> pd.DataFrame:
    """A DataFrame from the bytes of a table; ``kind`` is csv, parquet, json or jsonl (default: from content)."""
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise TableError(name, f"could not decompress gzip data: {_first_line(exc)}") from None
    if not data.strip():
        raise TableError(name, "is empty")
    if kind is None:
        if data[:4] == PARQUET_MAGIC:
            kind = "parquet"
        else:
            start = data.lstrip()[:1]
            kind = "json" if start in (b"[", b"{") else "csv"
    if kind == "parquet":
        try:
            return pd.read_parquet(io.BytesIO(data))
        except ImportError as exc:
            raise ImportError("reading Parquet needs pyarrow: pip install 'kronos-kline[parquet]'") from exc
        except Exception as exc:  # pyarrow's own errors as well as ValueError, OSError
            raise TableError(name, f"could not read as Parquet: {_first_line(exc)}") from None
    text = _decode(data, name)
    if kind in ("json", "jsonl"):
        return _read_json(text, name, True if kind == "jsonl" else None)
    try:
        frame = pd.read_csv(io.StringIO(text), skipinitialspace=True, **_sniff_csv(text))
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TableError(name, f"could not read as CSV: {_first_line(exc)}") from None
    if frame.empty and len(frame.columns) == 0:
        raise TableError(name, "is empty")
    return frame


def read_table(source: str | os.PathLike | bytes, name: str | None = None) -> pd.DataFrame:
    """Read a table from a path (format from the extension, else the content), ``-`` (standard input) or bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return parse_table(bytes(source), name or "input")
    if str(source) == STDIN:
        return parse_table(sys.stdin.buffer.read(), name or "standard input")
    path = Path(source).expanduser()
    label = name or str(source)
    if not path.exists():
        raise FileNotFoundError(f"{label}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{label}: is a directory, expected a CSV, Parquet or JSON file")
    suffix = _table_suffix(path)
    kind = ("parquet" if suffix in PARQUET_SUFFIXES else "json" if suffix in JSON_SUFFIXES
            else "jsonl" if suffix in JSON_LINES_SUFFIXES else None)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TableError(label, f"could not be read: {exc.strerror or _first_line(exc)}") from None
    return parse_table(data, label, kind)


def expand_paths(paths: Sequence[str | os.PathLike] | str | os.PathLike, option: str = "data") -> list[Path]:
    """Files and folders (their table files, sorted) -> list of files; ``option`` names the argument in errors."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise TableError(None, "give at least one file or folder", "{0}", [(option, None)])
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and _table_suffix(p) in FOLDER_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {path} has no {'/'.join(FOLDER_SUFFIXES)} files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return list(dict.fromkeys(files))


def _table_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[-1] == ".gz":
        return suffixes[0]
    return path.suffix.lower()


def write_output(path: str | os.PathLike, data: bytes) -> Path:
    """Write a user-facing output file atomically (no half-written file), with the usual umask permissions."""
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


# -- columns ---------------------------------------------------------------------------------------------

def column_key(name: Any) -> str:
    """The name a column is matched by: stripped of spaces and ``<>``, lower case."""
    return str(name).strip().strip("<>").strip().lower()


def normalise_columns(frame: pd.DataFrame, where: str | None = None,
                      rename: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``frame`` with ``rename`` applied and every column name as :func:`column_key`; a DatetimeIndex (or a
    named index) becomes a column. Raises :class:`TableError` for names that clash ignoring case."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{where or 'input'} must be a pandas DataFrame, got {type(frame).__name__}")
    if isinstance(frame.index, pd.DatetimeIndex) or (not isinstance(frame.index, pd.RangeIndex)
                                                     and frame.index.name is not None):
        label = frame.index.name if frame.index.name is not None else "timestamp"
        if column_key(label) not in {column_key(c) for c in frame.columns}:
            frame = frame.rename_axis(label).reset_index()
    if rename:
        keys = {column_key(c): c for c in frame.columns}
        mapping = {}
        for old, new in rename.items():
            if old in frame.columns:
                mapping[old] = new
            elif column_key(old) in keys:
                mapping[keys[column_key(old)]] = new
            else:
                raise TableError(where, f"rename names column {old!r}, which is not there; columns are "
                                        f"{', '.join(map(str, frame.columns))}")
        frame = frame.rename(columns=mapping)
    keys = [column_key(c) for c in frame.columns]
    seen: dict[str, Any] = {}
    for original, key in zip(frame.columns, keys):
        if key in seen:
            raise TableError(where, f"columns {str(seen[key])!r} and {str(original)!r} have the same name "
                                    "(names are matched ignoring case and spaces)", "rename one with {0}",
                             [("rename", f"{original}=OTHER")])
        seen[key] = original
    out = frame.copy(deep=False)
    out.columns = keys
    for alias, target in ALIASES.items():
        if alias in out.columns and target not in out.columns:
            out = out.rename(columns={alias: target})
    return out


def find_time_column(frame: pd.DataFrame, where: str | None = None, time_column: str | None = None) -> str:
    """The timestamp column of a normalised frame: ``time_column`` if given, else the first of TIME_COLUMN_NAMES."""
    columns = ", ".join(map(str, frame.columns)) or "none"
    if time_column is not None:
        key = column_key(time_column)
        if key not in frame.columns and ALIASES.get(key) in frame.columns:
            key = ALIASES[key]  # named as in the file, renamed by its alias (Datum -> date)
        if key not in frame.columns:
            raise TableError(where, f"no column {time_column!r} (given as the timestamp column); columns are {columns}",
                             "check {0}", [("time_column", None)])
        return key
    for name in TIME_COLUMN_NAMES:
        if name in frame.columns:
            return name
    raise TableError(where, f"no timestamp column (looked for {', '.join(TIME_COLUMN_NAMES)}); columns are "
                            f"{columns}", "name it with {0}", [("time_column", None)])


def find_id_column(frame: pd.DataFrame, where: str | None = None, id_column: str | None = None) -> str | None:
    """The symbol column of a long table: ``id_column`` if given, else the first of ID_COLUMN_NAMES (unless its
    values are all different: then it numbers rows), else None."""
    if id_column is not None:
        key = column_key(id_column)
        if key not in frame.columns:
            raise TableError(where, f"no column {id_column!r} (given as the symbol column); columns are "
                                    f"{', '.join(map(str, frame.columns))}", "check {0}", [("id_column", None)])
        return key
    for name in ID_COLUMN_NAMES:
        if name in frame.columns and (len(frame) < 2 or frame[name].nunique(dropna=False) < len(frame)):
            return name
    return None


# -- timestamps ------------------------------------------------------------------------------------------

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
                raise TableError(where, f"date_format {date_format!r} is not a strftime format: {_first_line(exc)}",
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
        raise TableError(where, f"column '{column}' could not be read as epoch {unit}: {_first_line(exc)}",
                         "check {0}", [("time_unit", None)]) from None
    early = parsed < EARLIEST
    if early.any():
        row = parsed.index[np.flatnonzero(early.to_numpy())[0]]
        raise TableError(where, f"column '{column}' row {row}: epoch value {numbers[index.get_loc(row)]:g} read as "
                                f"{unit} gives {parsed[row]}, before 1971", "give the right unit with {0}",
                         [("time_unit", None)])
    return parsed.astype("datetime64[ns]")


# -- frames to series ------------------------------------------------------------------------------------

def _combine_date_time(frame: pd.DataFrame, column: str, explicit: bool) -> pd.Series:
    """MetaTrader-style separate date and time columns, joined; otherwise the column itself."""
    values = frame[column]
    if explicit or column != "date" or "time" not in frame.columns:
        return values
    times = frame["time"].astype("string").str.strip()
    if not times.dropna().str.match(_TIME_OF_DAY).all():
        return values
    return values.astype("string").str.strip() + " " + times


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
        raise TableError(where, f"rows {_rows_text(rows)} have the same time {stamp} but different values")
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
        raise TableError(where, f"column '{column}' has missing values at row(s) {_rows_text(rows)}",
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


def _misread(raw: pd.Series, where: str, column: str, dayfirst: bool | None) -> TableError | None:
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


def _one_series(frame: pd.DataFrame, name: str, where: str, opts: ReadOptions,
                logger: logging.Logger) -> Series:
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        columns = ", ".join(map(str, frame.columns)) or "none"
        raise TableError(where, f"missing price column(s) {', '.join(missing)}; columns are {columns}",
                         "map a column with {0}", [("rename", f"OLD={missing[0]}")])
    column = find_time_column(frame, where, opts.time_column)
    raw = _combine_date_time(frame, column, opts.time_column is not None)
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
        raise _misread(raw, where, column, opts.dayfirst) or exc from None
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


def table_stem(path: str | os.PathLike) -> str:
    """A file's name without its table suffix (and ``.gz``): ``prices.csv.gz`` -> ``prices``."""
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in DATA_SUFFIXES else name


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
