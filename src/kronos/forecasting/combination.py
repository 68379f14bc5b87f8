"""Combining the model's paths with the baselines a quant would run, weighted by the series' own past.

Calibration forecasts past origins inside the history (:mod:`kronos.calibration`). The same past origins
also get the forecasts of three baselines, each from the closes before that origin only:

- ``garch_t``: GARCH(1,1) with Student-t innovations (:mod:`kronos.evaluation.garch`). One fit per
  forecast, on the last :data:`MAX_RETURNS` log returns of the history; at a past origin its paths start
  from the conditional variance that fit's recursion reaches at that origin (the parameters are the
  forecast's own, the variance path only uses returns before the past origin).
- ``bootstrap``: historical simulation, per-bar log returns drawn with replacement from the last
  :data:`MAX_RETURNS` returns before the origin.
- ``gaussian_rw``: a zero-drift Gaussian random walk in log price with those returns' standard deviation.

Before pooling, the model's spread **follows recent shocks**: at every horizon step the paths' distances
from their median are multiplied by ``(s_garch / s_model) ** gamma``, the ratio of GARCH-t's standard
deviation of the log move from the last close to the model's own, with the exponent ``gamma`` in
:data:`FOLLOW_GRID` that minimises the CRPS of the model's past forecasts moved the same way (0: the
model's spread as calibrated; 1: GARCH-t's spread around the model's median).

The forecast is then a **linear pool**: a share ``w_m`` of its sample paths comes from method ``m``, with the
weights minimising the mean CRPS of the pooled forecast over the past origins (relative to each origin's
last close, so origins weigh alike). The CRPS of a linear pool is exact from the components' pair
distances, ``CRPS(w) = w·a - ½ wᵀBw`` with ``a_m = E|X_m - y|`` and ``B_mn = E|X_m - X_n|``, which is convex
on the simplex, so the weights are found on a fine grid of it. A dozen past origins are few, so the
fitted weights are shrunk toward :data:`PRIOR_WEIGHTS` as if the prior had been seen on
:data:`PRIOR_ORIGINS` origins: ``w = (K·ŵ + n₀·w₀) / (K + n₀)``. Only the baselines in :data:`POOLED`
(GARCH-t) join the pool: on the validation part of the project's data, letting the fit also give paths to
the bootstrap and the Gaussian random walk raised the pooled CRPS by 5-7% (their past-origin scores
favoured them more than their later ones did).

A baseline forecasts closes only. A pooled path that comes from a baseline takes its closes and the
model's bar shapes: every price of a model path's bar (open, high, low, close) is multiplied by the
baseline close over the model close of that bar, so the bar keeps its open, high and low as ratios to its
close (and stays a valid candle), and volume and amount are the model path's.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # kronos.evaluation imports the forecasting door; its GARCH module is read when first used
    from ..evaluation.garch import GarchFit

MODEL = "kronos"
BASELINES = ("garch_t", "bootstrap", "gaussian_rw")
METHODS = (MODEL, *BASELINES)
POOLED = ("garch_t",)  # the baselines whose paths join the pool (see the module docstring)
MAX_RETURNS = 1000  # most history log returns the baselines are fitted on
PAST_PATHS = 64  # baseline paths per past origin
GRID = 40  # weights on the simplex in steps of 1/GRID
PRIOR_WEIGHTS = {MODEL: 0.3, "garch_t": 0.7, "bootstrap": 0.0, "gaussian_rw": 0.0}
PRIOR_ORIGINS = 8.0
FOLLOW_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # exponents of the spread's move toward GARCH-t's
CLOSE = 3
PRICES = [0, 1, 2, 3]


@dataclass(frozen=True)
class Baselines:
    """What the baselines of one series need: the history's log returns (N,) ending at its last bar, the
    last close, and one GARCH(1,1)-t fit on the last :data:`MAX_RETURNS` of them (None where it fails)."""

    returns: np.ndarray
    last_close: float
    garch: GarchFit | None

    @classmethod
    def of(cls, closes: np.ndarray) -> Baselines:
        """From a history's closes (T,) (non-positive ones dropped); the GARCH fit is looked up by the
        returns' content first (:func:`garch_fit`)."""
        returns = log_returns(closes)
        return cls(returns, float(closes[-1]), garch_fit(returns[-MAX_RETURNS:]))


_FITS: OrderedDict[bytes, GarchFit | None] = OrderedDict()
_FITS_LOCK = threading.Lock()
MAX_FITS = 4096


