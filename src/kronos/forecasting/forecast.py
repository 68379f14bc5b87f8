"""The forecasting door: series and :class:`~kronos.forecasting.options.ForecastOptions` in, forecasts out.

:func:`forecast_series` is the one way from bars to a :class:`~kronos.forecasting.result.Forecast`, for any
backend. A backend (:class:`kronos.forecasting.predictor.KronosPredictor` on PyTorch,
:class:`kronos.onnx.OnnxPredictor` on ONNX Runtime) supplies only the sample paths of some series
(:class:`Backend`); everything else happens here, the same for both: cutting each history to the lookback,
per-series random streams, calibration from forecasts at past origins (made once, kept in the backend's
:class:`~kronos.forecasting.past_forecasts.PastForecasts`), the rescaling of the paths, their pool with the
baselines (:mod:`kronos.forecasting.combination`), the repair into valid candles and the Forecast. NumPy only.

``forecast_batch``, ``forecast``, ``forecast_df``, ``predict`` and ``predict_batch`` of both predictors, the
command line, the universe job, evaluation, the backtest and the service all come through here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from ..bars import CLOSE, FEATURE_COLUMNS, NORM_EPS, PRICE_INDICES
from ..data.candles import valid_candles
from ..data.features import Normalizer
from .calibration import Calibration, fit_scale, fit_shrink, minimum_history, recentre, rescale_paths
from .calibration import plan_origins as plan_calibration_origins
from .inputs import SeriesInput, from_arrays, from_series
from .options import ForecastOptions
from .past_forecasts import PastForecasts, past_key, past_seed
from .result import Forecast
from .sampling import SamplingConfig

if TYPE_CHECKING:
    from .combination import Baselines

NON_NEGATIVE = [FEATURE_COLUMNS.index(c) for c in ("volume", "amount")]

log = logging.getLogger("kronos.forecasting.predictor")


class ForecastCancelled(RuntimeError):
    """Raised between generation steps when the ``should_stop`` callback of a forecast says so."""


class Backend(Protocol):
    """What a backend gives the door: its settings, a store of past forecasts, and sample paths.

    ``random_stream(seed, rows)``: the stream of a whole batch (``seed`` None, an int or a generator);
    ``series_streams(seeds, rows)``: one stream per series (``rows`` paths each); ``sample_paths`` returns,
    per series, (samples, pred_len, 6) float32 paths in input units from its history as given;
    ``network_identity()``: what a past forecast depends on besides its bars and sampling (the weights, how
    they run).
    """

    lookback: int
    max_context: int
    clip: float
    past_forecasts: PastForecasts
    calibration_paths: int
    calibration_origins: int

    def random_stream(self, seed: Any, rows: int) -> Any: ...

    def series_streams(self, seeds: Sequence[int], rows: int) -> Any: ...

    def network_identity(self) -> tuple[Any, ...]: ...

    def sample_paths(self, series: list[SeriesInput], sampling: SamplingConfig, samples: int, streams: Any, *,
                     use_cache: bool, verbose: bool, dequantise: bool,
                     should_stop: Callable[[], bool] | None) -> list[np.ndarray]: ...


# -- shared pieces of every backend's sampling ----------------------------------------------------------

def dequantise_bars(z: np.ndarray, residual: np.ndarray, norm: Normalizer) -> np.ndarray:
    """Normalised bars z (S, P, 6) plus drawn residuals (S, P, 6). The four prices move by one amount in
    input units, the close's residual, so that each bar keeps its shape; volume and amount take their own."""
    out = z + residual
    scale = norm.std[:4] + np.float32(NORM_EPS)
    shift = residual[..., CLOSE:CLOSE + 1] * scale[CLOSE]  # (S, P, 1) in price units
    out[..., :4] = z[..., :4] + shift / scale
    return out


def to_input_units(norm: Normalizer, z: np.ndarray) -> np.ndarray:
    """Normalised paths (S, P, 6) back in input units, volume and amount clipped at 0."""
    values = norm.inverse(z)
    for j in NON_NEGATIVE:
        values[..., j] = np.maximum(values[..., j], 0)
    return values


def stopping(progress: Callable[[int, int], None] | None,
             should_stop: Callable[[], bool] | None) -> Callable[[int, int], None] | None:
    """The per-step callback: ``progress`` (if any), after raising ForecastCancelled when ``should_stop()``."""
    if should_stop is None:
        return progress

    def step(done: int, total: int) -> None:
        if should_stop():
            raise ForecastCancelled(f"forecast stopped after {done} of {total} steps")
        if progress is not None:
            progress(done, total)

    return step


