"""Statistics of a backtest that tell skill from luck (numbers from :mod:`kronos.stats.significance`).

- ``ic``: per signal, the mean IC and RankIC over dates with their Newey–West t and p, standard deviation,
  information ratio (mean / std, per date) and hit rate (share of dates with a positive IC).
- ``ic_decay``: per signal and horizon h (bars), the mean RankIC and its Newey–West t against the return
  from the entry (the origin bar's open) to the close h - 1 bars later; where h exceeds the stride the
  outcomes of consecutive dates overlap, and the lags are at least ``ceil(h / stride) - 1``.
- ``sharpe``: per signal, book (``long_short``: top-k long / bottom-k short; ``long_only``: the top-k with
  dropout) and cost level (0, 5, 10, 20 bps): annualised Sharpe with its 95% circular-block-bootstrap
  interval, the probabilistic Sharpe ratio (probability the true Sharpe is above 0) and the deflated Sharpe
  ratio (the same against the best Sharpe expected from as many skill-less signals as were tried: every
  signal of the table at that book and cost), turnover, annual return, maximum drawdown.
- ``random``: the Sharpe ratios of ``random_seeds`` random signals traded with the backtest's own strategy
  and costs: their quantiles, and for each signal the share of random Sharpes at least as high (an
  empirical p-value); ``random_band``: the 5%, 50% and 95% quantiles of their equity at each date, drawn on
  the equity chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..bars import CLOSE, OPEN
from ..data.tables import Series
from ..stats.significance import (
    bootstrap_sharpe_interval,
    cross_sectional_ic,
    default_lags,
    deflated_sharpe,
    ic_summary,
    probabilistic_sharpe,
    sharpe,
)
from .accounting import Strategy, drawdown, simulate

COSTS_BPS = (0.0, 5.0, 10.0, 20.0)
DECAY_HORIZONS = (1, 2, 5, 10, 20)
RANDOM_SEEDS = 200
BAND = (0.05, 0.5, 0.95)


def _periods_per_year(dates: pd.DatetimeIndex, end: pd.Timestamp) -> float:
    years = max((end - dates[0]).total_seconds() / (365.25 * 86400), 1e-12)
    return len(dates) / years


def _net(equity: np.ndarray) -> np.ndarray:
    return np.diff(equity) / equity[:-1]


def ic_table(result: Any) -> pd.DataFrame:
    """Per signal: IC and RankIC summaries (``ic_*``, ``rank_ic_*``) over the dates."""
    rows = {}
    for name in result.ic.columns:
        row = {}
        for prefix, frame in (("ic", result.ic), ("rank_ic", result.rank_ic)):
            row.update({f"{prefix}_{k}": v for k, v in ic_summary(frame[name].to_numpy()).items()})
        rows[name] = row
    return pd.DataFrame(rows).T.rename_axis("signal")


def horizon_returns(series: Sequence[Series], plan: Any, horizon: int) -> np.ndarray:
    """(D, N) simple return from the origin bar's open to the close ``horizon - 1`` bars later (NaN when the
    series ends first or does not trade)."""
    out = np.full(plan.origins.shape, np.nan)
    for j, s in enumerate(series):
        for d in np.flatnonzero(plan.origins[:, j] >= 0):
            o = int(plan.origins[d, j])
            if o + horizon - 1 < len(s.bars) and s.bars[o, OPEN] > 0:
                out[d, j] = float(s.bars[o + horizon - 1, CLOSE]) / float(s.bars[o, OPEN]) - 1
    return out


def ic_decay(result: Any, series: Sequence[Series], horizons: Sequence[int] | None = None) -> pd.DataFrame:
    """Mean RankIC and its Newey–West t per signal and horizon (module docstring)."""
    step = result.config.step
    horizons = sorted({h for h in (horizons or DECAY_HORIZONS) if h <= max(20, step)} | {step})
    rows = []
    for h in horizons:
        realised = horizon_returns(series, result.plan, h)
        for name, frame in result.scores.items():
            _, rank_ic = cross_sectional_ic(np.where(result.plan.eligible, frame.to_numpy(), np.nan), realised)
            dates = int(np.isfinite(rank_ic).sum())
            summary = ic_summary(rank_ic, max(default_lags(dates), math.ceil(h / step) - 1))
            rows.append({"signal": name, "horizon": h, "rank_ic": summary["mean"], "t": summary["t"],
                         "p": summary["p"], "dates": summary["dates"]})
    return pd.DataFrame(rows, columns=["signal", "horizon", "rank_ic", "t", "p", "dates"])


def books(config: Any) -> dict[str, Strategy]:
    """The two books every signal is traded with: dollar-neutral long-short and long-only top-k."""
    return {"long_short": Strategy("long_short", config.k),
            "long_only": Strategy("topk_dropout", config.k, config.n_drop)}


def sharpe_table(result: Any, costs: Sequence[float] = COSTS_BPS, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per signal, book and cost: the Sharpe numbers of the module docstring."""
    plan, per_year = result.plan, _periods_per_year(result.plan.dates, result.plan.end)
    rows = []
    for book_name, strategy in books(result.config).items():
        for cost in costs:
            nets = {}
            for name, frame in result.scores.items():
                masked = np.where(plan.eligible, frame.to_numpy(), np.nan)
                book = simulate(masked, plan.realised, strategy, cost)
                nets[name] = (_net(book.equity), book)
            per_period = np.array([sharpe(n) for n, _ in nets.values()])
            variance = float(np.nanvar(per_period, ddof=1)) if np.isfinite(per_period).sum() > 1 else None
            trials = len(nets)
            for name, (net, book) in nets.items():
                lo, hi = bootstrap_sharpe_interval(net, per_year, reps=reps, seed=seed)
                years = len(net) / per_year
                rows.append({"signal": name, "book": book_name, "cost_bps": cost, "sharpe": sharpe(net, per_year),
                             "sharpe_lo": lo, "sharpe_hi": hi, "psr": probabilistic_sharpe(net),
                             "dsr": deflated_sharpe(net, trials, variance), "trials": trials,
                             "turnover": float(book.turnover.mean()),
                             "annual_return": float(book.equity[-1] ** (1 / years) - 1) if book.equity[-1] > 0
                             else -1.0, "max_drawdown": float(drawdown(book.equity).min())})
    return pd.DataFrame(rows)


