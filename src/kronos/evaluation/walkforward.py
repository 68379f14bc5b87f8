"""Walk-forward evaluation: forecast origins over the held-out tail of each series, model and baselines
scored on the same origins.

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
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..bars import CLOSE, FEATURE_COLUMNS, VOLUME
from ..data.features import check_count
from ..data.tables import ReadOptions, Series, frame_to_series
from ..data.tables import load_series as read_tables
from .baselines import MethodForecast, baseline_forecasts
from .garch import INSTALL_HINT, garch_available
from .metrics import score_origin
from .outcomes import origin_statistics

log = logging.getLogger("kronos.evaluation")

MODEL = "kronos"
SAMPLING_SETTINGS = ("T", "top_k", "top_p", "calibrate", "dequantise")
FAN_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


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
    vol_window: N, most recent log returns for the drift, volatility, bootstrap and GARCH baselines (None:
    the whole history).
    batch_size: origins per model call. seed: seeds the model and the baselines (per origin; see
    :func:`origin_seed`) and the calibration's past forecasts (``calibration_seed``).
    T, top_k, top_p, calibrate, dequantise: sampling settings passed to ``predictor.forecast_batch`` by keyword; None
    (the default) passes nothing, so the predictor's own default applies.
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

    def __post_init__(self) -> None:
        for name in ("lookback", "pred_len", "sample_count", "batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("stride", "max_origins", "min_history", "vol_window"):
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
        for name in ("calibrate", "dequantise"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be True, False or None, got {value!r}")

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampling settings that are set (not None), as keywords for ``forecast_batch``."""
        return {name: getattr(self, name) for name in SAMPLING_SETTINGS if getattr(self, name) is not None}

    @property
    def step(self) -> int:
        return self.stride or self.pred_len

    @property
    def history_floor(self) -> int:
        return min(self.min_history or 64, self.lookback)


@dataclass(frozen=True)
class Origin:
    series: str
    index: int  # first forecast bar
    start: int  # first history bar


@dataclass
class FanChart:
    """What a fan chart of one origin needs: recent history, realised and forecast closes."""

    series: str
    history_ts: list[str]
    history_close: list[float]
    future_ts: list[str]
    realised_close: list[float]
    quantiles: dict[str, dict[str, list[float]]]  # method -> quantile level -> (P,) closes


def load_series(sources: Sequence[str | os.PathLike] | Mapping[str, pd.DataFrame] | Sequence[Series],
                options: ReadOptions | None = None, **keywords: Any) -> list[Series]:
    """Series to evaluate from files and folders (a file's series is named by its stem, a long file's by its
    symbols), a mapping name -> DataFrame, or ready :class:`Series`; names must be unique.

    Keywords are the reading options of :class:`kronos.data.tables.ReadOptions`.
    """
    opts = ReadOptions.of(options, **keywords)
    if isinstance(sources, Mapping):
        series = [s for name, frame in sources.items() for s in frame_to_series(frame, str(name), opts)]
    elif isinstance(sources, (str, os.PathLike)):
        series = read_tables([sources], opts)
    elif sources and all(isinstance(s, Series) for s in sources):
        series = list(sources)
    else:
        series = read_tables(list(sources), opts) if sources else []
    if not series:
        raise ValueError("no series to evaluate")
    names = [s.name for s in series]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"series names must be unique; repeated: {', '.join(duplicates)}")
    return series


def _in_float64(series: Sequence[Series]) -> list[Series]:
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
    """The origins of ``series`` that walk-forward may use: after the test split (or ``config.start``) and the
    history floor, with ``config.pred_len`` bars after each."""
    n = len(series.bars)
    if config.start is not None:
        split = _first_at(series.timestamps, config.start)
    else:
        split = n - int(round(n * config.tail_fraction))  # the training pipeline's test split (split_by_time)
    first = max(split, config.history_floor)
    return range(first, n - config.pred_len + 1)


def plan_origins(series: Sequence[Series], config: EvaluationConfig) -> tuple[list[Origin], dict[str, str]]:
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