# -- the door -------------------------------------------------------------------------------------------

def forecast_series(backend: Backend, series: Sequence[Any], options: ForecastOptions | None = None,
                    futures: Sequence[Any] | None = None) -> list[Forecast]:
    """Forecast every series with ``backend`` as ``options`` say (defaults: :class:`ForecastOptions`).

    ``series``: :class:`~kronos.forecasting.inputs.SeriesInput` items, or :class:`kronos.data.tables.Series`
    or ``(bars, timestamps)`` pairs with ``futures``, the timestamps of each series' bars to forecast
    (:func:`kronos.forecasting.inputs.future_of` makes them from a calendar). Returns one Forecast per
    series, in order.
    """
    options = options or ForecastOptions()
    inputs = _inputs(series, futures)
    n = len(inputs)
    given = _given_calibrations(options.calibration, [s.pred_len for s in inputs]) if options.calibrate \
        else [None] * n
    lookback = options.lookback or backend.lookback
    if not options.per_series_seeds:
        return _forecast(backend, inputs, backend.random_stream(options.seed, options.sample_count), given, options,
                         lookback, [options.seed] * n)
    seeds = options.seed
    if len(seeds) != n:
        raise ValueError(f"seed has {len(seeds)} entries for {n} series")
    out: list[Forecast | None] = [None] * n
    pred_lens = [s.pred_len for s in inputs]
    for length in sorted(set(pred_lens)):  # series of one pred_len share every generation step
        idx = [i for i in range(n) if pred_lens[i] == length]
        streams = backend.series_streams([seeds[i] for i in idx], options.sample_count)
        part = _forecast(backend, [inputs[i] for i in idx], streams, [given[i] for i in idx], options, lookback,
                         [seeds[i] for i in idx])
        for i, forecast in zip(idx, part):
            out[i] = forecast
    return out  # type: ignore[return-value]


def _inputs(series: Sequence[Any], futures: Sequence[Any] | None) -> list[SeriesInput]:
    if len(series) == 0:
        raise ValueError("no series to forecast")
    if futures is None:
        if not all(isinstance(s, SeriesInput) for s in series):
            raise TypeError("futures= is required unless every series is a SeriesInput")
        return list(series)
    if len(futures) != len(series):
        raise ValueError(f"{len(series)} series but {len(futures)} futures")
    out = []
    for i, (s, future) in enumerate(zip(series, futures)):
        if isinstance(s, tuple):
            out.append(from_arrays(s[0], s[1], future, name=f"series[{i}] bars"))
        else:
            out.append(from_series(s, future))
    return out


def _given_calibrations(calibration: Any, pred_lens: list[int]) -> list[Calibration | None]:
    """Per series, the fitted calibration given for it (None: fit one), checked against its pred_len."""
    n = len(pred_lens)
    if calibration is None or isinstance(calibration, Calibration):
        given = [calibration] * n
    else:
        given = list(calibration)
        if len(given) != n:
            raise ValueError(f"calibration has {len(given)} entries for {n} series")
    for i, (c, p) in enumerate(zip(given, pred_lens)):
        if c is not None and len(c.scale) != p:
            raise ValueError(f"calibration{'' if n == 1 else f'[{i}]'} has {len(c.scale)} scale factors for "
                             f"pred_len {p}")
    return given


def _truncate(backend: Backend, series: list[SeriesInput], lookback: int) -> list[SeriesInput]:
    """Each series' last ``lookback`` bars; says once (logging) that longer histories are cut."""
    longest = max(len(s.bars) for s in series)
    if longest > lookback and not getattr(backend, "_said_lookback", False):
        log.info("forecast() feeds the network the last %d bars of each history (the model's lookback) and "
                 "normalises on them; earlier bars serve only calibration (a history of %d bars was given)",
                 lookback, longest)
        backend._said_lookback = True
    return [s.tail(lookback) if len(s.bars) > lookback else s for s in series]


