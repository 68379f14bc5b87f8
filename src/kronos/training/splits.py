"""Training series: read from the users' files (unusable files skipped), then cut by time into
train / validation / test segments.

A file that cannot serve as a training series (no price columns, timestamps out of order, too few
rows, non-numeric values) is skipped with a warning on the ``kronos.training`` logger that names the
file and the reason; the run goes on with the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..data.tables import ReadOptions, Series, TableError, load_series

log = logging.getLogger("kronos.training")


def load_training_series(paths: Sequence[str | os.PathLike], min_rows: int, options: ReadOptions | None = None,
                         **keywords) -> list[Series]:
    """Every usable series in ``paths`` with at least ``min_rows`` bars; the others are skipped with a warning.

    Keywords are the reading options of :class:`kronos.data.tables.ReadOptions` (default ``nan="drop"``
    here). Raises ``ValueError`` when no series is usable.
    """
    if options is None:
        options = ReadOptions(**{"nan": "drop", **keywords})
    series = load_series(paths, options, skip_bad=True, logger=log)
    usable = []
    for item in series:
        if len(item) < min_rows:
            log.warning("skipping %s: only %d usable rows, shorter than one window of %d bars",
                        item.source or item.name, len(item), min_rows)
        else:
            usable.append(item)
    if not usable:
        raise TableError(None, f"none of the {len(series)} series is long enough for one window of {min_rows} bars "
                               "(see the warnings above)")
    return usable


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
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name}={value} must be in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction={val_fraction} + test_fraction={test_fraction} must be below 1 together")
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