def engine_batches(predictor: Any, batches: list[list[tuple[Series, int]]], config: EvaluationConfig,
                   settings: dict[str, Any], engine: Engine) -> Iterator[list[np.ndarray]]:
    """Per batch of (series, origin row) requests, the (S, P, 6) sample paths of each, computed on
    ``engine`` by :func:`kronos.universe.run_batches`: each request with its series' whole history before the
    origin, its :func:`origin_seed` and the sampling ``settings`` (those unset take the predictor's
    defaults)."""
    from ..universe import _Settings, _Task, run_batches

    tasks = [[_Task(f"{s.name}\x00{o}", s.bars[:o], s.timestamps[:o], s.timestamps[o:o + config.pred_len],
                    origin_seed(config.seed, s.name, o)) for s, o in batch] for batch in batches]
    defaults = {name: p.default for name, p in inspect.signature(predictor.forecast_batch).parameters.items()}
    chosen = {name: settings.get(name, defaults.get(name)) for name in SAMPLING_SETTINGS}
    spec = _Settings(config.pred_len, config.sample_count, (), chosen["T"], chosen["top_k"], chosen["top_p"],
                     chosen["calibrate"], chosen["dequantise"], False,
                     calibration_seed=settings.get("calibration_seed", 0), samples=True,
                     lookback=settings.get("lookback"))
    for batch, result in zip(tasks, run_batches(predictor, tasks, spec, **engine.options())):
        for task, (_, samples, reason, _) in zip(batch, result):
            if samples is None:
                raise RuntimeError(f"{task.id.replace(chr(0), ' at row ')}: {reason}")
        yield [samples for _, samples, _, _ in result]


