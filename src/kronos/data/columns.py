"""Column names as people write them, matched to ours: case, spaces and MetaTrader's ``<ANGLE>`` brackets ignored,
common aliases (``vol``, ``turnover``, ``datum`` ...) understood, and the timestamp and symbol columns found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from .errors import TableError
from .features import TIME_COLUMN_NAMES

ID_COLUMN_NAMES = ("symbol", "ticker", "item_id", "id")  # looked for, in this order
ADJ_CLOSE_NAMES = ("adj close", "adj_close", "adjclose", "adjusted close", "adjusted_close")
TICK_VOLUME_NAMES = ("tickvol", "tick_volume", "tick volume", "tickvolume")
ALIASES = {"vol": "volume", "turnover": "amount",
           # German exports (Datum;Eröffnung;Hoch;Tief;Schluss;Volumen)
           "datum": "date", "eröffnung": "open", "hoch": "high", "tief": "low", "schluss": "close",
           "schlusskurs": "close", "volumen": "volume"}


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
