"""KronosPredictor: DataFrames of bars in, forecast DataFrames (mean, quantiles, sample paths) out."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..bars import CLOSE, FEATURE_COLUMNS, NORM_EPS, PRICE_INDICES
from ..data.candles import valid_candles
from ..data.features import (
    Normalizer,
    as_timestamps,
    bar_features,
    check_count,
    time_features,
)
from ..model.checkpoint import read_predictor_info
from ..model.network import Kronos
from ..model.precision import check_supported, prepare
from ..model.tokenizer import KronosTokenizer
from .calibration import (
    MAX_ORIGINS,
    PATHS_PER_ORIGIN,
    Calibration,
    fit_scale,
    fit_shrink,
    minimum_history,
    plan_origins,
    recentre,
    rescale_paths,
)
from .generation import SamplingConfig, SeriesGenerators, generate_tokens
from .past_forecasts import PastForecasts, past_key, past_seed
from .result import DEFAULT_PATHS, DEFAULT_QUANTILES, Forecast

NON_NEGATIVE = ("volume", "amount")
# forecast_df: how df is read
_READ_KEYWORDS = ("sort", "nan", "rename", "adjusted", "time_unit", "date_format", "dayfirst")

log = logging.getLogger("kronos.forecasting.predictor")


class ForecastCancelled(RuntimeError):
    """Raised between generation steps when the ``should_stop`` callback of a forecast says so."""


def check_pairing(model: Kronos, tokenizer: KronosTokenizer) -> None:
    """Raise ``ValueError`` naming both values when the tokenizer's codes or bars do not fit the model."""
    model_cfg, tokenizer_cfg = model.config, tokenizer.config
    for name in ("s1_bits", "s2_bits"):
        ours, theirs = getattr(model_cfg, name), getattr(tokenizer_cfg, name)
        if ours != theirs:
            raise ValueError(f"the tokenizer does not fit the model: model {name}={ours}, tokenizer {name}={theirs}; "
                             "load the tokenizer the model was trained with")
    if tokenizer_cfg.d_in != len(FEATURE_COLUMNS):
        raise ValueError(f"the tokenizer does not fit the model: tokenizer d_in={tokenizer_cfg.d_in}, the predictor "
                         f"feeds {len(FEATURE_COLUMNS)} features ({', '.join(FEATURE_COLUMNS)})")


def _stopping(progress: Any, should_stop: Any) -> Any:
    """The per-step callback: ``progress`` (if any), after raising ForecastCancelled when ``should_stop()``."""
    if should_stop is None:
        return progress

    def step(done: int, total: int) -> None:
        if should_stop():
            raise ForecastCancelled(f"forecast stopped after {done} of {total} steps")
        if progress is not None:
            progress(done, total)

    return step


def auto_device() -> torch.device:
    """cuda if available, else mps, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class _Series:
    bars: np.ndarray  # (T, 6) float32
    x_stamp: np.ndarray  # (T, 5)
    y_stamp: np.ndarray  # (P, 5)
    y_index: pd.DatetimeIndex
    x_index: pd.DatetimeIndex  # (T,) timestamps of the history bars

    @property
    def pred_len(self) -> int:
        return len(self.y_stamp)

    def tail(self, bars: int) -> _Series:
        """The same forecast from only the last ``bars`` history bars."""
        return _Series(self.bars[-bars:], self.x_stamp[-bars:], self.y_stamp, self.y_index, self.x_index[-bars:])

    def past_origin(self, end: int, lookback: int) -> _Series:
        """A forecast of history bars ``[end, end + pred_len)`` from at most ``lookback`` bars before them."""
        start = max(0, end - lookback)
        horizon = self.x_stamp[end:end + self.pred_len]
        return _Series(self.bars[start:end], self.x_stamp[start:end], horizon, self.x_index[end:end + self.pred_len],
                       self.x_index[start:end])


def _window_tokens(hist: list[torch.Tensor], generated: torch.Tensor, series: list[int], keep_hist: int,
                   pred_len: int, samples: int) -> torch.Tensor:
    """(len(series) * samples, keep_hist + pred_len): the last history tokens, then each path's forecast."""
    rows = []
    for i in series:
        past = hist[i][len(hist[i]) - keep_hist:].expand(samples, -1)
        rows.append(torch.cat([past, generated[i * samples:(i + 1) * samples, :pred_len]], dim=1))
    return torch.cat(rows)


def _same_length_groups(arrays: Sequence[Any]) -> list[list[int]]:
    """Indices of ``arrays`` grouped by length (shortest first): the series that can share one batch."""
    groups: dict[int, list[int]] = {}
    for i, array in enumerate(arrays):
        groups.setdefault(len(array), []).append(i)
    return [groups[length] for length in sorted(groups)]