def origin_seed(seed: int, series: str, index: int) -> int:
    """The seed of the model's paths at one origin: a 63-bit hash of the run ``seed``, the series' name and
    the origin's row, so an origin's forecast does not depend on which origins share its batch or engine."""
    digest = hashlib.sha256(f"{int(seed)}\x00{series}\x00{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def model_settings(predictor: Any, config: EvaluationConfig) -> dict[str, Any]:
    """Keywords for ``predictor.forecast_batch``: the sampling settings that are set, and the run seed as
    the calibration seed where the predictor takes one."""
    settings = config.sampling
    check_accepts(predictor.forecast_batch, settings)
    if _accepts(predictor.forecast_batch, "calibration_seed"):
        settings["calibration_seed"] = int(config.seed)
    if _accepts(predictor.forecast_batch, "lookback"):  # never more than the model's own lookback
        own = getattr(predictor, "lookback", None)
        settings["lookback"] = min(config.lookback, own) if isinstance(own, int) else config.lookback
    return settings


def history_start(origin: int, config: EvaluationConfig, settings: dict[str, Any]) -> int:
    """First bar sent for an origin: the series' first when the predictor takes ``lookback`` (it forecasts
    from the last ``lookback`` bars and calibrates on earlier ones), else ``lookback`` bars back."""
    return 0 if "lookback" in settings else max(0, origin - config.lookback)


class _ModelRunner:
    """Batches origins through ``predictor.forecast_batch`` (histories of equal length together).

    Each origin is sent with its series' whole history before it (the predictor forecasts from the last
    ``lookback`` bars and calibrates on earlier ones, on a grid anchored to the series' first bar, so
    neighbouring origins share their past forecasts) and its own seed (:func:`origin_seed`)."""

    def __init__(self, predictor: Any, config: EvaluationConfig, progress: Callable[[int, int], None] | None = None,
                 engine: Engine | None = None):
        self.predictor, self.config, self.progress = predictor, config, progress
        self.engine = engine or Engine()
        self.seconds = 0.0
        self.settings = model_settings(predictor, config)

    def batches(self, origins: list[Origin]) -> list[list[Origin]]:
        """The model calls: ``batch_size`` origins each, histories of equal length and one series together."""
        ordered = sorted(origins, key=lambda o: (o.index - o.start, o.series, o.index))
        return [ordered[i:i + self.config.batch_size] for i in range(0, len(ordered), self.config.batch_size)]

    def run(self, by_name: dict[str, Series], origins: list[Origin]) -> dict[Origin, np.ndarray]:
        """(S, P, 6) sample paths per origin."""
        if self.engine.name == "local":
            return self._run_local(by_name, origins)
        return self._run_engine(by_name, origins)

    def _run_engine(self, by_name: dict[str, Series], origins: list[Origin]) -> dict[Origin, np.ndarray]:
        """The same batches and seeds through :func:`kronos.universe.run_batches` (an actor pool on Ray)."""
        batches = self.batches(origins)
        requests = [[(by_name[o.series], o.index) for o in batch] for batch in batches]
        started = time.perf_counter()
        out: dict[Origin, np.ndarray] = {}
        for batch, result in zip(batches, engine_batches(self.predictor, requests, self.config, self.settings,
                                                         self.engine)):
            out.update(zip(batch, result))
            if self.progress is not None:
                self.progress(len(out), len(origins))
        self.seconds += time.perf_counter() - started
        return out

    def _run_local(self, by_name: dict[str, Series], origins: list[Origin]) -> dict[Origin, np.ndarray]:
        config = self.config
        out: dict[Origin, np.ndarray] = {}
        for batch in self.batches(origins):
            frames, x_ts, y_ts = [], [], []
            for o in batch:
                s = by_name[o.series]
                first = history_start(o.index, config, self.settings)
                frames.append(pd.DataFrame(s.bars[first:o.index], columns=list(FEATURE_COLUMNS)))
                x_ts.append(s.timestamps[first:o.index])
                y_ts.append(s.timestamps[o.index:o.index + config.pred_len])
            started = time.perf_counter()
            forecasts = self.predictor.forecast_batch(
                frames, x_ts, y_ts, pred_len=config.pred_len, sample_count=config.sample_count, quantiles=(),
                seed=[origin_seed(config.seed, o.series, o.index) for o in batch], **self.settings)
            self.seconds += time.perf_counter() - started
            out.update({o: f.samples for o, f in zip(batch, forecasts)})
            if self.progress is not None:
                self.progress(len(out), len(origins))
        return out


def _accepts(method: Callable[..., Any], name: str) -> bool:
    """Whether ``method`` takes the keyword ``name`` (or any keyword)."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def check_accepts(method: Callable[..., Any], settings: dict[str, Any]) -> None:
    """TypeError naming the settings that ``method`` has no parameter for (before any model time is spent)."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    missing = [name for name in settings if name not in parameters]
    if missing:
        raise TypeError(f"this predictor's forecast_batch does not accept {', '.join(missing)}; leave "
                        f"{'it' if len(missing) == 1 else 'them'} unset (None) to use its defaults")


@dataclass
class EvaluationRun:
    """Raw outcome of :func:`run_walkforward`: one record per (origin, method), fan chart data, timings
    and counts (``timing``), and ``notes``: method -> why it was not run."""

    config: EvaluationConfig
    records: pd.DataFrame
    fans: list[FanChart]
    skipped: dict[str, str]
    series: list[str]
    timing: dict[str, float] = field(default_factory=dict)
    model_name: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)


def _fan(s: Series, o: Origin, config: EvaluationConfig, methods: dict[str, MethodForecast]) -> FanChart:
    shown = max(o.start, o.index - 3 * config.pred_len)
    horizon = slice(o.index, o.index + config.pred_len)
    quantiles = {}
    for name, forecast in methods.items():
        if forecast.close is not None and len(forecast.close) > 1:
            levels = np.quantile(forecast.close, FAN_QUANTILES, axis=0)
            quantiles[name] = {f"{q:g}": row.tolist() for q, row in zip(FAN_QUANTILES, levels)}
    return FanChart(s.name, [str(t) for t in s.timestamps[shown:o.index]], s.bars[shown:o.index, CLOSE].tolist(),
                    [str(t) for t in s.timestamps[horizon]], s.bars[horizon, CLOSE].tolist(), quantiles)


