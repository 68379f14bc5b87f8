"""The per-origin volatility and probability numbers of one method, from its paths and what happened
(:mod:`kronos.evaluation.volatility`, :mod:`kronos.evaluation.probability`)."""

from __future__ import annotations

import math

import numpy as np

from ..bars import CLOSE
from . import probability, volatility
from .baselines import history_returns


def history_scale(history_close: np.ndarray, pred_len: int) -> float:
    """The history's variance (ddof 1) of per-bar log returns times ``pred_len``: the horizon variance of a
    historical-volatility random walk (NaN with fewer than 2 returns)."""
    returns = history_returns(history_close, None)
    return float(returns.var(ddof=1) * pred_len) if len(returns) > 1 else float("nan")


def origin_statistics(close_paths: np.ndarray | None, history: np.ndarray, future: np.ndarray) -> dict[str, float]:
    """Volatility and probability numbers of one method at one origin.

    Args:
        close_paths: (S, P) forecast closes, or None.
        history: (H, 4+) bars before the origin; future: (P, 4+) the horizon bars (open, high, low, close first).
    """
    last_close = float(history[-1, CLOSE])
    scale = history_scale(history[:, CLOSE], len(future))
    out = volatility.origin_numbers(close_paths, last_close, future, scale)
    threshold = math.sqrt(scale) if scale > 0 else float("nan")
    out.update(probability.origin_numbers(close_paths, last_close, float(future[-1, CLOSE]), threshold))
    return out