def _dequantise(z: np.ndarray, residual: np.ndarray, norm: Normalizer) -> np.ndarray:
    """Normalised bars z (S, P, 6) plus drawn residuals (S, P, 6). The four prices move by one amount in
    input units, the close's residual, so that each bar keeps its shape; volume and amount take their own."""
    out = z + residual
    scale = norm.std[:4] + np.float32(NORM_EPS)
    shift = residual[..., CLOSE:CLOSE + 1] * scale[CLOSE]  # (S, P, 1) in price units
    out[..., :4] = z[..., :4] + shift / scale
    return out


def _own_generator(generator: torch.Generator | SeriesGenerators | None, series: int) -> torch.Generator | None:
    """The generator series number ``series`` draws from."""
    return generator.generators[series] if isinstance(generator, SeriesGenerators) else generator


def _given_calibrations(calibration: Any, pred_lens: list[int]) -> list[Calibration | None]:
    """Per series, the fitted calibration given for it (None: fit one), checked against its pred_len."""
    n = len(pred_lens)
    if calibration is None or isinstance(calibration, Calibration):
        given = [calibration] * n
    else:
        given = list(calibration)
        if len(given) != n:
            raise ValueError(f"calibration has {len(given)} entries for {n} series")
    for i, (c, p) in enumerate(zip(given, pred_lens)):
        if c is not None and not isinstance(c, Calibration):
            raise TypeError(f"calibration[{i}] must be a Calibration or None, got {type(c).__name__}")
        if c is not None and len(c.scale) != p:
            raise ValueError(f"calibration{'' if n == 1 else f'[{i}]'} has {len(c.scale)} scale factors for "
                             f"pred_len {p}")
    return given


def _is_seed_list(seed: Any) -> bool:
    return isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, (str, bytes))


def _draws(n: int, shape: tuple[int, ...], generator: torch.Generator | None) -> np.ndarray:
    """Uniform row indices in [0, n) of the given shape, from ``generator`` (reproducible with the seed)."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(n, shape, generator=generator, device=device).cpu().numpy()


@contextmanager
def _progress_bar(enabled: bool, total: int):
    """A tqdm bar on stderr over generation steps when ``enabled``; yields the step callback (or None)."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="forecast", unit="bar", file=sys.stderr) as bar:
        yield lambda done, _total: bar.update(done - bar.n)