def _fan_origins(origins: list[Origin], count: int) -> set[Origin]:
    """Up to ``count`` origins for fan charts: the middle origin of the first series, then of the next ones."""
    by_series: dict[str, list[Origin]] = {}
    for o in origins:
        by_series.setdefault(o.series, []).append(o)
    return {group[len(group) // 2] for group in list(by_series.values())[:count]}


def _garch_notes() -> dict[str, str]:
    """{"garch_t": why} when the GARCH baseline cannot run (logged once), else {}."""
    if garch_available():
        return {}
    why = f"not run: the optional 'arch' package is not installed ({INSTALL_HINT})"
    log.warning("garch_t baseline %s", why)
    return {"garch_t": why}


def run_walkforward(series: Sequence[Series], config: EvaluationConfig, predictor: Any | None = None,
                    fan_count: int = 4, model_name: str | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    engine: Engine | None = None) -> EvaluationRun:
    """Forecast every origin with the model (when ``predictor`` is given) and the baselines; score them.

    ``progress(done, total)`` is called after each model batch with the number of origins forecast so far.
    ``engine``: where the model's batches run (:class:`Engine`; default this process).

    Returns the per-(origin, method) records (columns ``series, origin, last_bar, history, method,
    fallback`` and the numbers of :func:`kronos.evaluation.metrics.score_origin`). ``timing`` holds
    seconds (total, model, each baseline with paths as ``seconds_<name>``) and ``garch_t_fallbacks``, the
    origins where GARCH could not be fitted and the Gaussian random walk stood in.
    """
    series = _in_float64(series)
    origins, skipped = plan_origins(series, config)
    if not origins:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        raise ValueError(f"no forecast origins in any series (lookback {config.lookback}, pred_len "
                         f"{config.pred_len}, tail_fraction {config.tail_fraction}): {reasons}")
    by_name = {s.name: s for s in series}
    started = time.perf_counter()
    runner = _ModelRunner(predictor, config, progress, engine) if predictor is not None else None
    notes = _garch_notes()
    model_paths = runner.run(by_name, origins) if runner is not None else {}
    fan_set = _fan_origins(origins, fan_count)
    index_of = {s.name: i for i, s in enumerate(series)}
    rows, fans, seconds, fallbacks = [], [], {}, Counter()
    for o in origins:
        s = by_name[o.series]
        history, future = s.bars[o.start:o.index], s.bars[o.index:o.index + config.pred_len]
        future_ts = s.timestamps[o.index:o.index + config.pred_len]
        rng = np.random.default_rng([config.seed, index_of[o.series], o.index])
        methods = baseline_forecasts(history, s.timestamps[o.start:o.index], future_ts, config.sample_count, rng,
                                     config.vol_window, past=(s.timestamps[:o.index], s.bars[:o.index, VOLUME]),
                                     garch="garch_t" not in notes, seconds=seconds)
        if o in model_paths:
            paths = model_paths[o]
            methods = {MODEL: MethodForecast(paths[..., CLOSE], paths[..., VOLUME], paths), **methods}
        volume_scale = float(history[:, VOLUME].mean())
        for name, forecast in methods.items():
            fallbacks[name] += forecast.fallback
            numbers = score_origin(forecast.close, forecast.volume, float(history[-1, CLOSE]), future[:, CLOSE],
                                   future[:, VOLUME], volume_scale, forecast.bars, realised_bars=future)
            numbers.update(origin_statistics(forecast.close, history, future))
            rows.append({"series": o.series, "origin": future_ts[0], "last_bar": s.timestamps[o.index - 1],
                         "history": o.index - o.start, "method": name, "fallback": forecast.fallback, **numbers})
        if o in fan_set:
            fans.append(_fan(s, o, config, methods))
    records = pd.DataFrame(rows)
    total = time.perf_counter() - started
    timing = {"seconds_total": total, "origins": float(len(origins)),
              **{f"seconds_{name}": value for name, value in seconds.items()}}
    if "garch_t" not in notes:
        timing["garch_t_fallbacks"] = float(fallbacks["garch_t"])
    if runner is not None:
        timing.update(seconds_model=runner.seconds, origins_per_second=len(origins) / max(runner.seconds, 1e-9))
    return EvaluationRun(config, records, fans, skipped, [s.name for s in series], timing, model_name, notes)
