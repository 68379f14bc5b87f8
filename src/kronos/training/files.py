"""Reading training series from CSV/Parquet files, validating them, and splitting each one by time.

A file that cannot serve as a training series (no price columns, timestamps that do not strictly
increase, too few rows, non-numeric values) is skipped with a warning on the ``kronos.training``
logger that names the file and the reason; the run goes on with the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import FEATURE_COLUMNS, PRICE_COLUMNS, bar_features, find_time_column, time_features

log = logging.getLogger("kronos.training")

DATA_SUFFIXES = (".csv", ".parquet", ".pq")
NAN_POLICIES = ("drop", "ffill")


@dataclass
class Series:
    """One validated series: ``bars`` (T, 6) float32 open..amount, ``stamps`` (T, 5) float32 time features."""

    name: str
    bars: np.ndarray
    stamps: np.ndarray
    timestamps: pd.DatetimeIndex

    def __len__(self) -> int:
        return len(self.bars)

    def slice(self, start: int, stop: int) -> Series:
        return Series(self.name, self.bars[start:stop], self.stamps[start:stop], self.timestamps[start:stop])


class SkipFile(Exception):
    """Internal: the reason a file is skipped."""


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files and folders (their ``*.csv``/``*.parquet``/``*.pq`` files, sorted) -> list of files."""
    if not paths:
        raise ValueError("--data: give at least one file or folder")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"--data: folder {path} has no {'/'.join(DATA_SUFFIXES)} files")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in DATA_SUFFIXES:
                raise ValueError(f"--data: {path} is not a CSV or Parquet file (suffix {path.suffix or 'none'})")
            files.append(path)
        else:
            raise FileNotFoundError(f"--data: {path} does not exist")
    return list(dict.fromkeys(files))


def read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise ImportError(f"reading {path} needs pyarrow: pip install 'kronos-kline[parquet]'") from exc


def _timestamp_column(frame: pd.DataFrame, wanted: str | None) -> str:
    try:
        return find_time_column(frame, wanted or None)
    except ValueError as exc:
        raise SkipFile(str(exc)) from None

def _fill_nans(frame: pd.DataFrame, nan_policy: str, name: str) -> pd.DataFrame:
    """Drop or forward-fill rows with NaN in the used columns; volume/amount empty throughout stay empty."""
    used = [c for c in FEATURE_COLUMNS if c in frame.columns and not frame[c].isna().all()]
    bad = frame[used].isna().any(axis=1)
    count = int(bad.sum())
    if not count:
        return frame
    if nan_policy == "ffill":
        frame = frame.copy()
        frame[used] = frame[used].ffill()
        still = frame[used].isna().any(axis=1)  # leading NaNs have nothing to fill from
        frame = frame.loc[~still]
        log.info("%s: forward-filled %d row(s) with missing values, dropped %d leading one(s)",
                 name, count - int(still.sum()), int(still.sum()))
    else:
        frame = frame.loc[~bad]
        log.info("%s: dropped %d row(s) with missing values", name, count)
    return frame