class KronosPredictor:
    """Forecast OHLCV bars with a Kronos network and its tokenizer.

    Args:
        model, tokenizer: the networks (moved to ``device`` and put in eval mode).
        device: "cpu", "cuda", "cuda:1", "mps" ...; picked automatically (cuda, mps, cpu) when None.
        max_context: most tokens the network sees (512 for the published small/base models).
        clip: normalised values are clipped to ±clip.
        dtype: how the network is stored and run: ``"float32"`` (default, exact), ``"bfloat16"`` or
            ``"int8"`` (CPU only), or a torch dtype (``torch.float32``, ``torch.bfloat16``, ``torch.int8``).
            The tokenizer stays float32. See :mod:`kronos.model.precision` and docs/performance.md.
        lookback: history bars ``forecast()`` feeds the network and normalises on (the lookback the model
            was trained with; default ``max_context``). Earlier bars serve only calibration.
    """

    def __init__(self, model: Kronos, tokenizer: KronosTokenizer, device: str | torch.device | None = None,
                 max_context: int = 512, clip: float = 5, dtype: str | torch.dtype | None = None,
                 lookback: int | None = None):
        check_pairing(model, tokenizer)
        self.device = torch.device(device) if device is not None else auto_device()
        check_supported(dtype, self.device)
        self.model = model.to(self.device).eval()
        self.dtype = prepare(self.model, dtype, self.device)
        self.tokenizer = tokenizer.to(self.device).eval()
        self.max_context = check_count("max_context", max_context)
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.clip = clip
        self.lookback = check_count("lookback", lookback) if lookback is not None else self.max_context
        self._said_lookback = False
        self.sources: dict[str, str] = {}  # from_pretrained: the model and tokenizer it loaded
        # calibration's past-origin forecasts, by content (see kronos.forecasting.past_forecasts)
        self.past_forecasts = PastForecasts()
        self.calibration_paths = PATHS_PER_ORIGIN  # sample paths per past origin
        self.calibration_origins = MAX_ORIGINS  # most past origins per forecast

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = "default", tokenizer: str | os.PathLike | None = None,
                        device: str | torch.device | None = None, max_context: int | None = None,
                        clip: float | None = None, lookback: int | None = None,
                        dtype: str | torch.dtype | None = None,
                        **hub_kwargs: Any) -> KronosPredictor:
        """Load a predictor from folders or hub ids (``"NeoQuasar/Kronos-small"``,
        ``"NeoQuasar/Kronos-Tokenizer-base"``), the bundled default model with ``"default"``, or a
        ``kronos train`` run's folder (its ``best/``).

        A model folder written by ``kronos train`` (or the bundled one) records in ``predictor.json`` the
        tokenizer it was trained with, its ``max_context``, ``lookback`` and the normalisation ``clip``; those
        are used unless given here. A given value that differs from the recorded one wins, with a warning
        on the ``kronos.forecasting.predictor`` logger. Without a record, ``tokenizer`` is required and ``max_context``
        defaults to 512, ``lookback`` to ``max_context``, ``clip`` to 5.
        ``dtype`` as in :class:`KronosPredictor`.
        """
        check_supported(dtype, torch.device(device) if device is not None else auto_device())
        from ..model.default_model import describe_source, resolve_source

        source = resolve_source(model, "model")
        info = read_predictor_info(source)
        if str(model) == "default" and "tokenizer" not in info:
            info["tokenizer"] = "default"
        recorded = info.get("tokenizer")
        if tokenizer is None:
            if recorded is None:
                raise ValueError(f"tokenizer= is required: {model} records no tokenizer (no predictor.json written by "
                                 "kronos train); give a folder, a hub id such as NeoQuasar/Kronos-Tokenizer-base, "
                                 "or 'default'")
            tokenizer = recorded
        elif recorded is not None and describe_source(tokenizer, "tokenizer") != describe_source(recorded, "tokenizer"):
            log.warning("tokenizer=%s differs from the one %s was trained with (%s); using %s", tokenizer, model,
                        recorded, tokenizer)
        for name, given in (("max_context", max_context), ("lookback", lookback), ("clip", clip)):
            if given is not None and name in info and given != info[name]:
                log.warning("%s=%s differs from the %s %s was trained with; using %s", name, given, info[name],
                            model, given)
        network = Kronos.from_pretrained(source, **hub_kwargs)
        codec = KronosTokenizer.from_pretrained(tokenizer, **hub_kwargs)
        max_context = max_context or info.get("max_context") or 512
        lookback = lookback or info.get("lookback")
        if lookback is not None:
            lookback = min(int(lookback), max_context)
        clip = clip if clip is not None else info.get("clip", 5)
        predictor = cls(network, codec, device=device, max_context=max_context, clip=clip, lookback=lookback,
                        dtype=dtype)
        predictor.sources = {"model": describe_source(model, "model"),
                             "tokenizer": describe_source(tokenizer, "tokenizer")}
        return predictor

    @staticmethod
    def from_onnx(folder: str | os.PathLike, dtype: str = "float32", **kwargs: Any):
        """A predictor over a folder written by ``kronos export onnx``, run on ONNX Runtime: the same
        ``forecast``/``forecast_batch``/``forecast_df`` interface (:class:`kronos.onnx.OnnxPredictor`;
        ``dtype`` "float32" or "int8"). Without PyTorch, import it from :mod:`kronos.onnx` instead."""
        from ..onnx.predictor import OnnxPredictor

        return OnnxPredictor(folder, dtype=dtype, **kwargs)

    # -- validation -----------------------------------------------------------------------------
    def _series(self, df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int,
                name: str = "df") -> _Series:
        bars = bar_features(df, name)
        if len(bars) < 2:
            raise ValueError(f"{name} has {len(bars)} history row(s); at least 2 are needed")
        x_index = as_timestamps(x_timestamp, "x_timestamp", expected_len=len(bars))
        if y_timestamp is None or len(y_timestamp) == 0:
            raise ValueError(f"y_timestamp is empty; give the {pred_len} timestamp(s) of the bars to forecast")
        y_index = as_timestamps(y_timestamp, "y_timestamp", expected_len=pred_len)
        if y_index[0] <= x_index[-1]:
            raise ValueError(f"y_timestamp must start after the last x_timestamp ({x_index[-1]}), "
                             f"got {y_index[0]}")
        return _Series(bars, time_features(x_index), time_features(y_index), y_index, x_index)

    @staticmethod
    def _sampling(T: float, top_k: int | None, top_p: float, sample_count: int) -> SamplingConfig:
        check_count("sample_count", sample_count)
        return SamplingConfig(temperature=T, top_k=top_k, top_p=top_p)

    def _generator(self, seed: int | torch.Generator | None) -> torch.Generator | None:
        if seed is None or isinstance(seed, torch.Generator):
            return seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
        return torch.Generator(device=self.device).manual_seed(int(seed))

    # -- the pipeline ---------------------------------------------------------------------------
    @torch.no_grad()
    def _sample_paths(self, series: list[_Series], sampling: SamplingConfig, sample_count: int,
                      generator: torch.Generator | None, use_cache: bool, verbose: bool = False,
                      dequantise: bool = False, should_stop: Any = None) -> list[np.ndarray]:
        """Per series, (sample_count, pred_len, 6) float32 paths in input units, always in eval mode."""
        modes = (self.model.training, self.tokenizer.training)
        self.model.eval()
        self.tokenizer.eval()
        try:
            return self._sample_paths_eval(series, sampling, sample_count, generator, use_cache, verbose, dequantise,
                                           should_stop)
        finally:
            self.model.train(modes[0])
            self.tokenizer.train(modes[1])

    def _sample_paths_eval(self, series: list[_Series], sampling: SamplingConfig, sample_count: int,
                           generator: torch.Generator | None, use_cache: bool, verbose: bool,
                           dequantise: bool, should_stop: Any = None) -> list[np.ndarray]:
        norms = [Normalizer.fit(s.bars, self.clip) for s in series]
        normalised = [n.transform(s.bars) for n, s in zip(norms, series)]
        s1_hist, s2_hist = self._encode(normalised)
        stamps = [torch.from_numpy(np.concatenate([s.x_stamp, s.y_stamp])).to(self.device) for s in series]
        pred_lens = [s.pred_len for s in series]
        with _progress_bar(verbose, max(pred_lens)) as progress:
            gen_s1, gen_s2 = generate_tokens(self.model, s1_hist, s2_hist, stamps, pred_lens, self.max_context,
                                             sampling, sample_count, generator, use_cache,
                                             _stopping(progress, should_stop))
        decoded = self._decode(s1_hist, s2_hist, gen_s1, gen_s2, pred_lens, sample_count)
        if dequantise:
            residuals = self._residuals(normalised, s1_hist, s2_hist)
            decoded = [_dequantise(z, r[_draws(len(r), z.shape[:2], _own_generator(generator, k))], norm)
                       for k, (z, r, norm) in enumerate(zip(decoded, residuals, norms))]
        paths = []
        for norm, z in zip(norms, decoded):
            values = norm.inverse(z)
            for column in NON_NEGATIVE:
                j = FEATURE_COLUMNS.index(column)
                values[..., j] = np.maximum(values[..., j], 0)
            paths.append(values)
        return paths

    def _residuals(self, normalised: list[np.ndarray], s1_hist: list[torch.Tensor],
                   s2_hist: list[torch.Tensor]) -> list[np.ndarray]:
        """Per series, (T, 6) normalised history minus its reconstruction from its own tokens: what the
        tokenizer's codes leave out of a bar."""
        out: list[np.ndarray | None] = [None] * len(normalised)
        for idx in _same_length_groups(normalised):
            tokens = (torch.stack([s1_hist[i] for i in idx]), torch.stack([s2_hist[i] for i in idx]))
            recon = self.tokenizer.decode(tokens, half=True).float().cpu().numpy()
            for row, i in enumerate(idx):
                out[i] = normalised[i] - recon[row]
        return out  # type: ignore[return-value]

    def _encode(self, normalised: list[np.ndarray]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Encode each whole history (series of equal length in one batch) -> per-series s1, s2 (T,)."""
        s1: list[torch.Tensor | None] = [None] * len(normalised)
        s2: list[torch.Tensor | None] = [None] * len(normalised)
        for idx in _same_length_groups(normalised):
            batch = torch.from_numpy(np.stack([normalised[i] for i in idx])).to(self.device)
            b1, b2 = self.tokenizer.encode(batch, half=True)
            for row, i in enumerate(idx):
                s1[i], s2[i] = b1[row], b2[row]
        return s1, s2  # type: ignore[return-value]

    def _decode(self, s1_hist: list[torch.Tensor], s2_hist: list[torch.Tensor], gen_s1: torch.Tensor,
                gen_s2: torch.Tensor, pred_lens: list[int], samples: int) -> list[np.ndarray]:
        """Decode the last ``max_context`` tokens of history + forecast; keep the forecast rows."""
        out: list[np.ndarray | None] = [None] * len(pred_lens)
        windows = [min(len(h) + p, self.max_context) for h, p in zip(s1_hist, pred_lens)]
        for key in sorted(set(zip(windows, pred_lens))):
            window, pred_len = key
            idx = [i for i in range(len(pred_lens)) if (windows[i], pred_lens[i]) == key]
            keep_hist = window - pred_len
            if keep_hist > 0:  # the history part of the window is decoded once per series
                prefix = [torch.stack([h[i][len(h[i]) - keep_hist:] for i in idx]) for h in (s1_hist, s2_hist)]
                rows = torch.cat([torch.arange(i * samples, (i + 1) * samples) for i in idx]).to(gen_s1.device)
                suffix = (gen_s1[rows, :pred_len], gen_s2[rows, :pred_len])
                z = self.tokenizer.decode_paths(prefix, suffix, samples)
            else:
                s1 = _window_tokens(s1_hist, gen_s1, idx, keep_hist, pred_len, samples)
                s2 = _window_tokens(s2_hist, gen_s2, idx, keep_hist, pred_len, samples)
                z = self.tokenizer.decode((s1, s2), half=True)
            z = z[:, -pred_len:].float().cpu().numpy().reshape(len(idx), samples, pred_len, -1)
            for row, i in enumerate(idx):
                out[i] = z[row]
        return out  # type: ignore[return-value]

    # -- calibration ----------------------------------------------------------------------------
    def _truncate(self, series: list[_Series], lookback: int) -> list[_Series]:
        """Each series' last ``lookback`` bars; says once (logging) that longer histories are cut."""
        longest = max(len(s.bars) for s in series)
        if longest > lookback and not self._said_lookback:
            log.info("forecast() feeds the network the last %d bars of each history (the model's lookback) and "
                     "normalises on them; earlier bars serve only calibration (a history of %d bars was given)",
                     lookback, longest)
            self._said_lookback = True
        return [s.tail(lookback) if len(s.bars) > lookback else s for s in series]

    def _past_settings(self, sampling: SamplingConfig, use_cache: bool, dequantise: bool, lookback: int,
                       calibration_seed: int) -> tuple[Any, ...]:
        """What a past forecast depends on besides its bars: the networks (their parameters' storage and
        in-place versions, so a trained or reloaded network is never served stale), how they run, the
        sampling options, the paths drawn and the calibration seed."""
        weights = tuple((p.data_ptr(), p._version) for net in (self.model, self.tokenizer)
                        for p in net.parameters())
        return (hash(weights), str(self.dtype), str(self.device), self.max_context, lookback, self.clip,
                sampling.temperature, sampling.top_k, sampling.top_p, use_cache, dequantise, self.calibration_paths,
                int(calibration_seed))

    def _past_closes(self, series: list[_Series], plans: list[list[int]], settings: tuple[Any, ...],
                     sampling: SamplingConfig, use_cache: bool, dequantise: bool, lookback: int,
                     should_stop: Any = None) -> list[list[np.ndarray]]:
        """Per series, the (S, P) close paths of its past origins ``plans[i]``: from
        :attr:`past_forecasts` where already made, else forecast (all missing ones of one horizon in one
        network batch), each drawn with its own seed derived from its key, and stored."""
        keys = [[self._past_key(s, end, lookback, settings) for end in ends] for s, ends in zip(series, plans)]
        found: dict[bytes, np.ndarray] = {}
        missing: dict[bytes, _Series] = {}
        for s, ends, row in zip(series, plans, keys):
            for end, key in zip(ends, row):
                if key in found or key in missing:
                    continue
                closes = self.past_forecasts.get(key)
                if closes is None:
                    missing[key] = s.past_origin(end, lookback)
                else:
                    found[key] = closes
        for length in sorted({p.pred_len for p in missing.values()}):
            group = [k for k, p in missing.items() if p.pred_len == length]
            generators = SeriesGenerators([torch.Generator(device=self.device).manual_seed(
                past_seed(missing[k].bars, missing[k].x_index, missing[k].y_index, settings[-1])) for k in group],
                self.calibration_paths)
            paths = self._sample_paths([missing[k] for k in group], sampling, self.calibration_paths, generators,
                                       use_cache, dequantise=dequantise, should_stop=should_stop)
            for key, p in zip(group, paths):
                found[key] = np.ascontiguousarray(p[..., CLOSE])
                self.past_forecasts.put(key, found[key])
        return [[found[k] for k in row] for row in keys]

    def _past_key(self, s: _Series, end: int, lookback: int, settings: tuple[Any, ...]) -> bytes:
        start = max(0, end - lookback)
        return past_key(s.bars[start:end], s.x_index[start:end], s.x_index[end:end + s.pred_len], settings[-1],
                        settings)

    def _calibrations(self, series: list[_Series], sampling: SamplingConfig, use_cache: bool, dequantise: bool,
                      lookback: int, calibration_seed: int, should_stop: Any = None) -> list[Calibration]:
        """Per series, spread factors from forecasts at past origins inside its history (see
        :mod:`kronos.forecasting.calibration`); past forecasts not made before go through the network together."""
        plans = [plan_origins(len(s.bars), s.pred_len, lookback, self.calibration_origins) for s in series]
        settings = self._past_settings(sampling, use_cache, dequantise, lookback, calibration_seed)
        past = self._past_closes(series, plans, settings, sampling, use_cache, dequantise, lookback, should_stop)
        out = []
        for s, ends, paths in zip(series, plans, past):
            if not ends:
                need = minimum_history(s.pred_len, lookback)
                out.append(Calibration.skipped(s.pred_len, f"history of {len(s.bars)} bars is too short to "
                                                           f"calibrate {s.pred_len} steps: it needs {need}"))
                continue
            closes = np.stack(paths).astype(np.float32)  # (K, S, P)
            realised = np.stack([s.bars[end:end + s.pred_len, CLOSE] for end in ends])  # (K, P)
            last = np.array([s.bars[end - 1, CLOSE] for end in ends], dtype=np.float64)
            shrink = fit_shrink(closes, realised, last)
            closes = recentre(closes, last[:, None, None], shrink)
            out.append(Calibration(fit_scale(closes, realised), len(ends), shrink=shrink,
                                   paths_per_origin=self.calibration_paths, ends=tuple(ends)))
        return out

    def _forecast(self, df_list: Sequence[pd.DataFrame], x_timestamp_list: Sequence[Any],
                  y_timestamp_list: Sequence[Any], pred_len: int | Sequence[int], *, sample_count: int, T: float,
                  top_k: int | None, top_p: float, quantiles: Sequence[float], seed: int | torch.Generator | None,
                  use_cache: bool, verbose: bool, truncate: bool, calibrate: bool,
                  dequantise: bool, should_stop: Any = None, calibration: Any = None, valid: bool = True,
                  calibration_seed: int = 0, lookback: int | None = None) -> list[Forecast]:
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
        sampling = self._sampling(T, top_k, top_p, sample_count)
        series = [self._series(df, xt, yt, p, name=f"df_list[{i}]" if n > 1 else "df")
                  for i, (df, xt, yt, p) in enumerate(zip(df_list, x_timestamp_list, y_timestamp_list, pred_lens))]
        given = _given_calibrations(calibration, pred_lens) if calibrate else [None] * n
        if isinstance(calibration_seed, bool) or not isinstance(calibration_seed, (int, np.integer)) \
                or calibration_seed < 0:
            raise TypeError(f"calibration_seed must be an int >= 0, got {calibration_seed!r}")
        run = dict(levels=levels, sampling=sampling, sample_count=sample_count, use_cache=use_cache, verbose=verbose,
                   truncate=truncate, calibrate=calibrate, dequantise=dequantise, should_stop=should_stop,
                   valid=valid, calibration_seed=int(calibration_seed),
                   lookback=self.lookback if lookback is None else check_count("lookback", lookback))
        if not _is_seed_list(seed):
            return self._forecast_series(series, self._generator(seed), given=given, **run)
        seeds = list(seed)
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
            raise TypeError(f"seed as a list takes one int >= 0 per series, got {seeds[:5]!r}")
        if len(seeds) != n:
            raise ValueError(f"seed has {len(seeds)} entries for {n} series")
        out: list[Forecast | None] = [None] * n
        for length in sorted(set(pred_lens)):  # series of one pred_len share every generation step
            idx = [i for i in range(n) if pred_lens[i] == length]
            generators = [torch.Generator(device=self.device).manual_seed(seeds[i]) for i in idx]
            part = self._forecast_series([series[i] for i in idx], SeriesGenerators(generators, sample_count),
                                         given=[given[i] for i in idx], **run)
            for i, forecast in zip(idx, part):
                out[i] = forecast
        return out  # type: ignore[return-value]

    def _forecast_series(self, series: list[_Series], generator: torch.Generator | SeriesGenerators | None, *,
                         levels: tuple[float, ...], sampling: SamplingConfig, sample_count: int, use_cache: bool,
                         verbose: bool, truncate: bool, calibrate: bool, dequantise: bool,
                         should_stop: Any = None, given: list[Calibration | None] | None = None,
                         calibration_seed: int = 0, lookback: int | None = None, valid: bool = True) -> list[Forecast]:
        """Sample, calibrate (when asked) and, with ``valid``, repair every bar
        (:func:`kronos.data.candles.valid_candles`) as the very last step."""
        lookback = lookback or self.lookback
        used = self._truncate(series, lookback) if truncate else series
        paths = self._sample_paths(used, sampling, sample_count, generator, use_cache, verbose, dequantise,
                                   should_stop)
        finish = valid_candles if valid else (lambda p: p)
        if not calibrate:
            return [Forecast(finish(p), s.y_index, levels) for p, s in zip(paths, series)]
        given = given or [None] * len(series)
        todo = [i for i, c in enumerate(given) if c is None]
        fitted = self._calibrations([series[i] for i in todo], sampling, use_cache, dequantise, lookback,
                                    calibration_seed, should_stop) if todo else []
        calibrations = list(given)
        for i, c in zip(todo, fitted):
            calibrations[i] = c
        forecasts = []
        for p, s, c in zip(paths, series, calibrations):
            if not c.applied:
                log.info("no calibration: %s", c.note)
            last = float(s.bars[-1, CLOSE])
            if c.applied:
                p = rescale_paths(p, c.scale, PRICE_INDICES, CLOSE, last, c.shrink)
            forecasts.append(Forecast(finish(p), s.y_index, levels, calibration=c))
        return forecasts

    # -- public API -----------------------------------------------------------------------------
    def forecast_batch(self, df_list: Sequence[pd.DataFrame], x_timestamp_list: Sequence[Any],
                       y_timestamp_list: Sequence[Any], pred_len: int | Sequence[int], *,
                       sample_count: int = DEFAULT_PATHS, T: float = 1.0, top_k: int | None = 0, top_p: float = 1.0,
                       quantiles: Sequence[float] = DEFAULT_QUANTILES,
                       seed: int | Sequence[int] | torch.Generator | None = None, use_cache: bool = True,
                       verbose: bool = False, calibrate: bool = True, dequantise: bool = True,
                       should_stop: Any = None, calibration: Calibration | Sequence[Calibration | None] | None = None,
                       calibration_seed: int = 0, lookback: int | None = None) -> list[Forecast]:
        """Forecasts for many series at once; histories and ``pred_len`` (an int or one per series) may differ.
        Every argument after ``pred_len`` is keyword-only.

        The network sees each history's last ``lookback`` bars (the predictor's own unless given here),
        normalised on those bars. With
        ``calibrate`` the spread of the price paths around their median is rescaled per horizon step from
        forecasts at past origins inside the history (:mod:`kronos.forecasting.calibration`; ``Forecast.calibration``
        reports the factors); histories too short for that are left as sampled, with a note.
        ``dequantise`` adds to every forecast bar a reconstruction residual of the tokenizer drawn from the
        series' own history (the difference between each history bar and its decoding from its own tokens),
        so that paths drawing the same token differ by what the token cannot tell apart; without it the
        first forecast bar takes only as many values as distinct tokens were drawn.
        Every sample bar is a valid candle: after sampling and calibration, :func:`kronos.data.candles.valid_candles`
        raises a high below the body to ``max(open, close)`` and lowers a low above it to ``min(open, close)``
        (open and close stay as sampled) and clips volume and amount at 0.
        ``seed``: an int (or a ``torch.Generator``) gives the whole batch one random stream; a list of ints,
        one per series, gives each series its own stream, so that a series' paths do not depend on which
        other series share its batch (:mod:`kronos.universe` derives them from a run seed and the series' id).
        ``verbose`` shows a progress bar over the generation steps on stderr. ``should_stop``, a callable
        without arguments, is asked after every generation step; when it returns True the forecast stops
        there with :class:`ForecastCancelled` (a server uses it to drop work nobody waits for).

        Past-origin forecasts are made once: each is keyed by the bars before its end row, its horizon's
        timestamps, the network and the sampling options, drawn with its own seed derived from that key
        and ``calibration_seed`` (not from ``seed``), and kept in :attr:`past_forecasts` (a bounded
        store), so later forecasts of the same series reuse it. ``calibration``: a fitted
        :class:`~kronos.forecasting.calibration.Calibration` (one for all series, or one per series, None where it is
        to be fitted) applied as it is, without forecasting past origins; its ``scale`` must have
        ``pred_len`` entries.
        """
        return self._forecast(df_list, x_timestamp_list, y_timestamp_list, pred_len, sample_count=sample_count, T=T,
                              top_k=top_k, top_p=top_p, quantiles=quantiles, seed=seed, use_cache=use_cache,
                              verbose=verbose, truncate=True, calibrate=calibrate, dequantise=dequantise,
                              should_stop=should_stop, calibration=calibration, calibration_seed=calibration_seed,
                              lookback=lookback)

    def forecast(self, df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int, *,
                 sample_count: int = DEFAULT_PATHS, T: float = 1.0, top_k: int | None = 0, top_p: float = 1.0,
                 quantiles: Sequence[float] = DEFAULT_QUANTILES, seed: int | torch.Generator | None = None,
                 use_cache: bool = True, verbose: bool = False, calibrate: bool = True,
                 dequantise: bool = True, calibration: Calibration | None = None,
                 calibration_seed: int = 0) -> Forecast:
        """Probabilistic forecast of the ``pred_len`` bars at ``y_timestamp`` after the history ``df``
        (see :meth:`forecast_batch`)."""
        return self.forecast_batch([df], [x_timestamp], [y_timestamp], pred_len, sample_count=sample_count, T=T,
                                   top_k=top_k, top_p=top_p, quantiles=quantiles, seed=seed, use_cache=use_cache,
                                   verbose=verbose, calibrate=calibrate, dequantise=dequantise,
                                   calibration=calibration, calibration_seed=calibration_seed)[0]

    def forecast_df(self, df: pd.DataFrame, *, pred_len: int, id_column: str | None = None,
                    timestamp_column: str | None = None, freq: str | None = None, calendar: str | None = None,
                    **forecast_kwargs: Any) -> pd.DataFrame:
        """Forecast every series of a DataFrame; one tidy frame back (the pandas verb).

        ``df`` is wide (one series: a timestamp column or DatetimeIndex, and open, high, low, close,
        optional volume and amount; names in any case) or long (many series told apart by
        ``id_column``, found by itself when named symbol, ticker, item_id or id). ``timestamp_column``
        names the timestamp column when it is not one of timestamps, timestamp, date, datetime, time,
        ts. The ``pred_len`` future timestamps of each series follow its own trading calendar
        (:func:`kronos.data.calendar.future_timestamps`), or ``last + k*freq`` with a pandas ``freq``; daily and
        intraday ones skip the holidays and early closes of the exchange ``calendar`` (``"XNYS"``; default:
        detected from the history, ``"none"``: no exchange calendar).

        Other keywords go to :meth:`forecast_batch` (``sample_count``, ``quantiles``, ``seed``, ...), except
        the reading options of :class:`kronos.data.tables.ReadOptions` (``sort``, ``nan``, ``rename``, ``adjusted``,
        ``time_unit``, ``date_format``, ``dayfirst``), which say how ``df`` is read.

        Returns one row per (series, forecast timestamp, column): the id column (long input only),
        ``timestamp``, ``column``, ``mean`` and one column per quantile level, as :meth:`Forecast.to_frame`.
        """
        from ..data.calendar import future_timestamps
        from ..data.tables import TableError, column_key, frame_to_series

        check_count("pred_len", pred_len)
        reading = {k: forecast_kwargs.pop(k) for k in _READ_KEYWORDS if k in forecast_kwargs}
        try:
            series = frame_to_series(df, "df", id_column=id_column, time_column=timestamp_column, **reading)
        except TableError as exc:  # name this method's argument, not the reader's
            options = [("timestamp_column" if n == "time_column" else n, v) for n, v in exc.options]
            raise TableError(exc.where, exc.problem, exc.fix, options) from None
        futures = []
        for s in series:
            try:
                futures.append(future_timestamps(s.timestamps, pred_len, freq, calendar)[0])
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
                      seed: int | torch.Generator | None = None, use_cache: bool = True) -> list[pd.DataFrame]:
        """Mean forecast per series (the original's ``predict_batch``, with ragged lengths allowed). Every argument
        after ``pred_len`` is keyword-only (``T``, ``top_k``, ``top_p``, ``sample_count``, ``verbose`` ...).

        As in the original, the whole given history is normalised and encoded (the network still sees at
        most ``max_context`` tokens), nothing is calibrated, and the bars are the decoded ones: a high may
        lie below the open or close (``forecast()`` repairs that, :mod:`kronos.data.candles`).
        ``verbose`` shows a progress bar over the generation steps on stderr.
        """
        forecasts = self._forecast(df_list, x_timestamp_list, y_timestamp_list, pred_len, sample_count=sample_count,
                                   T=T, top_k=top_k, top_p=top_p, quantiles=(), seed=seed, use_cache=use_cache,
                                   verbose=verbose, truncate=False, calibrate=False, dequantise=False, valid=False)
        return [f.mean for f in forecasts]

    def predict(self, df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int, *, T: float = 1.0,
                top_k: int | None = 0, top_p: float = 0.9, sample_count: int = 1, verbose: bool = False,
                seed: int | torch.Generator | None = None, use_cache: bool = True) -> pd.DataFrame:
        """Mean forecast over ``sample_count`` paths, indexed by ``y_timestamp`` (the original's ``predict``).

        ``verbose`` shows a progress bar over the generation steps on stderr.
        """
        return self.predict_batch([df], [x_timestamp], [y_timestamp], pred_len, T=T, top_k=top_k, top_p=top_p,
                                  sample_count=sample_count, verbose=verbose, seed=seed, use_cache=use_cache)[0]
