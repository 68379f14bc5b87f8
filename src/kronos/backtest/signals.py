"""Risk baseline signals of the backtest, from the bars before each origin: low volatility and a
GARCH-volatility-scaled momentum.

- ``low_vol``: minus the standard deviation of the last ``momentum_window`` log returns (calm names first).
- ``garch_scaled``: the last ``momentum_window``-bar log return divided by the GARCH(1,1)-t forecast of its
  standard deviation (next-bar sigma times the square root of the window): momentum in units of risk. The
  GARCH parameters are fitted on the last ``lookback`` log returns every ``REFIT_EVERY`` rebalance dates of a
  series (a fit per date would cost more than the rest of the backtest); at the other dates the conditional
  variance is filtered with the last fitted parameters through the bars since. Needs the optional ``arch``
  package; without it the signal is left out (and the backtest says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..bars import CLOSE
from ..data.tables import Series
from ..stats.garch import GarchFit, fit_garch_t, garch_available

REFIT_EVERY = 20
RISK_SIGNALS = ("low_vol", "garch_scaled")


def _log_returns(close: np.ndarray) -> np.ndarray:
    close = np.asarray(close, dtype=np.float64)
    close = close[close > 0]
    return np.diff(np.log(close))


def garch_sigma(fit: GarchFit, returns: np.ndarray) -> float:
    """Next-bar conditional standard deviation after ``returns`` (N,) with fixed GARCH parameters: the
    recursion started from the returns' variance (log-return units)."""
    variance = float(np.var(returns)) if len(returns) > 1 else fit.next_variance
    for r in returns:
        variance = fit.omega + fit.alpha * r * r + fit.beta * variance
    return float(np.sqrt(variance))


def risk_scores(series: Sequence[Series], plan: Any, config: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """The ``low_vol`` and (with ``arch``) ``garch_scaled`` scores (D, N) on the plan's dates, and notes."""
    window, lookback = config.momentum_window, config.lookback
    shape = plan.origins.shape
    out = {"low_vol": np.full(shape, np.nan)}
    use_garch = garch_available()
    notes = [] if use_garch else ["garch_scaled not run: the optional 'arch' package is not installed"]
    if use_garch:
        out["garch_scaled"] = np.full(shape, np.nan)
    for j, s in enumerate(series):
        fit, fitted_at = None, -REFIT_EVERY
        for d in np.flatnonzero(plan.origins[:, j] >= 0):
            o = int(plan.origins[d, j])
            returns = _log_returns(s.bars[max(0, o - lookback):o, CLOSE])
            if len(returns) < window:
                continue
            recent = returns[-window:]
            out["low_vol"][d, j] = -float(recent.std(ddof=1))
            if not use_garch:
                continue
            if fit is None or d - fitted_at >= REFIT_EVERY:
                fit, fitted_at = fit_garch_t(returns) or fit, d
            if fit is not None:
                sigma = garch_sigma(fit, returns[-lookback:])
                if sigma > 0:
                    out["garch_scaled"][d, j] = float(recent.sum()) / (sigma * np.sqrt(window))
    return out, notes
