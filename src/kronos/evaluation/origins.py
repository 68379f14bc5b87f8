"""Walk-forward origins and the model runner, shared by evaluation and the backtest.

An *origin* is the index ``o`` of the first forecast bar: the history is bars ``[o - lookback, o)``
(fewer at the start of a short series, down to ``min_history``) and the horizon bars ``[o, o + pred_len)``.
Every horizon lies inside the tail, rows ``[n - round(n * tail_fraction), n)``: the same rows as the test
part of ``kronos train --test-fraction`` (:func:`kronos.training.split_by_time`), so a model trained with
that fraction never saw a scored bar.
Origins step by ``stride`` bars on a grid anchored near the end of each series; the anchor is the latest
origin timestamp shared by the most series, so series on one calendar share origin timestamps (needed for
the cross-sectional rank IC). ``max_origins`` thins the grid evenly.
``tail_fraction=1.0`` scores a whole file from its first origin with ``min_history`` bars of history (all
taken from that file); ``start`` (a date) puts the first horizon at or after that date instead.

The model's forecasts at origins go through the forecasting door
(:func:`kronos.forecasting.forecast.forecast_series`): :func:`forecast_requests` in this process,
:func:`engine_batches` on the engines of :mod:`kronos.engines`, :class:`ModelRunner` batching a plan.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..data.features import check_count
from ..data.tables import Series
from ..forecasting.forecast import forecast_series
from ..forecasting.options import ForecastOptions

SAMPLING_SETTINGS = ("T", "top_k", "top_p", "calibrate", "dequantise", "combine")
BASELINE_RETURNS = 1000  # log returns before an origin the baselines are fitted on, by default


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    check_count(name, value)


@dataclass(frozen=True)
class EvaluationConfig:
    """What to evaluate and how. Bars are counts of rows of each series.

    lookback: history bars per origin. pred_len: horizon bars. sample_count: paths per origin (model and
    each baseline with paths). stride: bars between origins (default ``pred_len``: horizons do not overlap).
    max_origins: most origins per series (None: all on the grid). tail_fraction: share of each series
    held out (1.0: the whole series, from its first origin with ``min_history`` bars of history).
    start: a date or timestamp; when given, horizons start at or after it instead of in the tail.
    min_history: fewest history bars an origin may have (default min(64, lookback)).
    baseline_returns: the baselines see up to this many log returns before each origin (the bars before
    it, whatever the model's ``lookback``; default 1,000, as a quant fits GARCH); None: the model's
    history window of ``lookback`` bars.
    vol_window: N, most recent log returns for the drift, volatility, bootstrap and GARCH baselines, of
    those they see (None: all of them).
    batch_size: origins per model call. seed: seeds the model and the baselines (per origin; see
    :func:`origin_seed`) and the calibration's past forecasts (``calibration_seed``).
    T, top_k, top_p, calibrate, dequantise, combine: sampling settings of the model's
    :class:`~kronos.forecasting.options.ForecastOptions`; None (the default) keeps that default.
    """

    lookback: int = 512
    pred_len: int = 24
    sample_count: int = 20
    stride: int | None = None
    max_origins: int | None = 20
    tail_fraction: float = 0.2
    min_history: int | None = None
    vol_window: int | None = None
    batch_size: int = 32
    seed: int = 0
    T: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    calibrate: bool | None = None
    dequantise: bool | None = None
    start: str | None = None
    combine: bool | None = None
    baseline_returns: int | None = BASELINE_RETURNS

    def __post_init__(self) -> None:
        for name in ("lookback", "pred_len", "sample_count", "batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("stride", "max_origins", "min_history", "vol_window", "baseline_returns"):
            _positive_int(name, getattr(self, name), allow_none=True)
        if isinstance(self.tail_fraction, bool) or not isinstance(self.tail_fraction, (int, float)) \
                or not 0 < self.tail_fraction <= 1:
            raise ValueError(f"tail_fraction must be in (0, 1], got {self.tail_fraction!r}")
        if self.start is not None:
            try:
                stamp = pd.Timestamp(self.start)
            except (TypeError, ValueError):
                stamp = None
            if stamp is None or stamp is pd.NaT:
                raise ValueError(f"start must be a date or timestamp such as 2024-01-31, got {self.start!r}")
            object.__setattr__(self, "start", str(self.start))
        if self.vol_window is not None and self.vol_window < 2:
            raise ValueError(f"vol_window must be >= 2 (a standard deviation needs 2 returns), got {self.vol_window}")
        for name in ("calibrate", "dequantise", "combine"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be True, False or None, got {value!r}")

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampling settings that are set (not None), as keywords of :class:`ForecastOptions`."""
        return {name: getattr(self, name) for name in SAMPLING_SETTINGS if getattr(self, name) is not None}

    @property
    def step(self) -> int:
        return self.stride or self.pred_len

    def baseline_start(self, origin: Origin) -> int:
        """First bar the baselines see at ``origin``: ``baseline_returns`` returns back, or the model's window."""
        if self.baseline_returns is None:
            return origin.start
        return max(0, origin.index - self.baseline_returns - 1)

    @property
    def history_floor(self) -> int:
        return min(self.min_history or 64, self.lookback)


@dataclass(frozen=True)
class Origin:
    series: str
    index: int  # first forecast bar
    start: int  # first history bar


def in_float64(series: Sequence[Series]) -> list[Series]:
    """The series with float64 bars: the baselines and metrics compute in float64."""
    return [Series(s.name, np.asarray(s.bars, dtype=np.float64), s.timestamps, s.stamps, s.id_column, s.source)
            for s in series]


def _first_at(timestamps: pd.DatetimeIndex, start: str) -> int:
    """Index of the first timestamp at or after ``start`` (read in the timestamps' time zone when it has none)."""
    stamp = pd.Timestamp(start)
    if timestamps.tz is not None and stamp.tz is None:
        stamp = stamp.tz_localize(timestamps.tz)
    elif timestamps.tz is None and stamp.tz is not None:
        stamp = stamp.tz_convert(None)
    return int(timestamps.searchsorted(stamp, side="left"))


def valid_range(series: Series, config: EvaluationConfig) -> range:
    """The origins of ``series`` that leave a whole horizon inside its tail (or after ``config.start``)."""
    n = len(series.bars)
    if config.start is not None:
        split = _first_at(series.timestamps, config.start)
    else:
        split = n - int(round(n * config.tail_fraction))  # the training pipeline's test split (split_by_time)
    first = max(split, config.history_floor)
    return range(first, n - config.pred_len + 1)


def plan_walk_origins(series: Sequence[Series], config: EvaluationConfig) -> tuple[list[Origin], dict[str, str]]:
    """Origins per series (see the module docstring) and the reason for each series left without any."""
    valid = {s.name: valid_range(s, config) for s in series}
    counts = Counter(ts for s in series for ts in s.timestamps[valid[s.name]].asi8.tolist())
    origins, skipped = [], {}
    for s in series:
        candidates = valid[s.name]
        if len(candidates) == 0:
            where = f"from {config.start}" if config.start is not None else \
                f"inside the last {config.tail_fraction:.0%}"
            skipped[s.name] = (f"{len(s.bars)} rows leave no horizon of {config.pred_len} bars {where} with >= "
                               f"{config.history_floor} history bars")
            continue
        stamps = s.timestamps[candidates].asi8
        shared = np.array([counts[t] for t in stamps.tolist()])
        anchor = candidates[int(np.flatnonzero(shared == shared.max())[-1])]
        grid = list(range(anchor % config.step, candidates.stop, config.step))
        grid = [o for o in grid if o >= candidates.start]
        if config.max_origins is not None and len(grid) > config.max_origins:
            every = math.ceil(len(grid) / config.max_origins)
            phase = grid.index(anchor) % every
            grid = grid[phase::every][-config.max_origins:]
        origins += [Origin(s.name, o, max(0, o - config.lookback)) for o in grid]
    return origins, skipped


@dataclass(frozen=True)
class Engine:
    """Where the model's batches run: ``"local"`` (this process) or ``"ray"`` (an actor pool of ``workers``
    actors of ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs, on the cluster at ``address`` or a Ray
    instance started here), as for ``kronos forecast``. The batches and per-origin seeds are the same on
    both, so both give the same numbers."""

    name: str = "local"
    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0

    def __post_init__(self) -> None:
        if self.name not in ("local", "ray"):
            raise ValueError(f"engine must be local or ray, got {self.name!r}")
        check_count("workers", self.workers)

    def options(self) -> dict[str, Any]:
        return {"engine": self.name, "address": self.address, "workers": self.workers,
                "cpus_per_worker": self.cpus_per_worker, "gpus_per_worker": self.gpus_per_worker}


def origin_seed(seed: int, series: str, index: int) -> int:
    """The seed of the model's paths at one origin: a 63-bit hash of the run ``seed``, the series' name and
    the origin's row, so an origin's forecast does not depend on which origins share its batch or engine."""
    digest = hashlib.sha256(f"{int(seed)}\x00{series}\x00{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def model_options(predictor: Any, config: EvaluationConfig) -> ForecastOptions:
    """The model's options at every origin: ``config``'s paths and sampling settings that are set, no quantiles,
    the run seed as the calibration seed, and ``config.lookback`` (never more than the model's own)."""
    own = getattr(predictor, "lookback", None)
    lookback = min(config.lookback, own) if isinstance(own, int) else config.lookback
    return ForecastOptions(sample_count=config.sample_count, quantiles=(), calibration_seed=int(config.seed),
                           lookback=lookback, **config.sampling)


def forecast_requests(predictor: Any, requests: Sequence[tuple[Series, int]], pred_len: int,
                      options: ForecastOptions, seed: int) -> list[np.ndarray]:
    """(S, P, 6) sample paths per (series, origin row) request, in one batch through the door.

    Each request is forecast from its series' whole history before the origin (the predictor forecasts
    from the last ``lookback`` bars and calibrates on earlier ones, on a grid anchored to the series'
    first bar, so neighbouring origins share their past forecasts), with its own seed
    (:func:`origin_seed` of the run ``seed``, the series' name and the origin)."""
    futures = [s.timestamps[o:o + pred_len] for s, o in requests]
    seeded = options.with_(seed=[origin_seed(seed, s.name, o) for s, o in requests])
    forecasts = forecast_series(predictor, [s.slice(None, o) for s, o in requests], seeded, futures)
    return [f.samples for f in forecasts]


def engine_batches(predictor: Any, batches: list[list[tuple[Series, int]]], config: EvaluationConfig,
                   options: ForecastOptions, engine: Engine) -> Iterator[list[np.ndarray]]:
    """Per batch of (series, origin row) requests, the (S, P, 6) sample paths of each, computed on
    ``engine`` by :func:`kronos.engines.run_batches`: each request with its series' whole history before the
    origin, its :func:`origin_seed` and ``options``."""
    from ..engines import SeriesTask, TaskSettings, run_batches

    tasks = [[SeriesTask(f"{s.name}\x00{o}", s.bars[:o], s.timestamps[:o], s.timestamps[o:o + config.pred_len],
                    origin_seed(config.seed, s.name, o)) for s, o in batch] for batch in batches]
    spec = TaskSettings(config.pred_len, options, samples=True)
    for batch, result in zip(tasks, run_batches(predictor, tasks, spec, **engine.options())):
        for task, (_, samples, reason, _) in zip(batch, result):
            if samples is None:
                raise RuntimeError(f"{task.id.replace(chr(0), ' at row ')}: {reason}")
        yield [samples for _, samples, _, _ in result]


class ModelRunner:
    """Batches walk-forward origins through the forecasting door (histories of equal length together), in
    this process or on ``engine``; each origin with its series' whole history before it and its own seed
    (:func:`origin_seed`)."""

    def __init__(self, predictor: Any, config: EvaluationConfig, progress: Callable[[int, int], None] | None = None,
                 engine: Engine | None = None):
        self.predictor, self.config, self.progress = predictor, config, progress
        self.engine = engine or Engine()
        self.seconds = 0.0
        self.options = model_options(predictor, config)

    def batches(self, origins: list[Origin]) -> list[list[Origin]]:
        """The model calls: ``batch_size`` origins each, histories of equal length and one series together."""
        ordered = sorted(origins, key=lambda o: (o.index - o.start, o.series, o.index))
        return [ordered[i:i + self.config.batch_size] for i in range(0, len(ordered), self.config.batch_size)]

    def run(self, by_name: dict[str, Series], origins: list[Origin]) -> dict[Origin, np.ndarray]:
        """(S, P, 6) sample paths per origin."""
        batches = self.batches(origins)
        requests = [[(by_name[o.series], o.index) for o in batch] for batch in batches]
        if self.engine.name == "local":
            results: Any = (self._timed(r) for r in requests)
        else:
            results = engine_batches(self.predictor, requests, self.config, self.options, self.engine)
        started = time.perf_counter()
        out: dict[Origin, np.ndarray] = {}
        for batch, paths in zip(batches, results):
            out.update(zip(batch, paths))
            if self.progress is not None:
                self.progress(len(out), len(origins))
        if self.engine.name != "local":
            self.seconds += time.perf_counter() - started
        return out

    def _timed(self, requests: list[tuple[Series, int]]) -> list[np.ndarray]:
        started = time.perf_counter()
        paths = forecast_requests(self.predictor, requests, self.config.pred_len, self.options, self.config.seed)
        self.seconds += time.perf_counter() - started
        return paths