def _forecast(backend: Backend, series: list[SeriesInput], streams: Any, given: list[Calibration | None],
              options: ForecastOptions, lookback: int, seeds: list[Any]) -> list[Forecast]:
    """Sample, calibrate (when asked), pool with the baselines (``options.pools``; ``seeds``: each series'
    seed, see :func:`_pool_salts`) and, with ``valid``, repair every bar
    (:func:`kronos.data.candles.valid_candles`) as the very last step."""
    used = _truncate(backend, series, lookback) if options.truncate else series
    paths = backend.sample_paths(used, options.sampling, options.sample_count, streams, use_cache=options.use_cache,
                                 verbose=options.verbose, dequantise=options.dequantise,
                                 should_stop=options.should_stop)
    finish = valid_candles if options.valid else (lambda p: p)
    levels = options.quantiles
    if not options.calibrate:
        return [Forecast(finish(p), s.y_index, levels) for p, s in zip(paths, series)]
    bases = _baselines(series, options, given)
    todo = [i for i, c in enumerate(given) if c is None]
    fitted = fit_calibrations(backend, [series[i] for i in todo], options, lookback,
                              [bases[i] for i in todo]) if todo else []
    calibrations = list(given)
    for i, c in zip(todo, fitted):
        calibrations[i] = c
    salts = _pool_salts(seeds) if any(b is not None for b in bases) else seeds
    forecasts = []
    for p, s, c, base, salt in zip(paths, series, calibrations, bases, salts):
        if not c.applied:
            log.info("no calibration: %s", c.note)
        else:
            p = rescale_paths(p, c.scale, PRICE_INDICES, CLOSE, float(s.bars[-1, CLOSE]), c.shrink)
        if base is not None and c.weights:
            from .combination import combined_paths

            p = combined_paths(p, s.bars[:, CLOSE], base, c.combination, c.follow, salt)
        forecasts.append(Forecast(finish(p), s.y_index, levels, calibration=c))
    return forecasts


def _baselines(series: list[SeriesInput], options: ForecastOptions,
               given: list[Calibration | None]) -> list[Baselines | None]:
    """Per series, what its baselines need (:class:`~kronos.forecasting.combination.Baselines`, from its whole
    history's closes) where its paths are pooled: ``options.pools`` and a calibration to fit or one given
    with weights; else None."""
    if not options.pools:
        return [None] * len(series)
    from .combination import Baselines

    return [Baselines.of(s.bars[:, CLOSE]) if c is None or c.weights else None for s, c in zip(series, given)]


def _pool_salts(seeds: list[Any]) -> list[int]:
    """Per series, the salt of its baselines' draws in the pool, from its seed (after its paths were drawn):
    an int seed is its own salt (the history's closes tell the series apart, so its pool does not depend on
    the batch); a ``numpy.random.Generator`` gives a number drawn from it, a ``torch.Generator`` the seed it
    was seeded with (``initial_seed()``, so ``torch.Generator().manual_seed(5)`` forecasts as ``seed=5`` does);
    None a fresh number."""
    out: list[int] = []
    drawn: dict[int, int] = {}  # one salt per generator object: a batch shares its stream
    for seed in seeds:
        if seed is None or isinstance(seed, (int, np.integer)):
            out.append(int(np.random.SeedSequence().entropy) if seed is None else int(seed))
            continue
        if id(seed) not in drawn:
            if isinstance(seed, np.random.Generator):
                drawn[id(seed)] = int(seed.integers(2**62))
            else:
                drawn[id(seed)] = int(seed.initial_seed())
        out.append(drawn[id(seed)])
    return out


# -- calibration from past origins ----------------------------------------------------------------------

def _past_settings(backend: Backend, options: ForecastOptions, lookback: int) -> tuple[Any, ...]:
    """What a past forecast depends on besides its bars: the network and how it runs, the sampling options,
    the paths drawn and the calibration seed (last)."""
    sampling = options.sampling
    return (*backend.network_identity(), backend.max_context, lookback, backend.clip, sampling.temperature,
            sampling.top_k, sampling.top_p, options.use_cache, options.dequantise, backend.calibration_paths,
            options.calibration_seed)


