"""OnnxPredictor: the forecasting interface of :class:`kronos.forecasting.predictor.KronosPredictor` on ONNX Runtime,
with NumPy and pandas only (no PyTorch).

It is a backend of the forecasting door (:mod:`kronos.forecasting.forecast`): it supplies the sample paths
(each history z-scored and clipped, encoded to tokens, continued by the network with hierarchical s1 then
s2 sampling on the same window and cache schedule, decoded back to bars, optionally dequantised with the
tokenizer's own reconstruction residuals, mapped back to input units); the lookback, seeds, calibration
from forecasts at past origins, candle repair and the Forecast are the door's, shared with PyTorch.
Random numbers come from NumPy generators: a seed reproduces this backend's paths, not the PyTorch ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..data.features import Normalizer, check_count
from ..forecasting.calibration import MAX_ORIGINS, PATHS_PER_ORIGIN, Calibration
from ..forecasting.forecast import dequantise_bars, forecast_series, to_input_units
from ..forecasting.inputs import SeriesInput, from_frames
from ..forecasting.options import ForecastOptions
from ..forecasting.past_forecasts import PastForecasts
from ..forecasting.result import DEFAULT_PATHS, DEFAULT_QUANTILES, Forecast
from ..forecasting.sampling import SamplingConfig
from ..forecasting.verbs import forecast_frame_of
from .runtime import OnnxKronos
from .sampling import RowGenerators


def _groups(keys: Sequence[Any]) -> list[list[int]]:
    """Indices grouped by equal key, in order of first appearance."""
    out: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return list(out.values())


class OnnxPredictor:
    """Forecast OHLCV bars with a folder written by ``kronos export onnx`` on ONNX Runtime.

    Args:
        folder: the exported folder.
        dtype: ``"float32"`` (the exported weights) or ``"int8"`` (ONNX Runtime's dynamic quantisation).
        providers: execution providers, e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]``
            (default CPU).
        threads: intra-op threads per session (default: ONNX Runtime's choice).
        max_context, lookback, clip: as :class:`~kronos.forecasting.predictor.KronosPredictor`; default: what the
            folder records from the exported predictor.
    """

    def __init__(self, folder: str | os.PathLike, dtype: str = "float32", providers: Sequence[str] | None = None,
                 threads: int | None = None, max_context: int | None = None, lookback: int | None = None,
                 clip: float | None = None):
        self.net = OnnxKronos(folder, dtype=dtype, providers=providers, threads=threads)
        meta = self.net.meta
        self.max_context = check_count("max_context", max_context if max_context is not None else meta["max_context"])
        positions = meta.get("max_positions", meta["max_context"])
        if self.max_context > positions:
            raise ValueError(f"max_context={self.max_context} is more than the {positions} positions {folder} was "
                             "exported for")
        self.net.max_context = self.max_context
        lookback = lookback if lookback is not None else meta.get("lookback", self.max_context)
        self.lookback = min(check_count("lookback", lookback), self.max_context)
        self.clip = float(clip if clip is not None else meta.get("clip", 5))
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.dtype = dtype
        self.device = "cuda" if any("CUDA" in p for p in self.net.providers) else "cpu"
        self.backend = "onnx"
        self.sources = {"onnx": str(folder), **meta.get("sources", {})}
        self._said_lookback = False
        self.past_forecasts = PastForecasts()  # calibration's past-origin forecasts, by content
        self.calibration_paths = PATHS_PER_ORIGIN  # sample paths per past origin
        self.calibration_origins = MAX_ORIGINS  # most past origins per forecast

    @classmethod
    def from_onnx(cls, folder: str | os.PathLike, **kwargs: Any) -> OnnxPredictor:
        """The same as ``OnnxPredictor(folder, **kwargs)``."""
        return cls(folder, **kwargs)

    # -- the backend of the forecasting door ----------------------------------------------------------
    @staticmethod
    def random_stream(seed: Any, rows: int) -> RowGenerators:
        """One NumPy generator for the whole batch: ``seed`` itself when it is one, else seeded by it."""
        if isinstance(seed, np.random.Generator):
            return RowGenerators([seed], rows)
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"seed must be an int, a list of ints or a numpy Generator, got {type(seed).__name__}")
        return RowGenerators.from_seed(seed, rows)

    @staticmethod
    def series_streams(seeds: Sequence[int], rows: int) -> RowGenerators:
        """One NumPy generator per series, ``rows`` paths each."""
        return RowGenerators([np.random.default_rng(int(s)) for s in seeds], rows)

    def network_identity(self) -> tuple[Any, ...]:
        """The exported folder and how it runs."""
        return ("onnx", str(self.sources.get("onnx")), self.dtype, tuple(self.net.providers))

    def _encode(self, normalised: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        s1: list[Any] = [None] * len(normalised)
        s2: list[Any] = [None] * len(normalised)
        for idx in _groups([len(x) for x in normalised]):
            b1, b2 = self.net.encode(np.stack([normalised[i] for i in idx]))
            for row, i in enumerate(idx):
                s1[i], s2[i] = b1[row], b2[row]
        return s1, s2

    def sample_paths(self, series: list[SeriesInput], sampling: SamplingConfig, samples: int,
                     streams: RowGenerators, *, use_cache: bool = True, verbose: bool = False,
                     dequantise: bool = False, should_stop: Callable[[], bool] | None = None) -> list[np.ndarray]:
        """Per series, (samples, pred_len, 6) float32 paths in input units (``use_cache``, ``verbose`` and
        ``should_stop`` are PyTorch's; this backend always caches and runs each group to its end)."""
        norms = [Normalizer.fit(s.bars, self.clip) for s in series]
        normalised = [n.transform(s.bars) for n, s in zip(norms, series)]
        s1_hist, s2_hist = self._encode(normalised)
        decoded: list[Any] = [None] * len(series)
        for idx in _groups([(len(s.bars), s.pred_len) for s in series]):
            pred_len = series[idx[0]].pred_len
            stamps = np.stack([np.concatenate([series[i].x_stamp, series[i].y_stamp]) for i in idx])
            gen1, gen2 = self.net.generate(np.stack([s1_hist[i] for i in idx]), np.stack([s2_hist[i] for i in idx]),
                                           stamps, pred_len, sampling, samples, streams.subset(idx, samples))
            hist = len(s1_hist[idx[0]])
            keep = min(hist + pred_len, self.max_context) - pred_len  # history tokens in the decoded window
            past1 = np.repeat(np.stack([s1_hist[i][hist - keep:] for i in idx]), samples, 0)
            past2 = np.repeat(np.stack([s2_hist[i][hist - keep:] for i in idx]), samples, 0)
            z = self.net.decode(np.concatenate([past1, gen1], 1), np.concatenate([past2, gen2], 1))
            z = z[:, -pred_len:].reshape(len(idx), samples, pred_len, -1)
            for row, i in enumerate(idx):
                decoded[i] = z[row]
        if dequantise:
            for k, (z, x, norm) in enumerate(zip(decoded, normalised, norms)):
                residual = x - self.net.decode(s1_hist[k][None], s2_hist[k][None])[0]
                own = streams.subset([k], 1).generators[0]
                decoded[k] = dequantise_bars(z, residual[own.integers(len(residual), size=z.shape[:2])], norm)
        return [to_input_units(norm, z) for norm, z in zip(norms, decoded)]

    # -- public API (as KronosPredictor) -----------------------------------------------------------
    def forecast_batch(self, df_list: Sequence[pd.DataFrame], x_timestamp_list: Sequence[Any],
                       y_timestamp_list: Sequence[Any], pred_len: int | Sequence[int], *,
                       sample_count: int = DEFAULT_PATHS, T: float = 1.0, top_k: int | None = 0, top_p: float = 1.0,
                       quantiles: Sequence[float] = DEFAULT_QUANTILES, seed: Any = None, calibrate: bool = True,
                       dequantise: bool = True, verbose: bool = False,
                       calibration: Calibration | Sequence[Calibration | None] | None = None,
                       calibration_seed: int = 0, lookback: int | None = None) -> list[Forecast]:
        """Forecasts for many series (see :meth:`kronos.forecasting.predictor.KronosPredictor.forecast_batch`).
        ``seed``: an int or a ``numpy.random.Generator`` for the whole batch, or one int per series."""
        options = ForecastOptions(sample_count=sample_count, T=T, top_k=top_k, top_p=top_p, quantiles=quantiles,
                                  seed=seed, calibrate=calibrate, dequantise=dequantise, verbose=verbose,
                                  calibration=calibration, calibration_seed=calibration_seed, lookback=lookback)
        return forecast_series(self, from_frames(df_list, x_timestamp_list, y_timestamp_list, pred_len), options)

    def forecast(self, df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int, **kwargs: Any) -> Forecast:
        """Probabilistic forecast of one series (keywords as :meth:`forecast_batch`)."""
        return self.forecast_batch([df], [x_timestamp], [y_timestamp], pred_len, **kwargs)[0]

    def forecast_df(self, df: pd.DataFrame, *, pred_len: int, id_column: str | None = None,
                    timestamp_column: str | None = None, freq: str | None = None, calendar: str | None = None,
                    **forecast_kwargs: Any) -> pd.DataFrame:
        """Forecast every series of a wide or long DataFrame into one tidy frame
        (see :meth:`kronos.forecasting.predictor.KronosPredictor.forecast_df`)."""
        return forecast_frame_of(self, df, pred_len, id_column, timestamp_column, freq, calendar, forecast_kwargs)

    def predict_batch(self, df_list: Sequence[pd.DataFrame], x_timestamp_list: Sequence[Any],
                      y_timestamp_list: Sequence[Any], pred_len: int | Sequence[int], *, T: float = 1.0,
                      top_k: int | None = 0, top_p: float = 0.9, sample_count: int = 1, verbose: bool = False,
                      seed: Any = None) -> list[pd.DataFrame]:
        """Mean forecast per series, the original's ``predict_batch`` (whole history normalised, no calibration)."""
        options = ForecastOptions.original(T=T, top_k=top_k, top_p=top_p, sample_count=sample_count, verbose=verbose,
                                           seed=seed)
        inputs = from_frames(df_list, x_timestamp_list, y_timestamp_list, pred_len)
        return [f.mean for f in forecast_series(self, inputs, options)]

    def predict(self, df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int,
                **kwargs: Any) -> pd.DataFrame:
        """Mean forecast of one series (the original's ``predict``; keywords as :meth:`predict_batch`)."""
        return self.predict_batch([df], [x_timestamp], [y_timestamp], pred_len, **kwargs)[0]
