"""KronosPredictor: DataFrames of bars in, forecast DataFrames (mean, quantiles, sample paths) out.

The predictor is the PyTorch backend of the forecasting door (:mod:`kronos.forecasting.forecast`): it
holds the networks and supplies sample paths (:mod:`kronos.forecasting.paths`); its verbs turn their
arguments into :class:`~kronos.forecasting.options.ForecastOptions` and go through
:func:`~kronos.forecasting.forecast.forecast_series`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.features import FEATURE_COLUMNS, check_count
from ..model.checkpoint import read_predictor_info
from ..model.network import Kronos
from ..model.precision import check_supported, prepare
from ..model.tokenizer import KronosTokenizer
from .calibration import MAX_ORIGINS, PATHS_PER_ORIGIN, Calibration
from .forecast import ForecastCancelled, forecast_series
from .generation import SamplingConfig, SeriesGenerators
from .inputs import SeriesInput, from_frames
from .options import ForecastOptions
from .past_forecasts import PastForecasts
from .paths import TorchPaths
from .result import DEFAULT_PATHS, DEFAULT_QUANTILES, Forecast
from .verbs import forecast_frame_of

__all__ = ["DEFAULT_QUANTILES", "Forecast", "ForecastCancelled", "KronosPredictor", "auto_device", "check_pairing"]

log = logging.getLogger("kronos.forecasting.predictor")


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


def auto_device() -> torch.device:
    """cuda if available, else mps, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
        self.model = model.to(self.device).eval()
        self.dtype = prepare(self.model, dtype, self.device)  # checks that the device runs dtype
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

    # -- the backend of the forecasting door ----------------------------------------------------------
    def random_stream(self, seed: int | torch.Generator | None, rows: int) -> torch.Generator | None:
        """The generator of a whole batch: ``seed`` itself when it is a generator (or None), else a new one."""
        if seed is None or isinstance(seed, torch.Generator):
            return seed
        if not isinstance(seed, int):
            raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
        return torch.Generator(device=self.device).manual_seed(seed)

    def series_streams(self, seeds: Sequence[int], rows: int) -> SeriesGenerators:
        """One generator per series, ``rows`` paths each."""
        return SeriesGenerators([torch.Generator(device=self.device).manual_seed(s) for s in seeds], rows)

    def network_identity(self) -> tuple[Any, ...]:
        """The networks (their parameters' storage and in-place versions, so a trained or reloaded network is
        never served stale past forecasts) and how they run."""
        weights = tuple((p.data_ptr(), p._version) for net in (self.model, self.tokenizer)
                        for p in net.parameters())
        return hash(weights), str(self.dtype), str(self.device)

    def sample_paths(self, series: list[SeriesInput], sampling: SamplingConfig, samples: int,
                     streams: torch.Generator | SeriesGenerators | None, *, use_cache: bool = True,
                     verbose: bool = False, dequantise: bool = False,
                     should_stop: Callable[[], bool] | None = None) -> list[np.ndarray]:
        """Per series, (samples, pred_len, 6) float32 paths in input units (:class:`TorchPaths`)."""
        paths = TorchPaths(self.model, self.tokenizer, self.device, self.max_context, self.clip)
        return paths.sample(series, sampling, samples, streams, use_cache=use_cache, verbose=verbose,
                            dequantise=dequantise, should_stop=should_stop)

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
        Every argument after ``pred_len`` is keyword-only; they are the fields of
        :class:`~kronos.forecasting.options.ForecastOptions`, which says what each does.

        The network sees each history's last ``lookback`` bars (the predictor's own unless given here),
        normalised on those bars. With ``calibrate`` the spread of the price paths around their median is
        rescaled per horizon step from forecasts at past origins inside the history
        (:mod:`kronos.forecasting.calibration`; ``Forecast.calibration`` reports the factors); histories too
        short for that are left as sampled, with a note. ``dequantise`` adds to every forecast bar a
        reconstruction residual of the tokenizer drawn from the series' own history, so that paths drawing
        the same token differ by what the token cannot tell apart. Every sample bar is a valid candle
        (:func:`kronos.data.candles.valid_candles`: a high below the body is raised to ``max(open, close)``,
        a low above it lowered to ``min(open, close)``, volume and amount clipped at 0).
        ``seed``: an int (or a ``torch.Generator``) gives the whole batch one random stream; a list of ints,
        one per series, gives each series its own stream (:mod:`kronos.universe` derives them from a run
        seed and the series' id). ``should_stop`` is asked after every generation step; True stops the
        forecast with :class:`ForecastCancelled`.

        Past-origin forecasts are made once: each is keyed by the bars before its end row, its horizon's
        timestamps, the network and the sampling options, drawn with its own seed derived from that key
        and ``calibration_seed`` (not from ``seed``), and kept in :attr:`past_forecasts` (a bounded store).
        ``calibration``: fitted calibrations to apply as they are, without forecasting past origins.
        """
        options = ForecastOptions(sample_count=sample_count, T=T, top_k=top_k, top_p=top_p, quantiles=quantiles,
                                  seed=seed, use_cache=use_cache, verbose=verbose, calibrate=calibrate,
                                  dequantise=dequantise, should_stop=should_stop, calibration=calibration,
                                  calibration_seed=calibration_seed, lookback=lookback)
        return forecast_series(self, from_frames(df_list, x_timestamp_list, y_timestamp_list, pred_len), options)

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

        Other keywords are those of :meth:`forecast_batch` (``sample_count``, ``quantiles``, ``seed``, ...),
        except the reading options of :class:`kronos.data.tables.ReadOptions` (``sort``, ``nan``, ``rename``,
        ``adjusted``, ``time_unit``, ``date_format``, ``dayfirst``), which say how ``df`` is read.

        Returns one row per (series, forecast timestamp, column): the id column (long input only),
        ``timestamp``, ``column``, ``mean`` and one column per quantile level, as :meth:`Forecast.to_frame`.
        """
        return forecast_frame_of(self, df, pred_len, id_column, timestamp_column, freq, calendar, forecast_kwargs)

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
        options = ForecastOptions.original(T=T, top_k=top_k, top_p=top_p, sample_count=sample_count, verbose=verbose,
                                           seed=seed, use_cache=use_cache)
        inputs = from_frames(df_list, x_timestamp_list, y_timestamp_list, pred_len)
        return [f.mean for f in forecast_series(self, inputs, options)]

    def predict(self, df: pd.DataFrame, x_timestamp: Any, y_timestamp: Any, pred_len: int, *, T: float = 1.0,
                top_k: int | None = 0, top_p: float = 0.9, sample_count: int = 1, verbose: bool = False,
                seed: int | torch.Generator | None = None, use_cache: bool = True) -> pd.DataFrame:
        """Mean forecast over ``sample_count`` paths, indexed by ``y_timestamp`` (the original's ``predict``).

        ``verbose`` shows a progress bar over the generation steps on stderr.
        """
        return self.predict_batch([df], [x_timestamp], [y_timestamp], pred_len, T=T, top_k=top_k, top_p=top_p,
                                  sample_count=sample_count, verbose=verbose, seed=seed, use_cache=use_cache)[0]
