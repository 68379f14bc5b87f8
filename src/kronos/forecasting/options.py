"""ForecastOptions: every setting of a forecast in one frozen object, with one set of defaults, checked once.

:func:`kronos.forecasting.forecast.forecast_series` takes it; the predictors' verbs (``forecast``,
``forecast_batch``, ``forecast_df``, ``predict``, ``predict_batch``), the command line, the universe job,
evaluation, the backtest and the service build one and hand it over. NumPy only (the ONNX backend uses it
without PyTorch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..data.features import check_count
from .calibration import Calibration
from .result import DEFAULT_PATHS, DEFAULT_QUANTILES
from .sampling import SamplingConfig


def is_seed_list(seed: Any) -> bool:
    """Whether ``seed`` is one seed per series (a list, tuple or array of ints) rather than one for the batch."""
    return isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, (str, bytes))


def _is_generator(seed: Any) -> bool:
    """A random stream object: a ``torch.Generator`` (has ``manual_seed``) or a ``numpy.random.Generator``."""
    return isinstance(seed, np.random.Generator) or callable(getattr(seed, "manual_seed", None))


def _check_seed(seed: Any) -> Any:
    if seed is None or _is_generator(seed):
        return seed
    if is_seed_list(seed):
        seeds = list(seed)
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
            raise TypeError(f"seed as a list takes one int >= 0 per series, got {seeds[:5]!r}")
        return tuple(int(s) for s in seeds)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, a list of ints (one per series) or a random generator, got "
                        f"{type(seed).__name__}")
    return int(seed)


def _check_calibration(calibration: Any) -> Any:
    if calibration is None or isinstance(calibration, Calibration):
        return calibration
    given = tuple(calibration)
    for i, c in enumerate(given):
        if c is not None and not isinstance(c, Calibration):
            raise TypeError(f"calibration[{i}] must be a Calibration or None, got {type(c).__name__}")
    return given


@dataclass(frozen=True)
class ForecastOptions:
    """How to forecast: sampling, paths, quantiles, seeds, calibration, dequantisation, history and repair.

    Attributes:
        sample_count: sample paths per series (default 50).
        T, top_k, top_p: temperature (>= 0.001), top-k (0 or None: off, 1: greedy) and nucleus mass in
            (0, 1] (1: off) of the token draws.
        quantiles: levels in [0, 1] of :meth:`Forecast.quantile` and the tidy frame's columns.
        seed: None (fresh draws), an int or a random generator (``torch.Generator`` for the PyTorch
            backend, ``numpy.random.Generator`` for ONNX) for the whole batch, or one int >= 0 per series,
            so a series' paths do not depend on which series share its batch.
        calibrate: rescale the price paths' spread per horizon step from forecasts at past origins inside
            each history (:mod:`kronos.forecasting.calibration`).
        calibration: a fitted :class:`Calibration` to apply instead of fitting (one for all series, or one
            per series, None where it is to be fitted); its ``scale`` must have ``pred_len`` entries.
        calibration_seed: int >= 0 the past-origin forecasts are drawn with (with their content; not ``seed``).
        dequantise: add the tokenizer's reconstruction residuals, drawn from each series' own history.
        lookback: history bars the network sees and normalises on (None: the predictor's own).
        truncate: feed only the last ``lookback`` bars (False: the whole history, as the original ``predict``).
        valid: repair every sample bar into a valid candle as the very last step
            (:func:`kronos.data.candles.valid_candles`).
        use_cache: keep the keys/values of the network between generation steps.
        verbose: a progress bar over the generation steps on stderr.
        should_stop: a callable without arguments asked after every generation step; True stops the
            forecast with :class:`~kronos.forecasting.forecast.ForecastCancelled`.

    Every value is checked here, once, with errors that name it; ``sampling`` holds the checked
    :class:`~kronos.forecasting.sampling.SamplingConfig`.
    """

    sample_count: int = DEFAULT_PATHS
    T: float = 1.0
    top_k: int | None = 0
    top_p: float = 1.0
    quantiles: Sequence[float] = DEFAULT_QUANTILES
    seed: Any = None
    calibrate: bool = True
    calibration: Calibration | Sequence[Calibration | None] | None = None
    calibration_seed: int = 0
    dequantise: bool = True
    lookback: int | None = None
    truncate: bool = True
    valid: bool = True
    use_cache: bool = True
    verbose: bool = False
    should_stop: Callable[[], bool] | None = field(default=None, compare=False)
    sampling: SamplingConfig = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_count("sample_count", self.sample_count)
        levels = tuple(float(q) for q in self.quantiles)
        bad = [q for q in levels if not 0 <= q <= 1]
        if bad:
            raise ValueError(f"quantiles must be in [0, 1], got {bad}")
        object.__setattr__(self, "quantiles", levels)
        object.__setattr__(self, "sampling", SamplingConfig(temperature=self.T, top_k=self.top_k, top_p=self.top_p))
        object.__setattr__(self, "seed", _check_seed(self.seed))
        object.__setattr__(self, "calibration", _check_calibration(self.calibration))
        seed = self.calibration_seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise TypeError(f"calibration_seed must be an int >= 0, got {seed!r}")
        object.__setattr__(self, "calibration_seed", int(seed))
        if self.lookback is not None:
            object.__setattr__(self, "lookback", check_count("lookback", self.lookback))

    @classmethod
    def original(cls, *, T: float = 1.0, top_k: int | None = 0, top_p: float = 0.9, sample_count: int = 1,
                 verbose: bool = False, seed: Any = None, use_cache: bool = True) -> ForecastOptions:
        """The original ``predict``/``predict_batch``: the whole history normalised and encoded, nothing
        calibrated, dequantised or repaired (the decoded bars), no quantiles; ``top_p`` 0.9 by default."""
        return cls(sample_count=sample_count, T=T, top_k=top_k, top_p=top_p, quantiles=(), seed=seed,
                   calibrate=False, dequantise=False, truncate=False, valid=False, use_cache=use_cache,
                   verbose=verbose)

    def with_(self, **changes: Any) -> ForecastOptions:
        """A copy with ``changes`` (checked again)."""
        return replace(self, **changes)

    @property
    def per_series_seeds(self) -> bool:
        return isinstance(self.seed, tuple)
