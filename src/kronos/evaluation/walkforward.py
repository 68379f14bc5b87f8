"""Walk-forward evaluation: the model and the baselines forecast the same origins over the held-out tail of
each series (:mod:`kronos.evaluation.origins` plans them and runs the model), and are scored there.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.tables import ReadOptions, Series, check_unique_names, frame_to_series, load_series
from ..stats.garch import INSTALL_HINT, garch_available
from .baselines import CLOSE, VOLUME, MethodForecast, baseline_forecasts
from .metrics import score_origin
from .origins import (
    Engine,
    EvaluationConfig,
    ModelRunner,
    Origin,
    in_float64,
    plan_walk_origins,
)
from .outcomes import origin_statistics

log = logging.getLogger("kronos.evaluation")

MODEL = "kronos"
FAN_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass
class FanChart:
    """What a fan chart of one origin needs: recent history, realised and forecast closes."""

    series: str
    history_ts: list[str]
    history_close: list[float]
    future_ts: list[str]
    realised_close: list[float]
    quantiles: dict[str, dict[str, list[float]]]  # method -> quantile level -> (P,) closes


def collect_series(sources: Sequence[str | os.PathLike] | Mapping[str, pd.DataFrame] | Sequence[Series],
                options: ReadOptions | None = None, **keywords: Any) -> list[Series]:
    """Series to evaluate from files and folders (a file's series is named by its stem, a long file's by its
    symbols), a mapping name -> DataFrame, or ready :class:`Series`; names must be unique.

    Keywords are the reading options of :class:`kronos.data.tables.ReadOptions`.
    """
    opts = ReadOptions.of(options, **keywords)
    if isinstance(sources, Mapping):
        series = [s for name, frame in sources.items() for s in frame_to_series(frame, str(name), opts)]
    elif isinstance(sources, (str, os.PathLike)):
        series = load_series([sources], opts)
    elif sources and all(isinstance(s, Series) for s in sources):
        series = list(sources)
    else:
        series = load_series(list(sources), opts) if sources else []
    if not series:
        raise ValueError("no series to evaluate")
    check_unique_names(series)
    return series


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
    why = f"not run: the optional 'arch' and 'threadpoolctl' packages are not installed ({INSTALL_HINT})"
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
    series = in_float64(series)
    origins, skipped = plan_walk_origins(series, config)
    if not origins:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        raise ValueError(f"no forecast origins in any series (lookback {config.lookback}, pred_len "
                         f"{config.pred_len}, tail_fraction {config.tail_fraction}): {reasons}")
    by_name = {s.name: s for s in series}
    started = time.perf_counter()
    runner = ModelRunner(predictor, config, progress, engine) if predictor is not None else None
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
        first = config.baseline_start(o)  # the baselines see only bars before the origin
        methods = baseline_forecasts(s.bars[first:o.index], s.timestamps[first:o.index], future_ts,
                                     config.sample_count, rng,
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
