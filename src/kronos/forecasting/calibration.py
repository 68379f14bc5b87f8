"""Calibrating sample paths from a series' own past.

The model forecasts from several origins inside the history it was given; where each of those horizons
is already known, the realised closes say where the paths should have been centred and how wide they
should have been. Two corrections are fitted on those past origins and applied to the new forecast:

1. **Location.** The paths' median move away from the last close is multiplied by ``shrink`` in [0, 1],
   the share of the model's drift that is kept (reported as "drift kept: N%"): the least-squares factor
   that best explains the realised moves as ``shrink`` times the median's moves, regularised toward 0 by
   the part of the realised moves it leaves unexplained (:func:`fit_shrink`), so that it does not swing
   with the random draws (0: the model's drift carried no information there and the paths are centred
   on the last close, as a random walk's are; 1: the drift is kept).
2. **Spread.** At each horizon step the paths' distances from their median are multiplied by ``scale``,
   the factor that minimises the mean CRPS of the rescaled past forecasts (minimum-CRPS estimation of an
   ensemble's spread: Gneiting, Raftery, Westveld and Goldman, "Calibrated probabilistic forecasting
   using ensemble model output statistics and minimum CRPS estimation", Monthly Weather Review 133,
   2005). Scores of neighbouring steps are pooled (``window`` steps either side), and the fitted factor
   is damped halfway toward 1 in log space, because a history holds only a dozen overlapping past
   origins: on the validation part of the project's data the undamped factor covered 44% and 71% with
   its 50% and 80% intervals, the damped one 47% and 75% at the same CRPS.

Bars of a time series are not exchangeable, so nothing here is a guarantee; ``kronos evaluate``
measures what calibration gives on held-out data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_ORIGINS = 4
MAX_ORIGINS = 12
MIN_PAST_HISTORY = 32  # fewest history bars a past origin is forecast from
PATHS_PER_ORIGIN = 16
DAMPING = 0.5
SHRINK_REGULARISATION = 4.0  # fit_shrink: chosen on validation origins (CRPS and stability across seeds)
SCALE_GRID = np.exp(np.linspace(np.log(0.2), np.log(5.0), 49))


@dataclass(frozen=True)
class Calibration:
    """What calibration did to one forecast.

    ``scale`` (P,): factor applied to every path's distance from the median at each horizon step (all 1
    when calibration did not run). ``shrink``: the share of the model's drift that is kept, the factor
    applied to the median's move from the last close (0: none kept, the median stays at the last close;
    1: all of it), also readable as ``drift_kept``. ``origins``: past origins used (0 when it did not run).
    ``ends``: their end rows (exclusive) in the history that was given, oldest first: past origin ``e``
    was forecast from the bars before row ``e`` and scored on the closes of rows ``[e, e + pred_len)``.
    ``note``: why it did not run, else empty. ``summary`` says all of it in words. A fitted calibration
    can be given back to ``forecast_batch(calibration=...)`` to apply the same factors without forecasting
    the past origins again.
    ``weights``: the combination's share of sample paths per method (``kronos``, ``garch_t``, ``bootstrap``,
    ``gaussian_rw``; summing to 1), fitted on the same past origins (:mod:`kronos.forecasting.combination`);
    empty when the paths are the model's alone. Also readable as the dict ``combination``. ``follow``: the exponent of
    the model's spread's move toward GARCH-t's before pooling (0: none).
    """

    scale: np.ndarray
    origins: int
    shrink: float = 1.0
    paths_per_origin: int = 0
    note: str = ""
    ends: tuple[int, ...] = ()
    weights: tuple[tuple[str, float], ...] = ()
    follow: float = 0.0

    @property
    def combination(self) -> dict[str, float]:
        """Share of sample paths per method (empty: the model's paths alone)."""
        return dict(self.weights)

    @property
    def applied(self) -> bool:
        return self.origins > 0

    @property
    def drift_kept(self) -> float:
        """Share of the model's drift kept, in [0, 1] (the same number as ``shrink``)."""
        return self.shrink

    @property
    def summary(self) -> str:
        """One line in words, e.g. ``calibrated on 12 past origins: drift kept: 0% (the median stays at the last
        close), spread ×0.84–×1.10 over the horizon``; or why calibration did not run."""
        if not self.applied:
            return f"not calibrated: {self.note}"
        kept = f"drift kept: {self.shrink:.0%}"
        if round(self.shrink * 100) == 0:
            kept += " (the median stays at the last close)"
        elif round(self.shrink * 100) == 100:
            kept += " (the model's drift as sampled)"
        else:
            kept += " of the model's"
        text = (f"calibrated on {self.origins} past origins: {kept}, spread ×{self.scale.min():.2f}–"
                f"×{self.scale.max():.2f} over the horizon")
        if self.weights:
            text += (f"; spread follows GARCH-t's to the power {self.follow:g}; paths combined: "
                     + ", ".join(f"{n} {w:.0%}" for n, w in self.weights if w >= 0.005))
        return text

    def __repr__(self) -> str:
        values = [f"{v:.3g}" for v in np.asarray(self.scale, dtype=float)]
        scale = "[" + ", ".join(values if len(values) <= 6 else [*values[:3], "...", *values[-3:]]) + "]"
        note = f", note={self.note!r}" if self.note else ""
        weights = (f", weights={{{', '.join(f'{n!r}: {w:.2f}' for n, w in self.weights)}}}, follow={self.follow:g}"
                   if self.weights else "")
        return (f"Calibration(origins={self.origins}, drift_kept={self.shrink:.0%}, scale={scale}, "
                f"paths_per_origin={self.paths_per_origin}{weights}{note})")

    @classmethod
    def skipped(cls, pred_len: int, note: str) -> Calibration:
        return cls(np.ones(pred_len), 0, note=note)

    def to_dict(self) -> dict:
        """JSON-ready form (:meth:`from_dict` reads it back)."""
        return {"scale": [float(v) for v in self.scale], "origins": self.origins, "shrink": float(self.shrink),
                "paths_per_origin": self.paths_per_origin, "note": self.note, "ends": list(self.ends),
                "weights": {n: float(w) for n, w in self.weights}, "follow": float(self.follow)}

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        try:
            scale = np.asarray(data["scale"], dtype=np.float64)
            out = cls(scale, int(data["origins"]), float(data.get("shrink", 1.0)),
                      int(data.get("paths_per_origin", 0)), str(data.get("note", "")),
                      tuple(int(e) for e in data.get("ends", ())),
                      tuple((str(n), float(w)) for n, w in dict(data.get("weights") or {}).items()),
                      float(data.get("follow", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a calibration record: {exc}") from None
        if scale.ndim != 1 or not np.all(np.isfinite(scale)) or not np.all(scale > 0):
            raise ValueError("not a calibration record: scale must be a list of positive numbers")
        weights = [w for _, w in out.weights]
        if weights and (not all(np.isfinite(w) and w >= 0 for w in weights) or abs(sum(weights) - 1) > 1e-6):
            raise ValueError("not a calibration record: weights must be numbers >= 0 summing to 1")
        return out


def grid_step(pred_len: int) -> int:
    """Bars between neighbouring past origins on a long history's grid: one horizon, so the realised
    windows of neighbouring past origins do not overlap."""
    return pred_len


def plan_origins(history: int, pred_len: int, lookback: int, max_origins: int = MAX_ORIGINS) -> list[int]:
    """End rows (exclusive) of the past origins' histories inside a history of ``history`` bars.

    The ends lie on a grid anchored to the history's first bar: multiples of a step counted from row 0,
    so that two forecasts of one series from the same first bar (neighbouring origins of a walk-forward
    evaluation, a history that grew by new bars) share their past origins and a past forecast is made
    once. Each origin ``e`` forecasts bars ``[e, e + pred_len)``, all inside the history (only horizons
    that ended before the forecast's own origin are used).

    A history long enough for ``max_origins`` ends at least ``lookback`` bars in (all forecast from a full
    lookback) uses the step :func:`grid_step`; a shorter one spreads its origins over its second half
    (each forecast from at least :data:`MIN_PAST_HISTORY` bars) on the coarsest of the steps
    ``pred_len, pred_len / 2, pred_len / 4, ..., 1`` that holds ``max_origins`` ends (else step 1). The
    last ``max_origins`` grid ends are kept, oldest first; an empty list when fewer than
    :data:`MIN_ORIGINS` fit.
    """
    last = history - pred_len
    step = grid_step(pred_len)
    if _grid(lookback, last, step) >= max_origins:
        first = lookback
    else:
        first = max(MIN_PAST_HISTORY, min(lookback, last // 2))
        while step > 1 and _grid(first, last, step) < max_origins:
            step = (step + 1) // 2
    if last < first:
        return []
    ends = list(range(last - last % step, first - 1, -step))[:max_origins]
    ends = [e for e in ends if e >= first]
    return sorted(ends) if len(ends) >= MIN_ORIGINS else []


def _grid(first: int, last: int, step: int) -> int:
    """How many multiples of ``step`` lie in [first, last]."""
    return max(0, last // step - (first - 1) // step) if last >= first else 0


def minimum_history(pred_len: int, lookback: int) -> int:
    """Fewest history bars for which :func:`plan_origins` finds enough origins."""
    history = pred_len + MIN_PAST_HISTORY
    while not plan_origins(history, pred_len, lookback):
        history += 1
    return history


def fit_shrink(paths: np.ndarray, realised: np.ndarray, last_close: np.ndarray,
               regularisation: float = SHRINK_REGULARISATION) -> float:
    """Share in [0, 1] of the median's move to keep, ``realised - c0 ≈ shrink * (median - c0)``, fitted by
    least squares and regularised toward 0 by what the fit leaves unexplained.

    With ``m`` the median's moves and ``h`` the realised ones over all past origins and steps, and ``rss``
    the residual sum of squares of the plain least-squares fit ``b = Σmh / Σm²``::

        shrink = clip(Σmh / (Σm² + regularisation * rss), 0, 1)

    A drift that explained the past moves exactly is kept whole (``rss = 0``); one that explained little is
    shrunk to nearly nothing. Why: a dozen overlapping past origins of 16 paths each are few, so the plain
    factor swings with the random draws; on validation origins of real series (20 origins of 10 series,
    three seeds each) it ranged up to 0.54 between seeds of one forecast, this one up to 0.07, and the
    forecasts' close CRPS fell by 1.3% (50%/80% coverage 45%/75% -> 49%/79%). ``regularisation`` 0 gives the
    plain factor.

    ``paths`` (K, S, P), ``realised`` (K, P), ``last_close`` (K,) the close before each past origin.
    """
    move = np.median(paths, axis=1) - last_close[:, None]
    happened = realised - last_close[:, None]
    explained = float(np.sum(move * move))
    if not explained > 0:
        return 1.0
    covariance = float(np.sum(move * happened))
    rss = float(np.sum((happened - covariance / explained * move) ** 2))
    return float(np.clip(covariance / (explained + regularisation * rss), 0.0, 1.0))


def recentre(paths: np.ndarray, last_close: np.ndarray | float, shrink: float) -> np.ndarray:
    """Shift every path so the per-step median's move from ``last_close`` is multiplied by ``shrink``.

    ``paths`` (..., S, P) closes; ``last_close`` broadcastable to (..., 1, 1).
    """
    median = np.median(paths, axis=-2, keepdims=True)
    return paths + (shrink - 1.0) * (median - last_close)


def fit_scale(paths: np.ndarray, realised: np.ndarray, window: int = 2, damping: float = DAMPING) -> np.ndarray:
    """(P,) spread factors: per step, the factor on the paths' distances from their median that minimises
    the mean CRPS over the past origins (steps ``h - window .. h + window`` pooled), damped toward 1.

    Args:
        paths: (K, S, P) closes of the S sample paths at each of K past origins.
        realised: (K, P) the closes that happened.
        damping: 1 keeps the fitted factor, 0 ignores it; in between, ``factor ** damping``.
    """
    median = np.median(paths, axis=1, keepdims=True)  # (K, 1, P)
    scores = _scaled_crps(np.asarray(paths - median, dtype=np.float64),
                          np.asarray(realised, dtype=np.float64) - median[:, 0, :])  # (G, K, P)
    k, p = paths.shape[0], paths.shape[2]
    total = np.concatenate([np.zeros((len(SCALE_GRID), 1)), np.cumsum(scores.sum(axis=1), axis=1)], axis=1)
    first = np.maximum(0, np.arange(p) - window)
    last = np.minimum(p, np.arange(p) + window + 1)
    pooled = (total[:, last] - total[:, first]) / ((last - first) * k)  # (G, P) mean CRPS of steps h-window..h+window
    return SCALE_GRID[np.argmin(pooled, axis=0)] ** damping


def _scaled_crps(deviation: np.ndarray, miss: np.ndarray) -> np.ndarray:
    """(G, K, P) CRPS of the paths ``median + g * deviation`` for every factor g of :data:`SCALE_GRID`:
    deviations (K, S, P) from the per-step median, ``miss`` (K, P) the realised value minus that median.

    :func:`~kronos.stats.scores.crps_samples` for all factors at once: a positive factor keeps the
    members' order and scales their mean pairwise distance, so the members are sorted once."""
    s = deviation.shape[1]
    ordered = np.sort(deviation, axis=1)
    weights = (2 * np.arange(s) - s + 1).astype(np.float64)
    spread = np.einsum("s,ksp->kp", weights, ordered) / s**2  # (K, P) = 0.5 * mean|D - D'|
    g = SCALE_GRID[:, None, None, None]
    return np.abs(g * ordered[None] - miss[None, :, None, :]).mean(axis=2) - SCALE_GRID[:, None, None] * spread[None]


def rescale_paths(paths: np.ndarray, scale: np.ndarray, columns: Sequence[int], reference: int, last_close: float,
                  shrink: float) -> np.ndarray:
    """Paths (S, P, C) with the given columns moved and scaled together around the per-step median of
    column ``reference`` (the close): that median goes to ``last_close + shrink * (median - last_close)``
    and every value's distance from it is multiplied by ``scale`` (P,).
    One centre and one positive factor per step keep each bar's order (high above open and close, low
    below them) as it was."""
    out = paths.copy()
    median = np.median(paths[..., reference], axis=0)[None, :, None]  # (1, P, 1)
    centre = last_close + shrink * (median - last_close)
    columns = list(columns)
    out[..., columns] = centre + scale[None, :, None] * (paths[..., columns] - median)
    return out
