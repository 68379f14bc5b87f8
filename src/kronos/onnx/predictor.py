"""OnnxPredictor: the forecasting interface of :class:`kronos.forecasting.predictor.KronosPredictor` on ONNX Runtime,
with NumPy and pandas only (no PyTorch).

The pipeline is the PyTorch predictor's: each history's last ``lookback`` bars are z-scored and clipped,
encoded to tokens, continued by the network (hierarchical s1 then s2 sampling, the same window and cache
schedule), decoded back to bars, optionally dequantised with the tokenizer's own reconstruction residuals
and calibrated from forecasts at past origins (:mod:`kronos.forecasting.calibration`), then mapped back to input units.
Random numbers come from NumPy generators: a seed reproduces this backend's paths, not the PyTorch ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..bars import CLOSE, FEATURE_COLUMNS, NORM_EPS, PRICE_INDICES
from ..data.candles import valid_candles
from ..data.features import (
    Normalizer,
    as_timestamps,
    bar_features,
    check_count,
    time_features,
)
from ..forecasting.calibration import (
    PATHS_PER_ORIGIN,
    Calibration,
    fit_scale,
    fit_shrink,
    minimum_history,
    plan_origins,
    recentre,
    rescale_paths,
)
from ..forecasting.result import DEFAULT_PATHS, DEFAULT_QUANTILES, Forecast
from .runtime import OnnxKronos
from .sampling import RowGenerators, Sampling

NON_NEGATIVE = ("volume", "amount")
_READ_KEYWORDS = ("sort", "nan", "rename", "adjusted", "time_unit")

log = logging.getLogger("kronos.forecasting.predictor")


@dataclass
class _Series:
    bars: np.ndarray  # (T, 6) float32
    x_stamp: np.ndarray  # (T, 5)
    y_stamp: np.ndarray  # (P, 5)
    y_index: pd.DatetimeIndex

    @property
    def pred_len(self) -> int:
        return len(self.y_stamp)

    def tail(self, bars: int) -> _Series:
        return _Series(self.bars[-bars:], self.x_stamp[-bars:], self.y_stamp, self.y_index)

    def past_origin(self, end: int, lookback: int) -> _Series:
        start = max(0, end - lookback)
        return _Series(self.bars[start:end], self.x_stamp[start:end], self.x_stamp[end:end + self.pred_len],
                       self.y_index)


def _groups(keys: Sequence[Any]) -> list[list[int]]:
    """Indices grouped by equal key, in order of first appearance."""
    out: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return list(out.values())


def _dequantise(z: np.ndarray, residual: np.ndarray, norm: Normalizer) -> np.ndarray:
    """As the PyTorch predictor: the four prices move by the close's residual in input units."""
    out = z + residual
    scale = norm.std[:4] + np.float32(NORM_EPS)
    shift = residual[..., CLOSE:CLOSE + 1] * scale[CLOSE]
    out[..., :4] = z[..., :4] + shift / scale
    return out


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

    @classmethod
    def from_onnx(cls, folder: str | os.PathLike, **kwargs: Any) -> OnnxPredictor:
        """The same as ``OnnxPredictor(folder, **kwargs)``."""
        return cls(folder, **kwargs)

    # -- validation ---------------------------------------------------------------------------------
    @staticmethod
    def _series(df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int, name: str) -> _Series:
        bars = bar_features(df, name)
        if len(bars) < 2:
            raise ValueError(f"{name} has {len(bars)} history row(s); at least 2 are needed")
        x_index = as_timestamps(x_timestamp, "x_timestamp", expected_len=len(bars))
        if y_timestamp is None or len(y_timestamp) == 0:
            raise ValueError(f"y_timestamp is empty; give the {pred_len} timestamp(s) of the bars to forecast")
        y_index = as_timestamps(y_timestamp, "y_timestamp", expected_len=pred_len)
        if y_index[0] <= x_index[-1]:
            raise ValueError(f"y_timestamp must start after the last x_timestamp ({x_index[-1]}), got {y_index[0]}")
        return _Series(bars, time_features(x_index), time_features(y_index), y_index)

    @staticmethod
    def _generators(seed: Any, n: int, samples: int) -> RowGenerators:
        if isinstance(seed, np.random.Generator):
            return RowGenerators([seed], samples)
        if isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, (str, bytes)):
            seeds = list(seed)
            if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
                raise TypeError(f"seed as a list takes one int >= 0 per series, got {seeds[:5]!r}")
            if len(seeds) != n:
                raise ValueError(f"seed has {len(seeds)} entries for {n} series")
            return RowGenerators([np.random.default_rng(int(s)) for s in seeds], samples)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an int, a list of ints or a numpy Generator, got {type(seed).__name__}")
        return RowGenerators.from_seed(None if seed is None else int(seed), samples)

    # -- the pipeline -------------------------------------------------------------------------------
    def _encode(self, normalised: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        s1: list[Any] = [None] * len(normalised)
        s2: list[Any] = [None] * len(normalised)
        for idx in _groups([len(x) for x in normalised]):
            b1, b2 = self.net.encode(np.stack([normalised[i] for i in idx]))
            for row, i in enumerate(idx):
                s1[i], s2[i] = b1[row], b2[row]
        return s1, s2

    def _sample_paths(self, series: list[_Series], sampling: Sampling, samples: int, generators: RowGenerators,
                      dequantise: bool) -> list[np.ndarray]:
        """Per series, (samples, pred_len, 6) float32 paths in input units."""
        norms = [Normalizer.fit(s.bars, self.clip) for s in series]
        normalised = [n.transform(s.bars) for n, s in zip(norms, series)]
        s1_hist, s2_hist = self._encode(normalised)
        decoded: list[Any] = [None] * len(series)
        for idx in _groups([(len(s.bars), s.pred_len) for s in series]):
            pred_len = series[idx[0]].pred_len
            stamps = np.stack([np.concatenate([series[i].x_stamp, series[i].y_stamp]) for i in idx])
            gen1, gen2 = self.net.generate(np.stack([s1_hist[i] for i in idx]), np.stack([s2_hist[i] for i in idx]),
                                           stamps, pred_len, sampling, samples, generators.subset(idx, samples))
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
                own = generators.subset([k], 1).generators[0]
                decoded[k] = _dequantise(z, residual[own.integers(len(residual), size=z.shape[:2])], norm)
        paths = []
        for norm, z in zip(norms, decoded):
            values = norm.inverse(z)
            for column in NON_NEGATIVE:
                j = FEATURE_COLUMNS.index(column)
                values[..., j] = np.maximum(values[..., j], 0)
            paths.append(values)
        return paths

    def _truncate(self, series: list[_Series]) -> list[_Series]:
        longest = max(len(s.bars) for s in series)
        if longest > self.lookback and not self._said_lookback:
            log.info("forecast() feeds the network the last %d bars of each history (the model's lookback) and "
                     "normalises on them; earlier bars serve only calibration (a history of %d bars was given)",
                     self.lookback, longest)
            self._said_lookback = True
        return [s.tail(self.lookback) if len(s.bars) > self.lookback else s for s in series]

    def _calibrations(self, series: list[_Series], sampling: Sampling, generators: RowGenerators,
                      dequantise: bool) -> list[Calibration]:
        plans = [plan_origins(len(s.bars), s.pred_len, self.lookback) for s in series]
        past = [s.past_origin(end, self.lookback) for s, ends in zip(series, plans) for end in ends]
        if len(generators.generators) > 1:  # each past origin draws from its own series' generator
            generators = RowGenerators([g for g, ends in zip(generators.generators, plans) for _ in ends],
                                       PATHS_PER_ORIGIN)
        paths = self._sample_paths(past, sampling, PATHS_PER_ORIGIN, generators, dequantise) if past else []
        out, used = [], 0
        for s, ends in zip(series, plans):
            if not ends:
                need = minimum_history(s.pred_len, self.lookback)
                out.append(Calibration.skipped(s.pred_len, f"history of {len(s.bars)} bars is too short to "
                                                           f"calibrate {s.pred_len} steps: it needs {need}"))
                continue
            closes = np.stack([p[..., CLOSE] for p in paths[used:used + len(ends)]])
            realised = np.stack([s.bars[end:end + s.pred_len, CLOSE] for end in ends])
            used += len(ends)
            last = np.array([s.bars[end - 1, CLOSE] for end in ends], dtype=np.float64)
            shrink = fit_shrink(closes, realised, last)
            closes = recentre(closes, last[:, None, None], shrink)
            out.append(Calibration(fit_scale(closes, realised), len(ends), shrink=shrink,
                                   paths_per_origin=PATHS_PER_ORIGIN))
        return out

    def _forecast(self, df_list: Sequence[pd.DataFrame], x_timestamp_list: Sequence[Any],
                  y_timestamp_list: Sequence[Any], pred_len: int | Sequence[int], *, sample_count: int, T: float,
                  top_k: int | None, top_p: float, quantiles: Sequence[float], seed: Any, truncate: bool,
                  calibrate: bool, dequantise: bool, valid: bool = True) -> list[Forecast]:
        """As :meth:`KronosPredictor._forecast`: sample, calibrate (when asked) and, with ``valid``, repair every
        bar last (:func:`kronos.data.candles.valid_candles`)."""
        n = len(df_list)
        if n == 0:
            raise ValueError("df_list is empty")
        if len(x_timestamp_list) != n or len(y_timestamp_list) != n:
            raise ValueError(f"df_list has {n} series but x_timestamp_list has {len(x_timestamp_list)} and "
                             f"y_timestamp_list {len(y_timestamp_list)}")
        pred_lens = list(pred_len) if isinstance(pred_len, Sequence) else [pred_len] * n
        if len(pred_lens) != n:
            raise ValueError(f"pred_len has {len(pred_lens)} entries for {n} series")
        pred_lens = [check_count("pred_len", p) for p in pred_lens]
        levels = tuple(float(q) for q in quantiles)
        bad = [q for q in levels if not 0 <= q <= 1]
        if bad:
            raise ValueError(f"quantiles must be in [0, 1], got {bad}")
        check_count("sample_count", sample_count)
        sampling = Sampling(temperature=T, top_k=top_k, top_p=top_p)
        series = [self._series(df, xt, yt, p, name=f"df_list[{i}]" if n > 1 else "df")
                  for i, (df, xt, yt, p) in enumerate(zip(df_list, x_timestamp_list, y_timestamp_list, pred_lens))]
        generators = self._generators(seed, n, sample_count)
        used = self._truncate(series) if truncate else series
        paths = self._sample_paths(used, sampling, sample_count, generators, dequantise)
        finish = valid_candles if valid else (lambda p: p)
        if not calibrate:
            return [Forecast(finish(p), s.y_index, levels) for p, s in zip(paths, series)]
        forecasts = []
        for p, s, c in zip(paths, series, self._calibrations(series, sampling, generators, dequantise)):
            if not c.applied:
                log.info("no calibration: %s", c.note)
            else:
                p = rescale_paths(p, c.scale, PRICE_INDICES, CLOSE, float(s.bars[-1, CLOSE]), c.shrink)
            forecasts.append(Forecast(finish(p), s.y_index, levels, calibration=c))
        return forecasts

    # -- public API (as KronosPredictor) -----------------------------------------------------------
    def forecast_batch(self, df_list: Sequence[pd.DataFrame], x_timestamp_list: Sequence[Any],
                       y_timestamp_list: Sequence[Any], pred_len: int | Sequence[int], *,
                       sample_count: int = DEFAULT_PATHS, T: float = 1.0, top_k: int | None = 0, top_p: float = 1.0,
                       quantiles: Sequence[float] = DEFAULT_QUANTILES, seed: Any = None, calibrate: bool = True,
                       dequantise: bool = True, verbose: bool = False) -> list[Forecast]:
        """Forecasts for many series (see :meth:`kronos.forecasting.predictor.KronosPredictor.forecast_batch`).
        ``seed``: an int or a ``numpy.random.Generator`` for the whole batch, or one int per series."""
        return self._forecast(df_list, x_timestamp_list, y_timestamp_list, pred_len, sample_count=sample_count, T=T,
                              top_k=top_k, top_p=top_p, quantiles=quantiles, seed=seed, truncate=True,
                              calibrate=calibrate, dequantise=dequantise)

    def forecast(self, df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int, **kwargs: Any) -> Forecast:
        """Probabilistic forecast of one series (keywords as :meth:`forecast_batch`)."""
        return self.forecast_batch([df], [x_timestamp], [y_timestamp], pred_len, **kwargs)[0]

    def forecast_df(self, df: pd.DataFrame, *, pred_len: int, id_column: str | None = None,
                    timestamp_column: str | None = None, freq: str | None = None,
                    **forecast_kwargs: Any) -> pd.DataFrame:
        """Forecast every series of a wide or long DataFrame into one tidy frame
        (see :meth:`kronos.forecasting.predictor.KronosPredictor.forecast_df`)."""
        from ..data.calendar import future_timestamps
        from ..data.tables import TableError, column_key, frame_to_series

        check_count("pred_len", pred_len)
        reading = {k: forecast_kwargs.pop(k) for k in _READ_KEYWORDS if k in forecast_kwargs}
        try:
            series = frame_to_series(df, "df", id_column=id_column, time_column=timestamp_column, **reading)
        except TableError as exc:
            options = [("timestamp_column" if n == "time_column" else n, v) for n, v in exc.options]
            raise TableError(exc.where, exc.problem, exc.fix, options) from None
        futures = []
        for s in series:
            try:
                futures.append(future_timestamps(s.timestamps, pred_len, freq)[0])
            except ValueError as exc:
                raise ValueError(f"{s.source}: {exc}") from None
        forecasts = self.forecast_batch([s.frame() for s in series], [s.timestamps for s in series], futures,
                                        pred_len=pred_len, **forecast_kwargs)
        frames = [f.to_frame() for f in forecasts]
        if series[0].id_column is None:
            return frames[0]
        label = next((c for c in df.columns if column_key(c) == series[0].id_column), series[0].id_column)
        out = pd.concat([frame.assign(**{str(label): s.name}) for frame, s in zip(frames, series)], ignore_index=True)
        return out[[str(label), *frames[0].columns]]

    def predict_batch(self, df_list: Sequence[pd.DataFrame], x_timestamp_list: Sequence[Any],
                      y_timestamp_list: Sequence[Any], pred_len: int | Sequence[int], *, T: float = 1.0,
                      top_k: int | None = 0, top_p: float = 0.9, sample_count: int = 1, verbose: bool = False,
                      seed: Any = None) -> list[pd.DataFrame]:
        """Mean forecast per series, the original's ``predict_batch`` (whole history normalised, no calibration)."""
        forecasts = self._forecast(df_list, x_timestamp_list, y_timestamp_list, pred_len, sample_count=sample_count,
                                   T=T, top_k=top_k, top_p=top_p, quantiles=(), seed=seed, truncate=False,
                                   calibrate=False, dequantise=False, valid=False)
        return [f.mean for f in forecasts]

    def predict(self, df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int,
                **kwargs: Any) -> pd.DataFrame:
        """Mean forecast of one series (the original's ``predict``; keywords as :meth:`predict_batch`)."""
        return self.predict_batch([df], [x_timestamp], [y_timestamp], pred_len, **kwargs)[0]
