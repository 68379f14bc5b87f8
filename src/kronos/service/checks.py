"""Checks on validated bars and requests: candlestick consistency, and the work a forecast will cost."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..bars import PRICE_COLUMNS
from ..data.errors import rows_text
from ..forecasting.calibration import PATHS_PER_ORIGIN, plan_origins


def check_ohlc(bars: pd.DataFrame, name: str, lenient: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Bars whose prices are > 0 with low <= min(open, close) and high >= max(open, close).

    Refuses (``ValueError`` naming the rows) unless ``lenient``; then rows with a price <= 0 are dropped,
    high and low are widened to hold open and close, and the repairs are returned as one line each.
    Rows are counted from 0 in the order given.
    """
    prices = bars[list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)
    o, h, lo, c = prices.T
    not_positive = np.flatnonzero((prices <= 0).any(axis=1))
    bad_high = np.flatnonzero(h < np.maximum(o, c))
    bad_low = np.flatnonzero(lo > np.minimum(o, c))
    if not lenient:
        if len(not_positive):
            raise ValueError(f"{name} has a price <= 0 at row(s) {rows_text(not_positive)}; prices must be > 0 "
                             "(lenient mode drops such rows)")
        if len(bad_high) or len(bad_low):
            parts = []
            if len(bad_high):
                parts.append(f"high below open or close at row(s) {rows_text(bad_high)}")
            if len(bad_low):
                parts.append(f"low above open or close at row(s) {rows_text(bad_low)}")
            raise ValueError(f"{name} has inconsistent bars: {'; '.join(parts)} (lenient mode widens high and low)")
        return bars, []
    repairs = []
    repaired = bars.copy()
    widen = np.union1d(bad_high, bad_low)
    if len(widen):
        repaired["high"] = np.maximum.reduce([o, h, lo, c])
        repaired["low"] = np.minimum.reduce([o, h, lo, c])
        repairs.append(f"widened high/low to hold open and close at row(s) {rows_text(widen)}")
    if len(not_positive):
        keep = np.ones(len(bars), dtype=bool)
        keep[not_positive] = False
        repaired = repaired[keep]
        repairs.append(f"dropped {len(not_positive)} row(s) with a price <= 0: {rows_text(not_positive)}")
    return repaired, repairs


def generation_work(history: int, pred_len: int, paths: int, max_context: int) -> int:
    """Tokens the network processes to forecast ``pred_len`` steps of ``paths`` paths after ``history`` bars.

    The history is encoded once. While history plus the generated tokens fit in ``max_context`` a step
    costs one token per path (cached); after that the window slides and a step at ``s`` recomputes
    the window: its history part once, its ``min(s, max_context)`` generated tokens for every path.
    """
    steps = np.arange(pred_len, dtype=np.int64)
    generated = np.minimum(steps, max_context)
    sliding = history + steps > max_context
    per_step = np.where(sliding, (max_context - generated) + paths * generated, paths)
    return int(history + per_step.sum())


def forecast_work(rows: int, pred_len: int, samples: int, calibrate: bool, lookback: int, max_context: int) -> int:
    """Token work of one forecast: what the service's budget (``max_work``) is compared against.

    The forecast itself runs ``samples`` paths from the last ``min(rows, lookback)`` bars; calibration
    adds a forecast of ``PATHS_PER_ORIGIN`` paths at each past origin inside the history (counted here
    with the same history length, an upper bound). Each is priced by :func:`generation_work`.
    """
    origins = len(plan_origins(rows, pred_len, lookback)) if calibrate else 0
    history = min(rows, lookback)
    return (generation_work(history, pred_len, samples, max_context)
            + origins * generation_work(history, pred_len, PATHS_PER_ORIGIN, max_context))