def random_signals(result: Any, seeds: int = RANDOM_SEEDS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random signals (uniform scores, one generator per seed) traded with the backtest's strategy and cost:
    the quantiles of their Sharpe ratios with each signal's empirical p-value (``random``), and the
    quantiles of their equity per date (``random_band``, indexed like ``result.equity``)."""
    plan, config = result.plan, result.config
    per_year = _periods_per_year(plan.dates, plan.end)
    strategy = config.strategy_spec
    curves, sharpes = [], []
    for seed in range(seeds):
        scores = np.random.default_rng([config.seed, 7919, seed]).uniform(-1, 1, plan.origins.shape)
        book = simulate(np.where(plan.eligible, scores, np.nan), plan.realised, strategy, config.cost_bps)
        curves.append(book.equity)
        sharpes.append(sharpe(_net(book.equity), per_year))
    sharpes_arr = np.array(sharpes)
    finite = sharpes_arr[np.isfinite(sharpes_arr)]
    rows = []
    for name in result.metrics.index:
        value = float(result.metrics.loc[name, "sharpe"])
        p = float((finite >= value).mean()) if len(finite) and np.isfinite(value) else float("nan")
        rows.append({"signal": name, "sharpe": value, "random_p": p})
    quantiles = np.quantile(finite, BAND) if len(finite) else np.full(len(BAND), np.nan)
    table = pd.DataFrame(rows).set_index("signal")
    table.attrs = {"seeds": seeds, **{f"random_sharpe_q{round(q * 100)}": float(v) for q, v in zip(BAND, quantiles)}}
    band = pd.DataFrame(np.quantile(np.stack(curves), BAND, axis=0).T, index=result.equity.index,
                        columns=[f"q{round(q * 100)}" for q in BAND])
    return table, band


def analyse(result: Any, series: Sequence[Series] | None = None, random_seeds: int = RANDOM_SEEDS,
            reps: int = 2000) -> dict[str, pd.DataFrame]:
    """Every table of the module docstring for a :class:`kronos.backtest.BacktestResult` with its plan;
    ``ic_decay`` needs the ``series`` (their bars after each origin)."""
    if result.plan is None or result.ic.empty:
        return {}
    out = {"ic": ic_table(result), "sharpe": sharpe_table(result, reps=reps, seed=result.config.seed)}
    if series is not None:
        out["ic_decay"] = ic_decay(result, series)
    if random_seeds:
        out["random"], out["random_band"] = random_signals(result, random_seeds)
    return out
