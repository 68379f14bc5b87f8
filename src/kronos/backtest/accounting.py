"""Portfolio accounting on rebalance dates: strategies turn scores into target weights, weights and period
returns into an equity curve after costs, and the curve into the usual numbers. Pure numpy/pandas.

Conventions. ``scores`` and ``returns`` are (D, N) arrays over rebalance dates and names; NaN in ``scores``
means the name cannot be traded on that date (not eligible). ``returns[d, j]`` is name j's simple return
from its entry price on date d (the open of the first bar at or after the date) to its price on date d+1.
Weights are fractions of equity (a long-short book has gross exposure 1: +1/2 long, -1/2 short; the
cash it frees earns nothing). Between rebalances weights drift with the returns. At each rebalance the
cost is ``cost_bps / 1e4 * turnover`` of equity, with ``turnover = sum_j |w_target - w_drifted|``
(two-way: selling 10% and buying 10% is 0.2), charged before the period's return:

    equity[d+1] = equity[d] * (1 - cost * turnover[d]) * (1 + sum_j w[d, j] * returns[d, j])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

STRATEGIES = ("topk_dropout", "long_short", "long_flat", "long_short_threshold")


@dataclass(frozen=True)
class Strategy:
    """How scores become weights.

    kind: ``topk_dropout`` (hold ``k`` names equally at first; at each rebalance sell at most ``n_drop``
    of the held names that rank lowest among held and best-unheld candidates, buy as many of the best
    unheld; kept names keep their drifted weight, the sold weight is shared equally by the bought names),
    ``long_short`` (+1/(2k) on the ``k`` best, -1/(2k) on the ``k`` worst, rebuilt every date, dollar
    neutral), ``long_flat`` (each eligible name gets 1/N when its score is above ``threshold``, else 0),
    ``long_short_threshold`` (+1/N above ``threshold``, -1/N at or below). The threshold strategies are
    the single-series strategies; on a universe they split equity equally over the eligible names.
    """

    kind: str = "topk_dropout"
    k: int = 5
    n_drop: int = 1
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.kind!r}")
        for name in ("k", "n_drop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (1 if name == "k" else 0):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'k' else 0}, got {value!r}")


def _ranked(scores: np.ndarray, names: np.ndarray) -> np.ndarray:
    """Indices of ``names`` by descending score; ties broken by index (stable)."""
    return names[np.argsort(-scores[names], kind="stable")]


def _topk_dropout(scores: np.ndarray, drifted: np.ndarray, k: int, n_drop: int) -> np.ndarray:
    eligible = np.flatnonzero(np.isfinite(scores))
    held = [j for j in np.flatnonzero(drifted > 0) if np.isfinite(scores[j])]  # ineligible names are sold
    if not held:
        target = np.zeros_like(drifted)
        top = _ranked(scores, eligible)[:k]
        target[top] = 1.0 / len(top) if len(top) else 0.0
        return target
    held_arr = np.array(held)
    unheld = np.setdiff1d(eligible, held_arr)
    candidates = _ranked(scores, unheld)[:max(0, n_drop + k - len(held))]
    combined = _ranked(scores, np.concatenate([held_arr, candidates]))
    bottom = set(combined[len(combined) - n_drop:].tolist()) if n_drop else set()
    sell = [j for j in held if j in bottom]
    buy = candidates[:max(0, len(sell) + k - len(held))]
    target = np.zeros_like(drifted)
    keep = [j for j in held if j not in bottom]
    target[keep] = drifted[keep]
    freed = 1.0 - target.sum()
    if len(buy):
        target[buy] = freed / len(buy)
    elif target.sum() > 0:
        target /= target.sum()  # nothing to buy: the freed weight goes back to the kept names
    return target


def _long_short(scores: np.ndarray, k: int) -> np.ndarray:
    eligible = np.flatnonzero(np.isfinite(scores))
    k = min(k, len(eligible) // 2)
    target = np.zeros(len(scores))
    if k == 0:
        return target
    order = _ranked(scores, eligible)
    target[order[:k]] = 0.5 / k
    target[order[-k:]] = -0.5 / k
    return target


def _threshold(scores: np.ndarray, threshold: float, short: bool) -> np.ndarray:
    eligible = np.isfinite(scores)
    target = np.zeros(len(scores))
    if not eligible.any():
        return target
    share = 1.0 / eligible.sum()
    up = eligible & (np.where(eligible, scores, -np.inf) > threshold)
    target[up] = share
    if short:
        target[eligible & ~up] = -share
    return target


def target_weights(strategy: Strategy, scores: np.ndarray, drifted: np.ndarray) -> np.ndarray:
    """Target weights of one rebalance date from its scores (N,) and the drifted weights held before it."""
    if strategy.kind == "topk_dropout":
        return _topk_dropout(scores, drifted, strategy.k, strategy.n_drop)
    if strategy.kind == "long_short":
        return _long_short(scores, strategy.k)
    return _threshold(scores, strategy.threshold, short=strategy.kind == "long_short_threshold")


def _drift(weights: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """Weights after one period: each position grows with its return, equity with the portfolio's."""
    r = np.nan_to_num(returns)
    grown = weights * (1 + r)
    equity = 1 + float(weights @ r)
    return grown / equity if equity > 0 else np.zeros_like(weights)


