"""Probability statements from sample paths and their scores: Brier and log score, Diebold–Mariano tests
against the baselines' probabilities, and the reliability table (numpy; pandas for the tables).

Two events per origin, both about the close at the end of the horizon (P bars ahead):

- ``up``: the close ends above the last observed close;
- ``move``: the absolute log return to that close exceeds ``threshold``, one standard deviation of P-bar log
  returns estimated from the history (``sqrt(var_scale)`` of :mod:`kronos.evaluation.volatility`), so the
  event means the same in every series (a Gaussian random walk puts about 32% on it).

A method's probability is the share of its paths in which the event happens (methods with one path make no
probability statement). The log score needs a probability strictly inside (0, 1), so it scores
``(k + 0.5) / (S + 1)`` for ``k`` of ``S`` paths (the Brier score uses ``k / S``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats.significance import default_lags, diebold_mariano
from .volatility import paired_by_date

EVENTS = ("up", "move")
BINS = 10
PROB_COLUMNS = ["method", "event", "origins", "base_rate", "mean_prob", "brier", "log_score"]
PROB_DM_COLUMNS = ["method", "baseline", "event", "score", "dates", "mean_diff", "t", "p"]
RELIABILITY_COLUMNS = ["method", "event", "bin", "mean_prob", "frequency", "count"]


def origin_numbers(close_paths: np.ndarray | None, last_close: float, realised_close: float,
                   threshold: float) -> dict[str, float]:
    """Per-origin numbers of one method: for each event, ``p_<event>`` (share of paths), ``k_<event>`` (paths)
    and the outcome ``o_<event>`` (1 or 0; NaN for ``up`` when the close is unchanged), and ``n_paths``."""
    nan = float("nan")
    realised = float(np.log(realised_close / last_close)) if realised_close > 0 and last_close > 0 else nan
    out = {"o_up": nan if not np.isfinite(realised) or realised == 0 else float(realised > 0),
           "o_move": float(abs(realised) > threshold) if np.isfinite(realised) and threshold > 0 else nan}
    paths = None if close_paths is None else np.asarray(close_paths, dtype=np.float64)
    if paths is None or len(paths) < 2 or not threshold > 0:
        return {**out, "p_up": nan, "p_move": nan, "k_up": nan, "k_move": nan, "n_paths": nan}
    with np.errstate(divide="ignore", invalid="ignore"):
        ends = np.log(paths[:, -1] / last_close)
    k_up, k_move = float(np.sum(ends > 0)), float(np.sum(np.abs(ends) > threshold))
    return {**out, "p_up": k_up / len(paths), "p_move": k_move / len(paths), "k_up": k_up, "k_move": k_move,
            "n_paths": float(len(paths))}


def scores(records: pd.DataFrame, event: str) -> pd.DataFrame:
    """Per record, the ``brier`` and ``log_score`` (negative log likelihood, lower is better) of ``event``."""
    p = records[f"p_{event}"].to_numpy(dtype=float)
    o = records[f"o_{event}"].to_numpy(dtype=float)
    smoothed = (records[f"k_{event}"].to_numpy(dtype=float) + 0.5) / (records["n_paths"].to_numpy(dtype=float) + 1)
    ok = np.isfinite(p) & np.isfinite(o)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_score = -(o * np.log(smoothed) + (1 - o) * np.log(1 - smoothed))
    return pd.DataFrame({"brier": np.where(ok, (p - o) ** 2, np.nan), "log_score": np.where(ok, log_score, np.nan)},
                        index=records.index)


def _with_probabilities(records: pd.DataFrame) -> pd.DataFrame:
    if "p_up" not in records:
        return records.iloc[:0]
    return records[np.isfinite(records["p_up"].to_numpy(dtype=float))]


def probability_table(records: pd.DataFrame) -> pd.DataFrame:
    """Pooled per method with paths and event: origins scored, base rate of the event, mean probability,
    mean Brier and log score."""
    rows = []
    for method, group in _with_probabilities(records).groupby("method", sort=False):
        for event in EVENTS:
            frame = scores(group, event)
            ok = frame["brier"].notna()
            rows.append({"method": method, "event": event, "origins": int(ok.sum()),
                         "base_rate": float(group.loc[ok, f"o_{event}"].mean()),
                         "mean_prob": float(group.loc[ok, f"p_{event}"].mean()),
                         "brier": float(frame["brier"].mean()), "log_score": float(frame["log_score"].mean())})
    return pd.DataFrame(rows, columns=PROB_COLUMNS)


def probability_tests(records: pd.DataFrame, method: str, lags: int | None = None) -> pd.DataFrame:
    """Diebold–Mariano tests of ``method``'s Brier and log scores against every other method with paths,
    per event, on per-date mean differences (negative: ``method`` better)."""
    usable = _with_probabilities(records)
    methods = list(dict.fromkeys(usable["method"]))
    if method not in methods:
        return pd.DataFrame(columns=PROB_DM_COLUMNS)
    rows = []
    for event in EVENTS:
        frame = scores(usable, event)
        for name in ("brier", "log_score"):
            for baseline in (m for m in methods if m != method):
                diff = paired_by_date(usable, frame[name], method, baseline)
                test = diebold_mariano(diff, np.zeros_like(diff), lags if lags is not None else default_lags(len(diff)))
                rows.append({"method": method, "baseline": baseline, "event": event, "score": name,
                             "dates": test.n, "mean_diff": test.mean, "t": test.t, "p": test.p})
    return pd.DataFrame(rows, columns=PROB_DM_COLUMNS)


def reliability(records: pd.DataFrame, bins: int = BINS) -> pd.DataFrame:
    """Reliability table: forecasts of each method and event grouped in ``bins`` equal-width probability bins
    ([0, 0.1), ..., [0.9, 1.0]); per bin the mean forecast probability, the observed frequency and the count."""
    rows = []
    for method, group in _with_probabilities(records).groupby("method", sort=False):
        for event in EVENTS:
            p = group[f"p_{event}"].to_numpy(dtype=float)
            o = group[f"o_{event}"].to_numpy(dtype=float)
            ok = np.isfinite(p) & np.isfinite(o)
            index = np.minimum((p[ok] * bins).astype(int), bins - 1)
            for b in range(bins):
                inside = index == b
                if inside.any():
                    rows.append({"method": method, "event": event, "bin": b, "mean_prob": float(p[ok][inside].mean()),
                                 "frequency": float(o[ok][inside].mean()), "count": int(inside.sum())})
    return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)
