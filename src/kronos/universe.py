"""Forecast a whole universe of series in one job, in this process or on a Ray cluster.

:func:`forecast_universe` reads many series (files, a folder, a glob, a long table with a symbol
column, a DataFrame), forecasts them in batches of similar length through the forecasting door
(:func:`~kronos.forecasting.forecast.forecast_series`), and writes one dataset: a folder with one
partition per series (``id=<series>/part-0.parquet``), optionally under a run partition
(``run=<label>/``), in Parquet or CSV.

- **Per-series seeds.** Each series draws from its own random stream, seeded from the run's ``seed``
  and the series' id (:func:`series_seed`), so its forecast does not depend on which series share its
  batch, how the job is split, or which worker runs it.
- **Resumable.** Every partition is written atomically (temporary file, then rename); a rerun of the
  same job skips the series already written, so a killed job picks up where it stopped.
- **Failures per series.** A series that cannot be read or forecast is skipped and its reason written
  to ``_errors.csv`` in the dataset folder; the rest goes on.
- **Engines.** ``engine="local"`` runs every batch in this process; ``engine="ray"`` runs them with Ray
  Data's ``map_batches`` over a pool of actors, each loading the model once (``pip install
  'kronos-kline[ray]'``), on a cluster (``address=``) or a Ray instance started on this machine. The
  batches and seeds are the same for both engines, so both write the same numbers.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import kill_points
from .data.errors import first_line
from .data.tables import ReadOptions, Series, TableError, read_series, table_stem
from .engines import ENGINES, SeriesTask, TaskSettings, run_batches
from .forecasting.calibration import Calibration
from .forecasting.inputs import future_of
from .forecasting.options import ForecastOptions
from .forecasting.predictor import KronosPredictor
from .forecasting.result import DEFAULT_PATHS, DEFAULT_QUANTILES

log = logging.getLogger("kronos.universe")

FORMATS = ("parquet", "csv")
PARTITIONS = ("series", "run")
ERRORS_FILE = "_errors.csv"
CALIBRATIONS_FILE = "_calibrations.json"
GLOB_CHARS = "*?["


def series_seed(seed: int, series_id: str) -> int:
    """The seed of one series: a 63-bit hash of the run ``seed`` and the series' id (stable across
    processes, machines and Python versions)."""
    digest = hashlib.sha256(f"{int(seed)}\x00{series_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class UniverseResult:
    """What one :func:`forecast_universe` call did.

    ``written``: ids forecast and written by this call; ``skipped``: ids already in the dataset (resume);
    ``failed``: id (or file) -> reason, also in ``errors_path``; ``seconds``: wall time.
    """

    out: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    errors_path: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


# -- reading -------------------------------------------------------------------------------------------

def _expand(source: Any) -> list[Any]:
    """Files of ``source`` (a path, folder, glob, or a list of them); DataFrames and Series pass through."""
    if isinstance(source, (pd.DataFrame, Series)):
        return [source]
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    items: list[Any] = []
    for entry in source:
        if isinstance(entry, (pd.DataFrame, Series)):
            items.append(entry)
            continue
        text = os.path.expanduser(str(entry))
        path = Path(text)
        if path.is_dir():
            from .data.formats import FOLDER_SUFFIXES, table_suffix

            found = sorted(p for p in path.iterdir() if p.is_file() and table_suffix(p) in FOLDER_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {path} has no {'/'.join(FOLDER_SUFFIXES)} files")
            items += found
        elif path.is_file():
            items.append(path)
        elif any(c in text for c in GLOB_CHARS):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise FileNotFoundError(f"no file matches {text}")
            items += found
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    if not items:
        raise ValueError("source holds no file, folder or table")
    return list(dict.fromkeys(items))


def _read(source: Any, options: ReadOptions, failed: dict[str, str]) -> list[Series]:
    """Every readable series of ``source``; unreadable files and duplicate ids go to ``failed``."""
    out: list[Series] = []
    seen: set[str] = set()
    for k, item in enumerate(_expand(source)):
        if isinstance(item, Series):
            found = [item]
        else:
            label = f"source[{k}]" if isinstance(item, pd.DataFrame) else str(item)
            try:
                found = read_series(item, label, options)
            except (TableError, ValueError, OSError) as exc:
                key = label if isinstance(item, pd.DataFrame) else table_stem(item)
                failed[key] = first_line(exc)
                continue
        for s in found:
            if s.name in seen:
                failed[f"{s.name} ({s.source or 'input'})"] = f"series id {s.name!r} appears twice; ids must be unique"
                continue
            seen.add(s.name)
            out.append(s)
    return out


def _tasks(series: list[Series], pred_len: int, freq: str | None, lookback: int | None, seed: int,
           failed: dict[str, str], calendar: str | None = None) -> list[SeriesTask]:
    tasks = []
    for s in series:
        if lookback is not None:
            s = s.slice(-lookback, None)
        if len(s) < 2:
            failed[s.name] = f"{len(s)} history bar(s); at least 2 are needed"
            continue
        if not np.isfinite(s.bars).all():
            failed[s.name] = "bars hold values that are not finite"
            continue
        try:
            future = future_of([s], pred_len, freq, calendar, label="name")[0][0]
        except ValueError as exc:
            failed[s.name] = first_line(exc).removeprefix(f"{s.name}: ")
            continue
        tasks.append(SeriesTask(s.name, s.bars, s.timestamps, future, series_seed(seed, s.name)))
    return tasks


def plan_batches(lengths: dict[str, int], batch_size: int) -> list[list[str]]:
    """Ids in batches of at most ``batch_size`` series of similar history length (sorted by length, then id):
    the same universe always gives the same batches."""
    order = sorted(lengths, key=lambda i: (lengths[i], i))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


# -- the dataset -----------------------------------------------------------------------------------------

class _Dataset:
    """The output folder: one file per series (``partition="series"``) or per batch (``"run"``)."""

    def __init__(self, out: Path, fmt: str, partition: str, run: str | None):
        self.root = Path(out)
        self.fmt = fmt
        self.partition = partition
        self.base = self.root / f"run={_segment(run)}" if run is not None else self.root
        self.suffix = ".parquet" if fmt == "parquet" else ".csv"

    def series_path(self, series_id: str) -> Path:
        return self.base / f"id={_segment(series_id)}" / f"part-0{self.suffix}"

    def batch_path(self, ids: Sequence[str]) -> Path:
        digest = hashlib.sha1("\x00".join(ids).encode()).hexdigest()[:16]
        return self.base / f"part-{digest}{self.suffix}"

    def written(self) -> set[str]:
        if not self.base.is_dir():
            return set()
        for stale in self.base.glob("**/.part-*.tmp"):  # left by a job killed while writing
            stale.unlink(missing_ok=True)
        if self.partition == "series":
            return {urllib.parse.unquote(p.parent.name[3:]) for p in self.base.glob(f"id=*/part-0{self.suffix}")}
        ids: set[str] = set()
        for path in self.base.glob(f"part-*{self.suffix}"):
            ids.update(map(str, self._read(path, ["id"])["id"].unique()))
        return ids

    def _read(self, path: Path, columns: list[str] | None = None) -> pd.DataFrame:
        if self.fmt == "parquet":
            return pd.read_parquet(path, columns=columns)
        return pd.read_csv(path, usecols=columns, dtype={"id": str} if columns else None)

    def write(self, frames: dict[str, pd.DataFrame]) -> None:
        if not frames:
            return
        if self.partition == "series":  # threads: encoding and fsync release the GIL
            with ThreadPoolExecutor(max_workers=min(8, len(frames))) as pool:
                list(pool.map(lambda item: self._write_file(self.series_path(item[0]), item[1]), frames.items()))
            return
        ids = sorted(frames)
        table = pd.concat([frames[i].assign(id=i)[["id", *frames[i].columns]] for i in ids], ignore_index=True)
        self._write_file(self.batch_path(ids), table)

    def _write_file(self, path: Path, frame: pd.DataFrame) -> None:
        from .io import atomic_write_bytes

        path.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "parquet":
            import io

            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            data = buffer.getvalue()
        else:
            data = frame.to_csv(index=False).encode()
        atomic_write_bytes(path, data)

    def write_calibrations(self, fitted: dict[str, Calibration]) -> None:
        """Merge ``fitted`` into ``_calibrations.json`` (rewritten atomically)."""
        if not fitted:
            return
        from .io import atomic_write_bytes

        path = self.base / CALIBRATIONS_FILE
        stored = json.loads(path.read_text()) if path.is_file() else {}
        stored.update({i: c.to_dict() for i, c in fitted.items()})
        self.base.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(stored, sort_keys=True).encode())

    def write_errors(self, failed: dict[str, str]) -> Path | None:
        from .io import atomic_write_bytes

        path = self.base / ERRORS_FILE
        if not failed:
            path.unlink(missing_ok=True)
            return None
        self.base.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"id": list(failed), "error": list(failed.values())})
        atomic_write_bytes(path, frame.to_csv(index=False).encode())
        return path


def _segment(value: str) -> str:
    """A partition folder name: the value URI-escaped (what pyarrow's hive partitioning reads back)."""
    return urllib.parse.quote(str(value), safe="")


def read_calibrations(out: str | os.PathLike, run: str | None = None) -> dict[str, Calibration]:
    """The fitted calibrations stored beside a dataset's forecasts (id -> Calibration); {} when none."""
    root = Path(out)
    path = (root / f"run={_segment(run)}" if run is not None else root) / CALIBRATIONS_FILE
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
        return {str(i): Calibration.from_dict(c) for i, c in stored.items()}
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _given(calibrations: Any, run: str | None) -> dict[str, Calibration]:
    if calibrations is None:
        return {}
    if isinstance(calibrations, (str, os.PathLike)):
        return read_calibrations(calibrations, run)
    out = dict(calibrations)
    bad = [i for i, c in out.items() if not isinstance(c, Calibration)]
    if bad:
        raise TypeError(f"calibrations[{bad[0]!r}] must be a Calibration")
    return out


def read_universe(out: str | os.PathLike, run: str | None = None) -> pd.DataFrame:
    """A dataset written by :func:`forecast_universe` as one frame (``id`` first, sorted by id and timestamp)."""
    root = Path(out)
    base = root / f"run={_segment(run)}" if run is not None else root
    frames = []
    for path in sorted(base.glob("id=*/part-0.*")):
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, parse_dates=["timestamp"])
        frames.append(frame.assign(id=urllib.parse.unquote(path.parent.name[3:])))
    for path in sorted(base.glob("part-*.*")):
        frames.append(pd.read_parquet(path) if path.suffix == ".parquet"
                      else pd.read_csv(path, parse_dates=["timestamp"], dtype={"id": str}))
    if not frames:
        raise FileNotFoundError(f"{base} holds no forecast")
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[["id", *[c for c in frame.columns if c != "id"]]]
    return frame.sort_values(["id", "timestamp"], kind="stable").reset_index(drop=True)