def _past_closes(backend: Backend, series: list[SeriesInput], plans: list[list[int]], settings: tuple[Any, ...],
                 options: ForecastOptions, lookback: int) -> list[list[np.ndarray]]:
    """Per series, the (S, P) close paths of its past origins ``plans[i]``: from the backend's
    ``past_forecasts`` where already made, else forecast (all missing ones of one horizon in one batch),
    each drawn with its own seed derived from its key, and stored."""
    keys = [[_past_key(s, end, lookback, settings) for end in ends] for s, ends in zip(series, plans)]
    found: dict[bytes, np.ndarray] = {}
    missing: dict[bytes, SeriesInput] = {}
    for s, ends, row in zip(series, plans, keys):
        for end, key in zip(ends, row):
            if key in found or key in missing:
                continue
            closes = backend.past_forecasts.get(key)
            if closes is None:
                missing[key] = s.past_origin(end, lookback)
            else:
                found[key] = closes
    samples = backend.calibration_paths
    for length in sorted({p.pred_len for p in missing.values()}):
        group = [k for k, p in missing.items() if p.pred_len == length]
        streams = backend.series_streams([past_seed(missing[k].bars, missing[k].x_index, missing[k].y_index,
                                                    settings[-1]) for k in group], samples)
        paths = backend.sample_paths([missing[k] for k in group], options.sampling, samples, streams,
                                     use_cache=options.use_cache, verbose=False, dequantise=options.dequantise,
                                     should_stop=options.should_stop)
        for key, p in zip(group, paths):
            found[key] = np.ascontiguousarray(p[..., CLOSE])
            backend.past_forecasts.put(key, found[key])
    return [[found[k] for k in row] for row in keys]


def _past_key(s: SeriesInput, end: int, lookback: int, settings: tuple[Any, ...]) -> bytes:
    start = max(0, end - lookback)
    return past_key(s.bars[start:end], s.x_index[start:end], s.x_index[end:end + s.pred_len], settings[-1], settings)


def fit_calibrations(backend: Backend, series: list[SeriesInput], options: ForecastOptions, lookback: int,
                     bases: Sequence[Baselines | None] | None = None) -> list[Calibration]:
    """Per series, spread factors from forecasts at past origins inside its history (see
    :mod:`kronos.forecasting.calibration`); past forecasts not made before go through the network together.
    With ``options.pools`` also the weights of the pool with the baselines and the spread's move toward
    GARCH-t's, fitted on the same past origins (:func:`kronos.forecasting.combination.fit_combination`;
    ``bases``: each series' :class:`~kronos.forecasting.combination.Baselines`, made here when not given;
    None in it: no pool for that series)."""
    if bases is None:
        bases = _baselines(series, options, [None] * len(series))
    plans = [plan_calibration_origins(len(s.bars), s.pred_len, lookback, backend.calibration_origins)
             for s in series]
    settings = _past_settings(backend, options, lookback)
    past = _past_closes(backend, series, plans, settings, options, lookback)
    out = []
    for s, ends, paths, base in zip(series, plans, past, bases):
        if not ends:
            need = minimum_history(s.pred_len, lookback)
            out.append(Calibration.skipped(s.pred_len, f"history of {len(s.bars)} bars is too short to "
                                                       f"calibrate {s.pred_len} steps: it needs {need}"))
            continue
        closes = np.stack(paths).astype(np.float32)  # (K, S, P)
        realised = np.stack([s.bars[end:end + s.pred_len, CLOSE] for end in ends])  # (K, P)
        last = np.array([s.bars[end - 1, CLOSE] for end in ends], dtype=np.float64)
        shrink = fit_shrink(closes, realised, last)
        closes = recentre(closes, last[:, None, None], shrink)
        scale = fit_scale(closes, realised)
        weights, follow = (), 0.0
        if base is not None:
            from .combination import fit_combination

            weights, follow = fit_combination(base, s.bars[:, CLOSE], ends, closes, scale, realised, last,
                                              options.calibration_seed)
        out.append(Calibration(scale, len(ends), shrink=shrink, paths_per_origin=backend.calibration_paths,
                               ends=tuple(ends), weights=weights, follow=follow))
    return out


def forecast_frame(backend: Backend, series: Sequence[Any], pred_len: int, options: ForecastOptions | None = None,
                   *, freq: str | None = None, calendar: str | None = None, id_column: str | None = None,
                   float32: bool = False, label: str = "name") -> pd.DataFrame:
    """Forecast :class:`kronos.data.tables.Series` into one tidy frame: each series' ``pred_len`` future
    timestamps from its calendar (``freq``, ``calendar`` as :func:`kronos.data.calendar.future_timestamps`;
    a failure names the series by its ``label`` attribute), then :func:`kronos.forecasting.inputs.tidy_frame`
    (``id_column``: the label of the symbol column, when the series came from a long table)."""
    from .inputs import future_of, tidy_frame

    futures = [future for future, _ in future_of(series, pred_len, freq, calendar, label=label)]
    forecasts = forecast_series(backend, series, options, futures)
    return tidy_frame(forecasts, [s.name for s in series], id_column, float32=float32)