def frame_to_series(frame: pd.DataFrame, name: str, min_rows: int, timestamp_column: str | None = None,
                    rename: Mapping[str, str] | None = None, nan_policy: str = "drop") -> Series:
    """Validate one table and convert it; raises :class:`SkipFile` with the reason when it cannot be used."""
    if rename:
        frame = frame.rename(columns=dict(rename))
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise SkipFile(f"missing price column(s) {', '.join(missing)}")
    column = _timestamp_column(frame, timestamp_column)
    for col in [c for c in FEATURE_COLUMNS if c in frame.columns]:
        if not pd.api.types.is_numeric_dtype(frame[col]) and not frame[col].isna().all():
            converted = pd.to_numeric(frame[col], errors="coerce")
            bad = np.flatnonzero(converted.isna().to_numpy() & frame[col].notna().to_numpy())
            raise SkipFile(f"column '{col}' is not numeric (value {frame[col].iloc[bad[0]]!r} at row {bad[0]})")
    frame = _fill_nans(frame, nan_policy, name)
    try:
        stamps = pd.DatetimeIndex(pd.to_datetime(frame[column]))
    except (ValueError, TypeError) as exc:
        raise SkipFile(f"column '{column}' could not be read as timestamps ({exc})") from exc
    if stamps.hasnans:
        raise SkipFile(f"column '{column}' has missing timestamps")
    steps = np.flatnonzero(np.diff(stamps.asi8) <= 0)
    if len(steps):
        i = steps[0]
        kind = "duplicate" if stamps[i + 1] == stamps[i] else "decreasing"
        raise SkipFile(f"timestamps must strictly increase: {kind} timestamp {stamps[i + 1]} at row {i + 1} "
                       f"after {stamps[i]} ({len(steps)} such row(s))")
    if len(frame) < min_rows:
        raise SkipFile(f"only {len(frame)} usable rows, shorter than one window of {min_rows} bars")
    bars = bar_features(frame.reset_index(drop=True), name=name)
    return Series(name, bars, time_features(stamps), stamps)


def load_series(paths: Sequence[str | os.PathLike], min_rows: int, timestamp_column: str | None = None,
                rename: Mapping[str, str] | None = None, nan_policy: str = "drop") -> list[Series]:
    """Read every usable file under ``paths``; skipped files are logged as warnings with the reason.

    Raises ``ValueError`` when no file is usable.
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"--nan must be one of {', '.join(NAN_POLICIES)}, got {nan_policy!r}")
    files = expand_paths(paths)
    series: list[Series] = []
    for path in files:
        try:
            frame = read_table(path)
            series.append(frame_to_series(frame, path.name, min_rows, timestamp_column, rename, nan_policy))
        except SkipFile as exc:
            log.warning("skipping %s: %s", path, exc)
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
            log.warning("skipping %s: %s", path, exc)
    if not series:
        raise ValueError(f"--data: none of the {len(files)} file(s) is usable (see the warnings above)")
    return series


@dataclass
class Splits:
    """Per-split segments of every series; ``bounds`` maps a series name to its (train, val, test) row counts."""

    train: list[Series]
    val: list[Series]
    test: list[Series]
    bounds: dict[str, tuple[int, int, int]]


def split_by_time(series: Iterable[Series], val_fraction: float, test_fraction: float) -> Splits:
    """Cut each series into consecutive train / validation / test segments by fraction of its rows.

    The last ``test_fraction`` of every series is the test part, the ``val_fraction`` before it the
    validation part, the rest training; so no validation or test bar precedes a training bar of the
    same series. Segments are disjoint: a validation window never sees training bars.
    """
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"--val-fraction + --test-fraction must be below 1, got {val_fraction + test_fraction}")
    splits = Splits([], [], [], {})
    for item in series:
        n = len(item)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        n_train = n - n_val - n_test
        splits.bounds[item.name] = (n_train, n_val, n_test)
        splits.train.append(item.slice(0, n_train))
        if n_val:
            splits.val.append(item.slice(n_train, n_train + n_val))
        if n_test:
            splits.test.append(item.slice(n_train + n_val, n))
    return splits


def describe_splits(splits: Splits, series: Sequence[Series]) -> dict:
    """JSON-ready record of where each series was cut (row counts and first timestamps of each part)."""
    out = {}
    for item in series:
        n_train, n_val, n_test = splits.bounds[item.name]
        edges = {"train": (0, n_train), "val": (n_train, n_train + n_val),
                 "test": (n_train + n_val, n_train + n_val + n_test)}
        out[item.name] = {part: {"rows": stop - start,
                                 "first": str(item.timestamps[start]) if stop > start else None,
                                 "last": str(item.timestamps[stop - 1]) if stop > start else None}
                          for part, (start, stop) in edges.items()}
    return out
