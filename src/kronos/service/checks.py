"""Checks on validated bars and requests: candlestick consistency, and the work a forecast will cost."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..calibration import PATHS_PER_ORIGIN, plan_origins

PRICES = ("open", "high", "low", "close")


def _rows_text(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:5])
    return shown + (f" (and {len(rows) - 5} more)" if len(rows) > 5 else "")


def check_ohlc(bars: pd.DataFrame, name: str, lenient: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Bars whose prices are > 0 with low <= min(open, close) and high >= max(open, close).

    Refuses (``ValueError`` naming the rows) unless ``lenient``; then rows with a price <= 0 are dropped,
    high and low are widened to hold open and close, and the repairs are returned as one line each.
    Rows are counted from 0 in the order given.
    """
    prices = bars[list(PRICES)].to_numpy(dtype=np.float64)
    o, h, lo, c = prices.T
    not_positive = np.flatnonzero((prices <= 0).any(axis=1))
    bad_high = np.flatnonzero(h < np.maximum(o, c))
    bad_low = np.flatnonzero(lo > np.minimum(o, c))
    if not lenient:
        if len(not_positive):
            raise ValueError(f"{name} has a price <= 0 at row(s) {_rows_text(not_positive)}; prices must be > 0 "
                             "(lenient mode drops such rows)")
        if len(bad_high) or len(bad_low):
            parts = []
            if len(bad_high):
                parts.append(f"high below open or close at row(s) {_rows_text(bad_high)}")
            if len(bad_low):
                parts.append(f"low above open or close at row(s) {_rows_text(bad_low)}")
            raise ValueError(f"{name} has inconsistent bars: {'; '.join(parts)} (lenient mode widens high and low)")
        return bars, []
    repairs = []
    repaired = bars.copy()
    widen = np.union1d(bad_high, bad_low)
    if len(widen):
        repaired["high"] = np.maximum.reduce([o, h, lo, c])
        repaired["low"] = np.minimum.reduce([o, h, lo, c])
        repairs.append(f"widened high/low to hold open and close at row(s) {_rows_text(widen)}")
    if len(not_positive):
        keep = np.ones(len(bars), dtype=bool)
        keep[not_positive] = False
        repaired = repaired[keep]
        repairs.append(f"dropped {len(not_positive)} row(s) with a price <= 0: {_rows_text(not_positive)}")
    return repaired, repairs


def forecast_work(rows: int, pred_len: int, samples: int, calibrate: bool, lookback: int, max_context: int) -> int:
    """Token work of one forecast: what the service's budget (``max_work``) is compared against.

    Every sample path generates ``pred_len`` tokens; calibration adds ``PATHS_PER_ORIGIN`` paths at
    each past origin. Each forecast (the new one and each past origin) encodes its history, and once
    history plus forecast outgrows ``max_context`` each further step recomputes the whole window:

        work = pred_len * (samples + origins * PATHS_PER_ORIGIN)
               + (1 + origins) * (history + max(0, history + pred_len - max_context) * max_context)

    with ``history = min(rows, lookback)``.
    """
    origins = len(plan_origins(rows, pred_len, lookback)) if calibrate else 0
    history = min(rows, lookback)
    slide_steps = max(0, history + pred_len - max_context)
    return pred_len * (samples + origins * PATHS_PER_ORIGIN) + (1 + origins) * (history + slide_steps * max_context)
