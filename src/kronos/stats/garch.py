"""GARCH(1,1) with Student-t innovations: fitted with the optional ``arch`` package, simulated in numpy.

The fit is ``arch.arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=True)``.
Zero mean: over a few hundred bars an estimated drift is mostly noise, and the Gaussian random walk it is
compared with has none either. ``rescale=True`` lets ``arch`` multiply the returns by a power of ten so
their variance is of order 1..1000 (intraday log returns are ~1e-3, too small for its optimiser); the
parameters are converted back to log-return units here, so :func:`simulate_garch_t` works in plain
log returns.

Simulated log returns are clipped to ± the largest absolute log return of the history window (the range
the bootstrap draws from). Prices driven by Student-t log returns have no finite mean, so without a bound a
single extreme draw on a near-integrated fit (alpha + beta ~ 1 after a huge move) can compound into a path
millions of times the last close and dominate a pooled price CRPS. The clip only touches draws beyond
anything seen in the history window.

The fit runs with the BLAS libraries of NumPy and SciPy held to one thread (``threadpoolctl``): their
optimiser's results differ in the last bits with the thread count, so without the limit a Ray actor
(one thread) and the driver (all cores) fitted the same returns to slightly different parameters, and a
combined forecast depended on where it ran. On 1,000 returns one thread is also the faster.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from dataclasses import dataclass

import numpy as np

MIN_RETURNS = 30  # fewer returns than this: no fit (the caller falls back)
INSTALL_HINT = "pip install 'kronos-kline[garch]'"


def garch_available() -> bool:
    """True when the ``arch`` and ``threadpoolctl`` packages can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("arch", "threadpoolctl"))


@dataclass(frozen=True)
class GarchFit:
    """Fitted GARCH(1,1)-t in log-return units (the fit's rescaling undone).

    ``sigma2_t = omega + alpha * eps_{t-1}^2 + beta * sigma2_{t-1}``, ``eps_t = sigma_t * z_t`` with z_t
    Student-t with ``nu`` degrees of freedom scaled to unit variance. ``last_variance`` and
    ``last_residual`` are sigma2 and eps of the last history bar; ``scale`` is the factor ``arch``
    multiplied the returns by before fitting; ``bound`` the largest absolute history log return (the clip
    of simulated returns, see the module docstring).
    """

    omega: float
    alpha: float
    beta: float
    nu: float
    last_variance: float
    last_residual: float
    scale: float
    bound: float = math.inf

    @property
    def next_variance(self) -> float:
        """Conditional variance of the first bar after the history (log-return units squared)."""
        return self.omega + self.alpha * self.last_residual**2 + self.beta * self.last_variance

    def is_usable(self) -> bool:
        """Finite parameters inside the model's domain (omega >= 0, alpha, beta >= 0, nu > 2)."""
        values = (self.omega, self.alpha, self.beta, self.nu, self.last_variance, self.last_residual, self.scale)
        return (all(math.isfinite(v) for v in values) and self.omega >= 0 and self.alpha >= 0 and self.beta >= 0
                and self.nu > 2 and self.last_variance >= 0 and self.scale > 0 and self.bound > 0)


@functools.cache
def _blas():
    """The BLAS libraries of NumPy and SciPy (``threadpoolctl.ThreadpoolController``), found once per process:
    finding them costs milliseconds, limiting them for one fit microseconds."""
    import arch  # noqa: F401  (with SciPy's optimiser: loads every BLAS the fit uses, so the controller sees it)
    import scipy.optimize  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def fit_garch_t(returns: np.ndarray) -> GarchFit | None:
    """Fit GARCH(1,1)-t to log returns (N,); None when ``arch`` is missing, N < ``MIN_RETURNS``, the
    fit raises or does not converge, or its parameters are not finite/valid."""
    returns = np.asarray(returns, dtype=np.float64)
    returns = returns[np.isfinite(returns)]
    if len(returns) < MIN_RETURNS or not garch_available() or float(returns.std()) == 0.0:
        return None
    from arch import arch_model

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"), _blas().limit(limits=1, user_api="blas"):
            warnings.simplefilter("ignore")
            model = arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=True)
            result = model.fit(disp="off", show_warning=False)
        if result.convergence_flag != 0:
            return None
        params = result.params
        scale = float(result.scale)
        fit = GarchFit(
            omega=float(params["omega"]) / scale**2, alpha=float(params["alpha[1]"]),
            beta=float(params["beta[1]"]), nu=float(params["nu"]),
            last_variance=float(np.asarray(result.conditional_volatility)[-1]) ** 2 / scale**2,
            last_residual=float(np.asarray(result.resid)[-1]) / scale, scale=scale,
            bound=float(np.abs(returns).max()))
    except Exception:  # any failure of the optimiser means "no fit at this origin"
        return None
    return fit if fit.is_usable() else None


def simulate_garch_t(fit: GarchFit, sample_count: int, pred_len: int, rng: np.random.Generator) -> np.ndarray:
    """(S, P) simulated log returns of the next ``pred_len`` bars, ``sample_count`` paths.

    The first bar's variance follows from the last history bar's variance and residual; each later bar's
    from the path's own previous variance and simulated residual. Returns are clipped to ``±fit.bound``
    (the clipped value is also the residual the recursion sees).
    """
    unit = math.sqrt((fit.nu - 2.0) / fit.nu)  # Student-t scaled to unit variance
    shocks = rng.standard_t(fit.nu, size=(sample_count, pred_len)) * unit
    variance = np.full(sample_count, fit.next_variance)
    out = np.empty((sample_count, pred_len))
    for step in range(pred_len):
        out[:, step] = np.clip(np.sqrt(variance) * shocks[:, step], -fit.bound, fit.bound)
        variance = fit.omega + fit.alpha * out[:, step] ** 2 + fit.beta * variance
    return out
