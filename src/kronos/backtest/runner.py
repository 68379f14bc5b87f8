"""Walk-forward backtest of forecast signals over a universe of series.

Rebalance dates. An origin follows the rules of ``kronos evaluate`` (:mod:`kronos.evaluation.origins`):
the origin bar ``o`` of a series lies in its held-out tail (the last ``tail_fraction`` of its rows, the
test split of ``kronos train``) with its whole forecast horizon, the history is bars ``[o - lookback, o)``
(at least ``min_history``), and nothing at or after ``o`` is read to forecast or to score. A portfolio
needs one calendar, so the dates are one grid over the universe: the timestamps at which at least
``min_names`` series may have an origin, every ``stride``-th of them counted back from the last (for
series on one calendar this is evaluate's grid), the most recent ``max_dates`` kept. A series takes part
on a date when it has a bar exactly then.

Trading. The forecast is made with the bars before the origin; the trade executes at the origin bar's
open (the next bar's open after the last bar seen) and the position is held to the next rebalance date,
where it is valued at that date's open (or, for a series without a bar then, its last close before it).
The last date's positions are held ``stride`` bars of the calendar.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..bars import CLOSE, OPEN
from ..data.features import check_count
from ..data.tables import Series, check_unique_names
from ..evaluation.origins import (
    SAMPLING_SETTINGS,
    Engine,
    EvaluationConfig,
    engine_batches,
    forecast_requests,
    model_options,
    valid_range,
)
from ..stats.significance import cross_sectional_ic
from .accounting import (
    Book,
    Strategy,
    buy_and_hold_weights,
    drawdown,
    metrics,
    simulate,
)
from .signals import risk_scores
from .statistics import analyse

MODEL_SIGNALS = ("expected_return", "median_return", "prob_up", "return_to_vol")
BASELINE_SIGNALS = ("momentum", "reversal", "random")
BENCHMARK = "buy_and_hold"


@dataclass(frozen=True)
class BacktestConfig:
    """What to backtest. Bars are rows of each series.

    lookback, pred_len, sample_count, tail_fraction, min_history, seed and the sampling settings (T, top_k,
    top_p, calibrate, dequantise, combine; None: the predictor's default) mean what they mean in
    :class:`kronos.evaluation.EvaluationConfig`. stride: calendar steps between rebalance dates (default
    ``pred_len``); the model's signals read the forecast ``min(stride, pred_len)`` bars ahead.
    max_dates: most recent rebalance dates kept (None: all). start, end: only rebalance dates in this time
    window (timestamps or ISO text; None: no bound). min_names: fewest series that must be able to
    trade on a date (default: 2, or 1 for a single series). strategy, k, n_drop, threshold: see
    :class:`kronos.backtest.Strategy`. commission_bps, slippage_bps: costs in basis points of traded value,
    charged on turnover. momentum_window, reversal_window: bars of past return for those baselines.
    batch_size: origins (of any dates and series) per model call.
    """

    lookback: int = 512
    pred_len: int = 24
    sample_count: int = 20
    stride: int | None = None
    max_dates: int | None = 20
    start: Any = None
    end: Any = None
    tail_fraction: float = 0.2
    min_history: int | None = None
    min_names: int | None = None
    seed: int = 0
    strategy: str = "topk_dropout"
    k: int = 5
    n_drop: int = 1
    threshold: float = 0.0
    commission_bps: float = 5.0
    slippage_bps: float = 0.0
    momentum_window: int = 20
    reversal_window: int = 5
    batch_size: int = 32
    T: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    calibrate: bool | None = None
    dequantise: bool | None = None
    combine: bool | None = None

    def __post_init__(self) -> None:
        _ = self.walk  # the walk-forward settings are checked by the evaluation's own config
        for name in ("momentum_window", "reversal_window", "batch_size"):
            check_count(name, getattr(self, name))
        for name in ("max_dates", "min_names"):
            if getattr(self, name) is not None:
                check_count(name, getattr(self, name))
        for name in ("commission_bps", "slippage_bps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e4:
                raise ValueError(f"{name}={value!r} is not a number of basis points in [0, 10000)")
        _ = self.strategy_spec
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None:
                try:
                    object.__setattr__(self, name, pd.Timestamp(value))
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{name}={value!r} is not a timestamp") from exc

    @property
    def walk(self) -> EvaluationConfig:
        """The same walk-forward rules as ``kronos evaluate``."""
        return EvaluationConfig(lookback=self.lookback, pred_len=self.pred_len, sample_count=self.sample_count,
                                stride=self.stride, max_origins=None, tail_fraction=self.tail_fraction,
                                min_history=self.min_history, seed=self.seed, batch_size=self.batch_size,
                                **{name: getattr(self, name) for name in SAMPLING_SETTINGS})

    @property
    def strategy_spec(self) -> Strategy:
        return Strategy(self.strategy, self.k, self.n_drop, self.threshold)

    @property
    def step(self) -> int:
        return self.stride or self.pred_len

    @property
    def cost_bps(self) -> float:
        return float(self.commission_bps) + float(self.slippage_bps)


@dataclass
class Plan:
    """Rebalance dates, the origin bar of each (date, series) (-1: not trading), entry and exit prices."""

    dates: pd.DatetimeIndex
    end: pd.Timestamp  # when the last date's positions are valued
    names: list[str]
    origins: np.ndarray  # (D, N) int
    realised: np.ndarray  # (D, N) simple return from entry to exit, NaN when not trading

    @property
    def eligible(self) -> np.ndarray:
        return self.origins >= 0


def _price_at(s: Series, when: pd.Timestamp) -> float:
    """The open of the bar at ``when``, else the last close before it (NaN before the first bar)."""
    i = int(s.timestamps.searchsorted(when, side="left"))
    if i < len(s) and s.timestamps[i] == when:
        return float(s.bars[i, OPEN])
    return float(s.bars[i - 1, CLOSE]) if i > 0 else float("nan")


def _inside(t: int, config: BacktestConfig) -> bool:
    return (config.start is None or t >= config.start.value) and (config.end is None or t <= config.end.value)


def plan_dates(series: Sequence[Series], config: BacktestConfig) -> Plan:
    """The rebalance dates and who trades on each (see the module docstring)."""
    walk = config.walk
    valid = {s.name: valid_range(s, walk) for s in series}
    counts = Counter(t for s in series for t in s.timestamps[valid[s.name]].asi8.tolist())
    need = config.min_names or min(2, len(series))
    kept = np.array(sorted(t for t, c in counts.items() if c >= need and _inside(t, config)), dtype=np.int64)
    if len(kept) == 0:
        window = "" if config.start is None and config.end is None else \
            f" between {config.start or 'the start'} and {config.end or 'the end'}"
        raise ValueError(f"no rebalance date: no timestamp{window} has {need} series with a forecast origin in their "
                         f"held-out tail (lookback {config.lookback}, pred_len {config.pred_len}, tail_fraction "
                         f"{config.tail_fraction})")
    chosen = kept[::-1][::config.step][::-1]
    if config.max_dates is not None:
        chosen = chosen[-config.max_dates:]
    dates = pd.DatetimeIndex(chosen.astype("datetime64[ns]"))
    # the last date's positions are valued ``stride`` steps later on the calendar of the series trading then
    final = [s for s in series if dates[-1] in s.timestamps]
    calendar = pd.DatetimeIndex(np.unique(np.concatenate([s.timestamps.asi8 for s in final])).astype("datetime64[ns]"))
    last = int(calendar.searchsorted(dates[-1]))
    end = calendar[min(last + config.step, len(calendar) - 1)]
    exits = list(dates[1:]) + [end]
    origins = np.full((len(dates), len(series)), -1, dtype=np.int64)
    realised = np.full((len(dates), len(series)), np.nan)
    for j, s in enumerate(series):
        where = s.timestamps.get_indexer(dates)
        for d, o in enumerate(where):
            if o >= 0 and o in valid[s.name]:
                origins[d, j] = o
                realised[d, j] = _price_at(s, exits[d]) / float(s.bars[o, OPEN]) - 1
    return Plan(dates, end, [s.name for s in series], origins, realised)


# -- signals -----------------------------------------------------------------------------------------------

def baseline_scores(series: Sequence[Series], plan: Plan, config: BacktestConfig) -> dict[str, np.ndarray]:
    """Momentum (past ``momentum_window``-bar return), short-term reversal (minus the past
    ``reversal_window``-bar return) and a seeded random score, from bars before each origin."""
    out = {name: np.full(plan.origins.shape, np.nan) for name in BASELINE_SIGNALS}
    for d in range(len(plan.dates)):
        draws = np.random.default_rng([config.seed, d]).uniform(-1, 1, len(series))
        for j, s in enumerate(series):
            o = plan.origins[d, j]
            if o < 0:
                continue
            close = s.bars[:o, CLOSE].astype(np.float64)
            if o - 1 - config.momentum_window >= 0:
                out["momentum"][d, j] = close[o - 1] / close[o - 1 - config.momentum_window] - 1
            if o - 1 - config.reversal_window >= 0:
                out["reversal"][d, j] = -(close[o - 1] / close[o - 1 - config.reversal_window] - 1)
            out["random"][d, j] = draws[j]
    return out


def path_signals(close_paths: np.ndarray, last_close: float, step: int) -> dict[str, float]:
    """The four model signals from (S, P) close paths: the return from the last close to the close
    ``step`` bars ahead: its mean, median, probability of being positive (minus 0.5, so 0 is neutral) and
    mean over standard deviation across paths."""
    ret = np.asarray(close_paths, dtype=np.float64)[:, step - 1] / last_close - 1
    spread = ret.std()
    return {"expected_return": float(ret.mean()), "median_return": float(np.median(ret)),
            "prob_up": float((ret > 0).mean() - 0.5),
            "return_to_vol": float(ret.mean() / spread) if spread > 0 else 0.0}


def forecast_origins(predictor: Any, requests: Sequence[tuple[Series, int]], config: BacktestConfig,
                     seed: int | None = None) -> list[np.ndarray]:
    """(S, P) close paths for each (series, origin) request, in one batch through the forecasting door
    (:func:`kronos.evaluation.origins.forecast_requests`).

    Each request is sent with its series' whole history before the origin (the predictor forecasts from
    the last ``lookback`` bars and calibrates on earlier ones, sharing past forecasts between origins)
    and its own seed, from the run seed, the series' name and the origin (``seed`` overrides the run
    seed). The one place the backtest calls the model: swap it for another batch runner with the same
    inputs and outputs to spread the work over machines.
    """
    run_seed = config.seed if seed is None else seed
    paths = forecast_requests(predictor, requests, config.pred_len, model_options(predictor, config.walk), run_seed)
    return [p[..., CLOSE] for p in paths]


def model_scores(predictor: Any, series: Sequence[Series], plan: Plan, config: BacktestConfig,
                 progress: Callable[[int, int], None] | None = None,
                 engine: Engine | None = None) -> dict[str, np.ndarray]:
    """The model's signals at every (date, series) that trades, in batches of ``batch_size`` origins taken
    date after date (several dates and series per model call), on ``engine`` (default this process). Each
    origin's paths depend only on the bars before it and its own seed, not on its batch or engine.
    ``progress(done, total)`` counts origins."""
    out = {name: np.full(plan.origins.shape, np.nan) for name in MODEL_SIGNALS}
    step = min(config.step, config.pred_len)
    cells = [(d, int(j)) for d in range(len(plan.dates)) for j in np.flatnonzero(plan.origins[d] >= 0)]
    batches = [cells[first:first + config.batch_size] for first in range(0, len(cells), config.batch_size)]
    requests = [[(series[j], int(plan.origins[d, j])) for d, j in batch] for batch in batches]
    if engine is None or engine.name == "local":
        results = (forecast_origins(predictor, r, config) for r in requests)
    else:
        results = ([p[..., CLOSE] for p in paths] for paths in engine_batches(
            predictor, requests, config.walk, model_options(predictor, config.walk), engine))
    done = 0
    for batch, batch_requests, paths in zip(batches, requests, results):
        done += len(batch)
        for (d, j), p, (s, o) in zip(batch, paths, batch_requests):
            for name, value in path_signals(p, float(s.bars[o - 1, CLOSE]), step).items():
                out[name][d, j] = value
        if progress is not None:
            progress(done, len(cells))
    return out


# -- results -----------------------------------------------------------------------------------------------

@dataclass
class BacktestResult:
    """Everything a backtest produced. DataFrames are indexed by rebalance date (``equity`` and
    ``drawdown`` also by the final valuation time; they start at 1 and 0).

    metrics: one row per signal (and ``buy_and_hold``): total_return, annual_return, annual_vol, sharpe,
    max_drawdown, turnover (mean two-way per rebalance), hit_rate, costs, rebalances, ic, rank_ic (means
    over dates), ic_dates. equity, drawdown: one column per signal. ic, rank_ic: per date, one column per
    signal. scores: signal -> (date x name) scores; realised: (date x name) returns held; weights:
    signal -> (date x name) target weights. timing: seconds for forecasting and for accounting.
    statistics: the tables of :func:`kronos.backtest.statistics.analyse` (IC tests, IC decay, Sharpe
    intervals, probabilistic and deflated Sharpe per book and cost, the random-signal distribution).
    """

    config: BacktestConfig
    metrics: pd.DataFrame
    equity: pd.DataFrame
    drawdown: pd.DataFrame
    ic: pd.DataFrame
    rank_ic: pd.DataFrame
    scores: dict[str, pd.DataFrame]
    realised: pd.DataFrame
    weights: dict[str, pd.DataFrame]
    timing: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model_name: str | None = None
    plan: Plan | None = None
    statistics: dict[str, pd.DataFrame] = field(default_factory=dict)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def write(self, out_dir: Any, chart: bool = True) -> list:
        """report.md, metrics.json, equity.csv, ic.csv and (with matplotlib / plotly) chart.png, chart.html."""
        from .report import write_report

        return write_report(self, out_dir, chart=chart)


def score_signals(scores: Mapping[str, np.ndarray | pd.DataFrame], plan: Plan, config: BacktestConfig,
                  timing: dict[str, float] | None = None, notes: Sequence[str] = (),
                  model_name: str | None = None) -> BacktestResult:
    """Trade each signal's scores with the config's strategy and costs, with the equal-weight buy-and-hold
    of the traded names beside them."""
    started = time.perf_counter()
    strategy = config.strategy_spec
    dates, names = plan.dates, plan.names
    frame = {name: pd.DataFrame(np.asarray(v, dtype=np.float64), index=dates, columns=names)
             for name, v in scores.items()}
    books: dict[str, Book] = {}
    for name, values in frame.items():
        # a name that cannot trade has no score, whatever the signal says
        masked = np.where(plan.eligible, values.to_numpy(), np.nan)
        books[name] = simulate(masked, plan.realised, strategy, config.cost_bps)
    hold = buy_and_hold_weights(plan.eligible, plan.realised)
    books[BENCHMARK] = simulate(np.zeros_like(plan.realised), plan.realised, strategy, config.cost_bps, weights=hold)
    index = dates.append(pd.DatetimeIndex([plan.end]))
    rows, ic, rank_ic = {}, {}, {}
    for name, book in books.items():
        row = metrics(book, dates, plan.end, plan.realised)
        if name in frame:
            ic[name], rank_ic[name] = cross_sectional_ic(np.where(plan.eligible, frame[name], np.nan),
                                                               plan.realised)
            row.update(ic=float(np.nanmean(ic[name])) if np.isfinite(ic[name]).any() else float("nan"),
                       rank_ic=float(np.nanmean(rank_ic[name])) if np.isfinite(rank_ic[name]).any()
                       else float("nan"), ic_dates=float(np.isfinite(ic[name]).sum()))
        rows[name] = row
    table = pd.DataFrame(rows).T
    table.index.name = "signal"
    equity = pd.DataFrame({name: b.equity for name, b in books.items()}, index=index)
    timing = dict(timing or {})
    timing["seconds_accounting"] = time.perf_counter() - started
    return BacktestResult(
        config, table, equity, equity.apply(lambda c: pd.Series(drawdown(c.to_numpy()), index=index)),
        pd.DataFrame(ic, index=dates), pd.DataFrame(rank_ic, index=dates), frame,
        pd.DataFrame(plan.realised, index=dates, columns=names),
        {name: pd.DataFrame(b.weights, index=dates, columns=names) for name, b in books.items()},
        timing, list(notes), model_name, plan)


def run(series: Sequence[Series], predictor: Any | None = None, config: BacktestConfig | None = None, *,
        extra_signals: Mapping[str, Callable[[Plan], np.ndarray]] | None = None,
        model_name: str | None = None, progress: Callable[[int, int], None] | None = None,
        engine: Engine | None = None, **settings: Any) -> BacktestResult:
    """Backtest the model's signals (when ``predictor`` is given) and the baselines over ``series``.

    ``config`` or keywords of :class:`BacktestConfig` (not both). ``extra_signals`` maps a name to a
    function of the :class:`Plan` returning (dates x names) scores, traded like the others (e.g. a signal
    of your own). ``progress(done, total)`` is called after each model batch with the origins forecast so far.
    ``engine``: where the model's batches run (:class:`kronos.evaluation.origins.Engine`; default this
    process), with the same results on each.
    """
    if config is not None and settings:
        raise TypeError("give either config or keywords of BacktestConfig, not both")
    config = config or BacktestConfig(**settings)
    series = list(series)
    if not series:
        raise ValueError("series is empty: nothing to backtest")
    check_unique_names(series)
    started = time.perf_counter()
    plan = plan_dates(series, config)
    scores: dict[str, np.ndarray] = {}
    timing = {"dates": float(len(plan.dates)), "names": float(len(series)),
              "positions": float(plan.eligible.sum())}
    if predictor is not None:
        model_started = time.perf_counter()
        scores.update(model_scores(predictor, series, plan, config, progress, engine))
        timing["seconds_forecasting"] = time.perf_counter() - model_started
    scores.update(baseline_scores(series, plan, config))
    risk, risk_notes = risk_scores(series, plan, config)
    scores.update(risk)
    for name, make in (extra_signals or {}).items():
        values = np.asarray(make(plan), dtype=np.float64)
        if values.shape != plan.origins.shape:
            raise ValueError(f"extra_signals[{name!r}] returned shape {values.shape}; expected "
                             f"{plan.origins.shape} (dates x names)")
        scores[name] = values
    timing["seconds_signals"] = time.perf_counter() - started - timing.get("seconds_forecasting", 0.0)
    notes = list(risk_notes)
    dropped = [s.name for j, s in enumerate(series) if not plan.eligible[:, j].any()]
    if dropped:
        notes.append(f"never on a rebalance date (no origin in the held-out tail then): {', '.join(dropped)}")
    result = score_signals(scores, plan, config, timing, notes, model_name)
    statistics_started = time.perf_counter()
    result.statistics = analyse(result, series)
    result.timing["seconds_statistics"] = time.perf_counter() - statistics_started
    result.timing["seconds_total"] = time.perf_counter() - started
    return result