def garch_fit(returns: np.ndarray) -> GarchFit | None:
    """:func:`kronos.evaluation.garch.fit_garch_t` of ``returns`` (N,), kept by a hash of their bytes (the
    last :data:`MAX_FITS` fits), so a history forecast again (a service asked twice, a rerun) fits once."""
    values = np.ascontiguousarray(returns, dtype=np.float64)
    key = hashlib.blake2b(values.tobytes(), digest_size=16).digest()
    with _FITS_LOCK:
        if key in _FITS:
            _FITS.move_to_end(key)
            return _FITS[key]
    from ..evaluation.garch import fit_garch_t

    fit = fit_garch_t(values)
    with _FITS_LOCK:
        _FITS[key] = fit
        while len(_FITS) > MAX_FITS:
            _FITS.popitem(last=False)
    return fit


def log_returns(closes: np.ndarray) -> np.ndarray:
    """(N,) log returns of the positive closes of ``closes`` (T,)."""
    closes = np.asarray(closes, dtype=np.float64)
    closes = closes[closes > 0]
    return np.diff(np.log(closes))


def content_rng(closes: np.ndarray, salt: int) -> np.random.Generator:
    """A numpy generator seeded by a hash of ``closes`` (float32 bytes) and ``salt``: the same history
    draws the same baseline paths wherever and whenever it is forecast."""
    digest = hashlib.blake2b(np.ascontiguousarray(closes, dtype=np.float32).tobytes(), digest_size=16)
    digest.update(f"|{int(salt)}".encode())
    return np.random.default_rng(int.from_bytes(digest.digest(), "little"))


def _filtered(fit: GarchFit, returns: np.ndarray) -> np.ndarray:
    """(N,) conditional variances of ``returns`` under ``fit``'s parameters: ``sigma2[t]`` is the variance of
    return ``t``, started at the returns' mean square."""
    out = np.empty(len(returns))
    variance = float(np.mean(returns**2)) if len(returns) else fit.next_variance
    for t, r in enumerate(returns):
        out[t] = variance
        variance = fit.omega + fit.alpha * r * r + fit.beta * variance
    return out


def garch_at(fit: GarchFit, returns: np.ndarray, ends: list[int]) -> list[GarchFit]:
    """``fit`` moved to each past origin: its last variance and residual those of the return before it.

    ``returns`` (N,) are the history's returns; ``ends[k]`` counts the returns before past origin ``k``
    (>= 1). The variance recursion starts :data:`MAX_RETURNS` returns before the earliest end, and
    ``bound`` is the largest absolute return among the last :data:`MAX_RETURNS` before each origin."""
    from ..evaluation.garch import GarchFit

    first = max(0, min(ends) - MAX_RETURNS)
    variances = _filtered(fit, returns[first:max(ends)])
    out = []
    for end in ends:
        seen = returns[max(first, end - MAX_RETURNS):end]
        out.append(GarchFit(fit.omega, fit.alpha, fit.beta, fit.nu, float(variances[end - 1 - first]),
                            float(returns[end - 1]), fit.scale, float(np.abs(seen).max())))
    return out


