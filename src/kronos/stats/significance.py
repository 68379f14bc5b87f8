"""Statistics that tell skill from luck, in numpy: HAC (Newey–West) standard errors, Diebold–Mariano tests,
cross-sectional information coefficients, block bootstraps and the probabilistic / deflated Sharpe ratio.

Why numpy and not a library call: the reports compute these for every method, signal and horizon, and the
package should not need ``statsmodels`` or ``arch`` to write a report. The tests check the numbers against
those reference implementations on fixed data: :func:`newey_west` against ``statsmodels`` OLS with
``cov_type="HAC"`` (Bartlett kernel, no small-sample correction), :func:`block_bootstrap_indices` against
``arch.bootstrap.CircularBlockBootstrap`` drawn from the same generator.

p-values use the normal approximation to the t-statistic (the samples here are tens to thousands of dates).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def default_lags(n: int) -> int:
    """The Newey–West (1994) plug-in lag count ``floor(4 * (n / 100) ** (2 / 9))`` (0 for n < 2)."""
    return int(math.floor(4 * (n / 100) ** (2 / 9))) if n >= 2 else 0


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def two_sided_p(t: float) -> float:
    """Two-sided p-value of a t-statistic under the normal approximation (NaN for NaN)."""
    return 2 * (1 - _NORMAL.cdf(abs(t))) if math.isfinite(t) else float("nan")


@dataclass(frozen=True)
class MeanTest:
    """The mean of a series with its HAC standard error: ``t = mean / se``, two-sided ``p``, ``lags`` of the
    Bartlett kernel, ``n`` finite values."""

    mean: float
    se: float
    t: float
    p: float
    lags: int
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def newey_west(x: np.ndarray, lags: int | None = None) -> MeanTest:
    """Mean of ``x`` (T,) (NaN left out, the rest taken as consecutive) with its Newey–West standard error.

    Long-run variance ``S = g0 + 2 * sum_{j=1..L} (1 - j / (L + 1)) * g_j`` with ``g_j = (1/T) sum_t e_t e_{t-j}``
    of the demeaned values ``e``; ``se = sqrt(S / T)``. ``lags`` L defaults to :func:`default_lags`; use at
    least ``h - 1`` for overlapping ``h``-step outcomes. NaN numbers with fewer than 2 values.
    """
    x = _finite(x)
    n = len(x)
    if n < 2:
        return MeanTest(float(x.mean()) if n else float("nan"), float("nan"), float("nan"), float("nan"), 0, n)
    lags = default_lags(n) if lags is None else int(min(max(lags, 0), n - 1))
    e = x - x.mean()
    long_run = float(e @ e) / n
    for j in range(1, lags + 1):
        long_run += 2 * (1 - j / (lags + 1)) * float(e[j:] @ e[:-j]) / n
    se = math.sqrt(long_run / n) if long_run > 0 else float("nan")
    t = float(x.mean()) / se if se > 0 else float("nan")
    return MeanTest(float(x.mean()), se, t, two_sided_p(t), lags, n)


def diebold_mariano(loss: np.ndarray, reference: np.ndarray, lags: int | None = None) -> MeanTest:
    """Diebold–Mariano test of equal expected loss: Newey–West test of the mean of ``loss - reference``
    (both (T,), paired; pairs with a NaN left out). A negative ``t`` means ``loss`` is lower (better)."""
    loss, reference = np.asarray(loss, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if loss.shape != reference.shape:
        raise ValueError(f"loss {loss.shape} and reference {reference.shape} must have the same shape")
    return newey_west(loss - reference, lags)


# -- information coefficients ---------------------------------------------------------------------------

def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties given their average rank (as scipy.stats.rankdata 'average')."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    average = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator > 0 else float("nan")


def cross_sectional_ic(scores: np.ndarray, realised: np.ndarray, minimum: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per date (row), the Pearson (IC) and Spearman (RankIC, average ranks for ties) correlation across
    names (columns) of ``scores`` and ``realised``, both (D, N); names where either is NaN are left out.
    NaN on dates with fewer than ``minimum`` names or no spread on either side."""
    scores, realised = np.asarray(scores, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    if scores.shape != realised.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and realised {realised.shape} must be the same (dates, names) shape")
    ic, rank_ic = np.full(len(scores), np.nan), np.full(len(scores), np.nan)
    for d, (s, r) in enumerate(zip(scores, realised)):
        ok = np.isfinite(s) & np.isfinite(r)
        if ok.sum() < minimum:
            continue
        ic[d] = _correlation(s[ok], r[ok])
        rank_ic[d] = _correlation(rankdata(s[ok]), rankdata(r[ok]))
    return ic, rank_ic


def ic_summary(ic: np.ndarray, lags: int | None = None) -> dict[str, float]:
    """Summary of a per-date IC series (D,): ``mean``, ``std`` (ddof 1), ``icir`` (mean / std, per date),
    Newey–West ``t`` and ``p`` of the mean, ``hit_rate`` (share of dates with IC > 0) and ``dates``."""
    values = _finite(ic)
    test = newey_west(values, lags)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return {"mean": test.mean, "std": std, "icir": test.mean / std if std > 0 else float("nan"),
            "t": test.t, "p": test.p, "hit_rate": float((values > 0).mean()) if len(values) else float("nan"),
            "dates": float(len(values))}


# -- bootstrap and Sharpe ratios ----------------------------------------------------------------------------

def default_block(n: int) -> int:
    """Block length ``max(1, round(n ** (1/3)))`` for a block bootstrap of ``n`` observations."""
    return max(1, int(round(n ** (1 / 3))))


def block_bootstrap_indices(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) indices of one circular block bootstrap resample: ``ceil(n / block)`` uniform block starts,
    each followed by ``block - 1`` consecutive indices (wrapping around the end), cut to ``n``."""
    if n < 1 or block < 1:
        raise ValueError(f"need n >= 1 and block >= 1, got n={n}, block={block}")
    starts = rng.integers(0, n, size=-(-n // block))
    return ((starts[:, None] + np.arange(block)).ravel() % n)[:n]


def sharpe(returns: np.ndarray, periods_per_year: float = 1.0) -> float:
    """Mean over standard deviation (ddof 1) of per-period ``returns``, times ``sqrt(periods_per_year)``."""
    r = _finite(returns)
    if len(r) < 2 or r.std(ddof=1) == 0:
        return float("nan")
    return float(r.mean() / r.std(ddof=1) * math.sqrt(periods_per_year))


def bootstrap_sharpe_interval(returns: np.ndarray, periods_per_year: float = 1.0, level: float = 0.95,
                              reps: int = 2000, block: int | None = None, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the Sharpe ratio from ``reps`` circular block bootstrap resamples of the
    per-period ``returns`` (block length :func:`default_block` unless given). NaN with fewer than 3 returns."""
    r = _finite(returns)
    if len(r) < 3:
        return float("nan"), float("nan")
    block = block or default_block(len(r))
    rng = np.random.default_rng(seed)
    draws = r[np.stack([block_bootstrap_indices(len(r), block, rng) for _ in range(reps)])]
    std = draws.std(axis=1, ddof=1)
    values = np.where(std > 0, draws.mean(axis=1) / np.where(std > 0, std, 1.0), np.nan) * math.sqrt(periods_per_year)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _moments(r: np.ndarray) -> tuple[float, float, float]:
    """Per-period Sharpe (ddof 1), skewness and (non-excess) kurtosis of ``r``."""
    sd = r.std(ddof=1)
    z = (r - r.mean()) / r.std()
    return float(r.mean() / sd), float((z**3).mean()), float((z**4).mean())


def probabilistic_sharpe(returns: np.ndarray, benchmark: float = 0.0) -> float:
    """Probabilistic Sharpe ratio (Bailey & López de Prado, 2012): the probability that the true per-period
    Sharpe exceeds ``benchmark`` (per period, not annualised) given the sample's length, skewness and
    kurtosis: ``Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2))``."""
    r = _finite(returns)
    if len(r) < 3 or r.std() == 0:
        return float("nan")
    sr, skew, kurt = _moments(r)
    denominator = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    if denominator <= 0:
        return float("nan")
    return _NORMAL.cdf((sr - benchmark) * math.sqrt(len(r) - 1) / math.sqrt(denominator))


def expected_max_sharpe(trials: int, variance: float) -> float:
    """Expected largest of ``trials`` per-period Sharpe estimates whose true value is 0 and whose variance
    across trials is ``variance`` (Bailey & López de Prado, 2014, the deflated Sharpe's benchmark):
    ``sqrt(V) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)))``, g the Euler–Mascheroni constant."""
    if trials < 2 or not variance > 0:
        return 0.0
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / trials)
                                  + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (trials * math.e)))


def deflated_sharpe(returns: np.ndarray, trials: int, variance: float | None = None) -> float:
    """Deflated Sharpe ratio: :func:`probabilistic_sharpe` against :func:`expected_max_sharpe` of ``trials``
    signals tried. ``variance``: variance of the per-period Sharpe estimates across those trials; default
    the variance of one estimate under no skill, ``1 / (T - 1)``."""
    r = _finite(returns)
    if len(r) < 3:
        return float("nan")
    variance = 1 / (len(r) - 1) if variance is None or not math.isfinite(variance) else variance
    return probabilistic_sharpe(r, expected_max_sharpe(trials, variance))