@dataclass
class Book:
    """The outcome of :func:`simulate`: per date target weights (D, N), turnover, cost and return (D,), and
    the equity (D + 1,) starting at 1."""

    weights: np.ndarray
    turnover: np.ndarray
    cost: np.ndarray
    returns: np.ndarray
    equity: np.ndarray


def simulate(scores: np.ndarray, returns: np.ndarray, strategy: Strategy, cost_bps: float = 0.0,
             weights: np.ndarray | None = None) -> Book:
    """Run ``strategy`` over the dates (see the module docstring). ``weights`` (D, N), when given, are used
    as the targets instead (e.g. a buy-and-hold benchmark)."""
    scores, returns = np.asarray(scores, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    if scores.shape != returns.shape:
        raise ValueError(f"scores {scores.shape} and returns {returns.shape} must have the same shape")
    n_dates, n_names = scores.shape
    cost = float(cost_bps) / 1e4
    held = np.zeros(n_names)
    out_w = np.zeros((n_dates, n_names))
    turnover, charged, period = np.zeros(n_dates), np.zeros(n_dates), np.zeros(n_dates)
    equity = np.ones(n_dates + 1)
    for d in range(n_dates):
        target = weights[d] if weights is not None else target_weights(strategy, scores[d], held)
        target = np.where(np.isfinite(returns[d]), target, 0.0)  # no position without a price to exit at
        out_w[d] = target
        turnover[d] = float(np.abs(target - held).sum())
        charged[d] = cost * turnover[d]
        period[d] = float(target @ np.nan_to_num(returns[d]))
        equity[d + 1] = equity[d] * (1 - charged[d]) * (1 + period[d])
        held = _drift(target, returns[d])
    return Book(out_w, turnover, charged, period, equity)


def buy_and_hold_weights(eligible: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """Equal weights on the eligible names, left to drift; re-set to equal only when the eligible set changes."""
    n_dates, n_names = eligible.shape
    out = np.zeros((n_dates, n_names))
    held = np.zeros(n_names)
    previous = None
    for d in range(n_dates):
        names = eligible[d] & np.isfinite(returns[d])
        if previous is not None and np.array_equal(names, previous) and held.sum() > 0:
            out[d] = held
        elif names.any():
            out[d, names] = 1.0 / names.sum()
        previous = names
        held = _drift(out[d], returns[d])
    return out


def metrics(book: Book, dates: pd.DatetimeIndex, end: pd.Timestamp, realised: np.ndarray) -> dict[str, float]:
    """Annualised return and volatility, Sharpe (no risk-free rate), max drawdown, mean turnover per rebalance,
    hit rate (share of positions whose period return had the position's sign), total return and costs.

    Years are calendar time from the first rebalance to ``end`` (the last exit); periods per year = dates / years.
    """
    years = max((end - dates[0]).total_seconds() / (365.25 * 86400), 1e-12)
    net = np.diff(book.equity) / book.equity[:-1]
    per_year = len(net) / years
    total = float(book.equity[-1] - 1)
    annual = float(book.equity[-1] ** (1 / years) - 1) if book.equity[-1] > 0 else -1.0
    vol = float(net.std(ddof=1) * np.sqrt(per_year)) if len(net) > 1 else float("nan")
    sharpe = float(net.mean() / net.std(ddof=1) * np.sqrt(per_year)) if len(net) > 1 and net.std(ddof=1) > 0 \
        else float("nan")
    held = (book.weights != 0) & np.isfinite(realised)
    hits = (np.sign(book.weights) * np.nan_to_num(realised) > 0)[held]
    return {"total_return": total, "annual_return": annual, "annual_vol": vol, "sharpe": sharpe,
            "max_drawdown": float(drawdown(book.equity).min()), "turnover": float(book.turnover.mean()),
            "hit_rate": float(hits.mean()) if hits.size else float("nan"), "costs": float(book.cost.sum()),
            "rebalances": float(len(net))}


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Equity over its running peak, minus 1 (0 at a new high, -0.2 twenty percent below it)."""
    equity = np.asarray(equity, dtype=np.float64)
    return equity / np.maximum.accumulate(equity) - 1