def baseline_closes(returns: np.ndarray, last_close: float, garch: GarchFit | None, count: int, pred_len: int,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(count, pred_len) close paths of each baseline from the returns before an origin (the last
    :data:`MAX_RETURNS` of them) and the close before it. Where GARCH has no fit its paths are the
    Gaussian random walk's. Drawn in the order bootstrap, gaussian_rw, garch_t from ``rng``."""
    from ..evaluation.garch import simulate_garch_t

    recent = np.asarray(returns[-MAX_RETURNS:], dtype=np.float64)
    if len(recent) == 0:
        recent = np.zeros(1)
    drawn = recent[rng.integers(0, len(recent), size=(count, pred_len))]
    sigma = float(recent.std(ddof=1)) if len(recent) > 1 else 0.0
    gaussian = rng.standard_normal((count, pred_len)) * sigma
    garch_returns = simulate_garch_t(garch, count, pred_len, rng) if garch is not None else gaussian
    return {name: last_close * np.exp(np.cumsum(r, axis=1))
            for name, r in (("garch_t", garch_returns), ("bootstrap", drawn), ("gaussian_rw", gaussian))}


def past_baseline_closes(base: Baselines, closes: np.ndarray, ends: list[int], pred_len: int,
                         rng: np.random.Generator, count: int = PAST_PATHS) -> dict[str, np.ndarray]:
    """(K, count, pred_len) close paths of each baseline at the past origins ``ends`` (end rows, exclusive,
    of the history ``closes`` (T,)), each from the bars before its origin only."""
    positive = np.asarray(closes, dtype=np.float64) > 0
    # returns before row e: the returns between positive closes of rows < e
    counts = [int(positive[:e].sum()) - 1 for e in ends]
    fits = garch_at(base.garch, base.returns, counts) if base.garch is not None else [None] * len(ends)
    out: dict[str, list[np.ndarray]] = {name: [] for name in BASELINES}
    for end, n, fit in zip(ends, counts, fits):
        paths = baseline_closes(base.returns[:n], float(closes[end - 1]), fit, count, pred_len, rng)
        for name in BASELINES:
            out[name].append(paths[name])
    return {name: np.stack(v) for name, v in out.items()}


def log_spread(closes: np.ndarray, last_close: np.ndarray | float) -> np.ndarray:
    """(..., P) standard deviation over paths of the log move from ``last_close`` (...,) of ``closes``
    (..., S, P)."""
    last = np.asarray(last_close, dtype=np.float64)[..., None, None]
    return np.log(np.maximum(np.asarray(closes, dtype=np.float64), 1e-300) / last).std(axis=-2)


def follow_factor(model: np.ndarray, garch: np.ndarray, last_close: np.ndarray | float, gamma: float) -> np.ndarray:
    """(..., P) factors ``(s_garch / s_model) ** gamma`` on the model's spread per step (1 where the model's
    paths do not spread), from close paths ``model`` (..., S, P) and ``garch`` (..., S_g, P)."""
    own = log_spread(model, last_close)
    ratio = np.where(own > 0, log_spread(garch, last_close) / np.where(own > 0, own, 1.0), 1.0)
    return np.maximum(ratio, 1e-6) ** gamma


def spread_by(closes: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Close paths (..., S, P) with their distances from the per-step median multiplied by ``factor`` (..., P)."""
    median = np.median(closes, axis=-2, keepdims=True)
    return median + factor[..., None, :] * (closes - median)


def fit_follow(model: np.ndarray, garch: np.ndarray, realised: np.ndarray, last_close: np.ndarray) -> float:
    """The exponent in :data:`FOLLOW_GRID` whose moved past forecasts score the lowest mean CRPS (relative
    to each past origin's last close). ``model`` (K, S, P), ``garch`` (K, S_g, P), ``realised`` (K, P)."""
    from ..stats.scores import crps_samples

    model = np.asarray(model, dtype=np.float64)
    last = np.asarray(last_close, dtype=np.float64)
    scores = []
    for gamma in FOLLOW_GRID:
        moved = spread_by(model, follow_factor(model, garch, last, gamma))
        scores.append(float((crps_samples(np.moveaxis(moved, 1, 0), realised) / last[:, None]).mean()))
    return float(FOLLOW_GRID[int(np.argmin(scores))])


def _pair_sums(x: np.ndarray) -> np.ndarray:
    """``sum_ij |x_i - x_j|`` over axis 0 of ``x`` (S, ...), exactly by sorting."""
    x = np.sort(x, axis=0)
    s = x.shape[0]
    weights = (2 * np.arange(s) - s + 1).astype(np.float64).reshape((s,) + (1,) * (x.ndim - 1))
    return 2 * (weights * x).sum(axis=0)


def pool_terms(members: list[np.ndarray], realised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The linear pool's CRPS terms over M methods: ``a`` (M,), the mean ``E|X_m - y|``, and ``B`` (M, M),
    the mean ``E|X_m - X_n|``, averaged over origins and steps.

    ``members[m]`` (K, S_m, P) paths of method m (any S_m), ``realised`` (K, P), all in one unit."""
    m = len(members)
    a = np.array([float(np.abs(x - realised[:, None, :]).mean()) for x in members])
    own = [_pair_sums(np.moveaxis(x, 1, 0)) for x in members]  # (K, P) each
    b = np.zeros((m, m))
    for i in range(m):
        b[i, i] = float((own[i] / members[i].shape[1] ** 2).mean())
        for j in range(i + 1, m):
            both = _pair_sums(np.moveaxis(np.concatenate([members[i], members[j]], axis=1), 1, 0))
            cross = (both - own[i] - own[j]) / 2 / (members[i].shape[1] * members[j].shape[1])
            b[i, j] = b[j, i] = float(cross.mean())
    return a, b


@functools.lru_cache(maxsize=8)
def simplex_grid(m: int, steps: int = GRID) -> np.ndarray:
    """(G, m) every weight vector on the simplex with entries in multiples of ``1 / steps`` (read-only)."""
    rows = [c for c in itertools.product(range(steps + 1), repeat=m - 1) if sum(c) <= steps]
    grid = np.array([[*c, steps - sum(c)] for c in rows], dtype=np.float64) / steps
    grid.setflags(write=False)
    return grid


def best_weights(a: np.ndarray, b: np.ndarray, steps: int = GRID) -> np.ndarray:
    """(M,) the weights on the simplex grid with the lowest pooled CRPS ``w·a - ½ wᵀBw``."""
    grid = simplex_grid(len(a), steps)
    scores = grid @ a - 0.5 * np.einsum("gi,ij,gj->g", grid, b, grid)
    return grid[int(np.argmin(scores))]


def shrink_weights(fitted: np.ndarray, origins: int, prior: np.ndarray, strength: float) -> np.ndarray:
    """``(origins · fitted + strength · prior) / (origins + strength)``."""
    return (origins * fitted + strength * prior) / (origins + strength)


def fit_weights(model: np.ndarray, baselines: dict[str, np.ndarray], realised: np.ndarray, last_close: np.ndarray,
                prior: dict[str, float] | None = None, strength: float = PRIOR_ORIGINS) -> dict[str, float]:
    """Per method, the share of paths in the pool: minimum CRPS over the past origins, shrunk toward
    ``prior`` (default :data:`PRIOR_WEIGHTS`) with weight ``strength`` origins; the shares sum to 1.

    ``model`` (K, S, P) the model's past close paths, ``baselines[name]`` (K, S_b, P), ``realised`` (K, P),
    ``last_close`` (K,) the close before each past origin (scores are relative to it)."""
    prior = PRIOR_WEIGHTS if prior is None else prior
    names = [MODEL, *[n for n in BASELINES if n in baselines]]
    scale = 1.0 / np.asarray(last_close, dtype=np.float64)
    members = [np.asarray(model, dtype=np.float64) * scale[:, None, None]]
    members += [np.asarray(baselines[n], dtype=np.float64) * scale[:, None, None] for n in names[1:]]
    a, b = pool_terms(members, np.asarray(realised, dtype=np.float64) * scale[:, None])
    w0 = np.array([prior.get(n, 0.0) for n in names])
    w0 = w0 / w0.sum() if w0.sum() > 0 else np.eye(len(names))[0]
    weights = shrink_weights(best_weights(a, b), len(model), w0, strength)
    return {n: float(w) for n, w in zip(names, weights)}


def path_counts(weights: dict[str, float], sample_count: int) -> dict[str, int]:
    """Paths per method out of ``sample_count`` in proportion to ``weights`` (largest remainders; ties
    go in :data:`METHODS` order), summing to ``sample_count``."""
    names = [n for n in METHODS if n in weights]
    exact = np.array([weights[n] for n in names]) * sample_count
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for i in order[:sample_count - int(counts.sum())]:
        counts[i] += 1
    return {n: int(c) for n, c in zip(names, counts)}


def dress(model_bars: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Model bars (S, P, C) moved onto the close paths ``closes`` (S, P): each bar's prices multiplied by
    ``close / model close`` (a bar whose model close is not positive becomes a flat bar at the close)."""
    out = np.array(model_bars, dtype=np.float64)
    model_close = out[..., CLOSE]
    ok = model_close > 0
    ratio = np.where(ok, closes / np.where(ok, model_close, 1.0), 1.0)
    out[..., PRICES] *= ratio[..., None]
    flat = ~ok
    if flat.any():
        out[..., PRICES] = np.where(flat[..., None], closes[..., None], out[..., PRICES])
    return out


def pool_paths(model_bars: np.ndarray, baselines: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """(S, P, C) the linear pool: the first ``counts[kronos]`` model paths as they are, then for each
    baseline its first ``counts[name]`` close paths dressed in the bars of the model paths not kept (in
    order, cycling when the model keeps more than it gives away), in :data:`METHODS` order.

    ``model_bars`` (S, P, C); ``baselines[name]`` (>= S, P) closes."""
    s = len(model_bars)
    counts = path_counts(weights, s)
    kept = counts.get(MODEL, 0)
    parts = [np.asarray(model_bars[:kept], dtype=np.float64)]
    spare = list(range(kept, s)) or list(range(s))
    donors = itertools.cycle(spare)
    for name in BASELINES:
        n = counts.get(name, 0)
        if n:
            rows = [next(donors) for _ in range(n)]
            parts.append(dress(model_bars[rows], baselines[name][:n]))
    return np.concatenate(parts).astype(model_bars.dtype)


def weights_text(weights: dict[str, float]) -> str:
    """E.g. ``kronos 55%, garch_t 30%, bootstrap 15%`` (methods with a share of at least 0.5%)."""
    return ", ".join(f"{n} {w:.0%}" for n, w in weights.items() if w >= 0.005) or "none"


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """``weights`` as floats, checked: known methods, finite and >= 0, summing to 1."""
    out = {}
    for name, value in weights.items():
        if name not in METHODS:
            raise ValueError(f"combination weight for unknown method {name!r}; methods: {', '.join(METHODS)}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"combination weight of {name} must be a finite number >= 0, got {value!r}")
        out[name] = value
    if out and abs(sum(out.values()) - 1.0) > 1e-6:
        raise ValueError(f"combination weights must sum to 1, got {sum(out.values()):.6f}")
    return out