# -- the entry point -------------------------------------------------------------------------------------

def forecast_universe(source: str | os.PathLike | pd.DataFrame | Iterable[Any], out: str | os.PathLike, *,
                      predictor: KronosPredictor | None = None, model: str | os.PathLike = "default",
                      tokenizer: str | os.PathLike | None = None, device: str | None = None,
                      max_context: int | None = None, engine: str = "local", pred_len: int = 20,
                      sample_count: int = DEFAULT_PATHS, quantiles: Sequence[float] = DEFAULT_QUANTILES, seed: int = 0,
                      T: float = 1.0, top_k: int | None = 0, top_p: float = 1.0, calibrate: bool = True,
                      combine: bool = True, dequantise: bool = True, freq: str | None = None,
                      calendar: str | None = None, lookback: int | None = None,
                      batch_size: int = 32, format: str = "parquet", partition: str = "series",
                      run: str | None = None, paths: bool = False, overwrite: bool = False,
                      address: str | None = None, workers: int = 2, cpus_per_worker: float = 1,
                      gpus_per_worker: float = 0, progress: bool | Callable[[int, int], None] = True,
                      calibrations: Any = None, options: ReadOptions | None = None,
                      **read_keywords: Any) -> UniverseResult:
    """Forecast every series of ``source`` and write them to the dataset folder ``out``.

    ``source``: a file (a long table with a symbol column holds many series), a folder (its table files),
    a glob pattern (``"data/*.parquet"``), a DataFrame, or a list of these. Reading follows
    :mod:`kronos.data.tables` (``options`` or its keywords: ``time_column``, ``id_column``, ``nan``, ...). A
    series is named by its symbol, or by its file's stem.

    The model: ``predictor``, or ``model``/``tokenizer``/``device``/``max_context`` as in
    :meth:`KronosPredictor.from_pretrained` (the bundled model by default). The forecast:
    ``pred_len``, ``sample_count``, ``quantiles``, ``T``, ``top_k``, ``top_p``, ``calibrate``, ``combine``,
    ``dequantise`` as in :meth:`~KronosPredictor.forecast_batch`; ``freq`` for the future timestamps
    (default: each series' own calendar), ``calendar`` the exchange whose holidays they skip (default:
    detected per series, ``"none"``: no exchange calendar); ``lookback`` keeps only each history's last bars. ``seed``:
    the run seed; series ``i`` is drawn with ``series_seed(seed, i)``.

    The dataset: ``format`` ``"parquet"`` or ``"csv"``; ``partition="series"`` writes
    ``[run=<run>/]id=<id>/part-0.<format>`` per series, ``partition="run"`` one
    ``run=<run>/part-<hash>.<format>`` per batch with an ``id`` column (``run`` is then required). Rows:
    ``timestamp``, ``column`` (open ... amount), ``mean``, one column per quantile level, and with
    ``paths`` the sample paths ``path_0`` ... Series already in the dataset are skipped unless
    ``overwrite``. Failures go to ``_errors.csv`` beside the partitions. Read it back with
    ``pandas.read_parquet(out)`` or :func:`read_universe`.

    Series are forecast in batches of ``batch_size`` of similar history length. ``engine="ray"`` runs
    the batches on ``workers`` Ray actors of ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs each,
    on the cluster at ``address`` (``"auto"``, ``"ray://head:10001"``) or on a Ray instance started here.
    ``progress``: a progress bar on stderr (True), none (False), or a callback ``(done, total)``.

    Each series' fitted calibration is stored beside its forecasts, in ``_calibrations.json`` (id ->
    :meth:`Calibration.to_dict`) next to ``_errors.csv``. ``calibrations``: fitted calibrations to apply
    instead of fitting, a mapping id -> :class:`~kronos.forecasting.calibration.Calibration` or a dataset folder
    written before (its ``_calibrations.json``, :func:`read_calibrations`); series without one are fitted.
    So a daily refresh can fit every N runs and reuse the factors in between.
    """
    started = time.perf_counter()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {', '.join(PARTITIONS)}, got {partition!r}")
    if partition == "run" and run is None:
        raise ValueError("partition='run' needs run= (a label for this run, e.g. the date)")
    for name, value in (("batch_size", batch_size), ("workers", workers), ("pred_len", pred_len),
                        ("sample_count", sample_count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not cpus_per_worker > 0 or gpus_per_worker < 0:
        raise ValueError(f"cpus_per_worker must be > 0 and gpus_per_worker >= 0, got {cpus_per_worker!r} "
                         f"and {gpus_per_worker!r}")
    if format == "parquet":
        from importlib.util import find_spec

        if find_spec("pyarrow") is None:
            raise ImportError("format='parquet' needs pyarrow: pip install 'kronos-kline[parquet]' (or format='csv')")
    # bad settings fail here, not in every series
    forecasting = ForecastOptions(sample_count=sample_count, T=T, top_k=top_k, top_p=top_p, quantiles=quantiles,
                                  calibrate=calibrate, dequantise=dequantise, combine=combine)
    settings = TaskSettings(pred_len, forecasting, paths)

    result = UniverseResult(Path(out))
    dataset = _Dataset(Path(out), format, partition, run)
    opts = ReadOptions.of(options, **read_keywords)
    series = _read(source, opts, result.failed)
    from .data.calendar import check_calendar

    check_calendar(calendar)  # a bad name fails here, not in every series
    tasks = {t.id: t for t in _tasks(series, pred_len, freq, lookback, int(seed), result.failed, calendar)}
    given = _given(calibrations, run) if calibrate else {}
    for i, c in given.items():
        if i in tasks:
            tasks[i].calibration = c
    done = set() if overwrite else dataset.written() & set(tasks)
    result.skipped = sorted(done)
    plan = plan_batches({i: len(t.bars) for i, t in tasks.items()}, batch_size)
    # A batch runs when any of its series is missing; it keeps its planned members, so every series is always
    # forecast in the same company (bit-identical results on any device), and only missing ones are written.
    todo = [[tasks[i] for i in ids] for ids in plan if not set(ids) <= done]
    total = sum(len(set(t.id for t in b) - done) for b in todo)
    unusable = len(result.failed)  # known before any forecast: counted on the bar as done, and named as failed

    bar, report = _progress(progress, total + unusable, engine, unusable)
    if todo:
        loader = {"model": model, "tokenizer": tokenizer, "device": device, "max_context": max_context}
        results = run_batches(predictor, todo, settings, engine=engine, loader=loader, address=address,
                              workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
        try:
            written = 0
            for batch in results:
                frames = {i: f for i, f, _, _ in batch if f is not None and i not in done}
                dataset.write(frames)
                dataset.write_calibrations({i: c for i, f, _, c in batch if i in frames and c is not None})
                kill_points.reached("universe-batch")  # the batch is done: its forecasts and calibrations are written
                for i, f, reason, _ in batch:
                    if f is None:
                        result.failed[i] = reason or "failed"
                result.written += sorted(frames)
                written += len([i for i, _, _, _ in batch if i not in done])
                report(unusable + written)
        finally:
            if bar is not None:
                bar.close()
            results.close()  # shuts down a Ray instance the job started
    elif bar is not None:
        bar.close()
    result.errors_path = dataset.write_errors(result.failed)
    result.seconds = time.perf_counter() - started
    if result.failed:
        log.warning("%d series failed, reasons in %s", len(result.failed), result.errors_path)
    return result


def _progress(progress: bool | Callable[[int, int], None], total: int, engine: str,
              failed: int = 0) -> tuple[Any, Callable[[int], None]]:
    """A bar over every input series (those that could not be read or prepared count as done at once, and the
    bar says how many failed), or the caller's ``(done, total)`` callback."""
    if callable(progress):
        return None, lambda done: progress(done, total)
    if not progress or total == 0:
        return None, lambda done: None
    import sys

    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"forecast ({engine})", unit="series", file=sys.stderr, initial=failed)
    if failed:
        bar.set_postfix_str(f"{failed} failed before forecasting", refresh=False)
    return bar, lambda done: bar.update(done - bar.n)
