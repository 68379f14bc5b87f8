"""A predictor wrapper that stores every forecast it makes on disk and replays it when asked again.

The studies run ``kronos backtest`` and ``kronos evaluate`` over the same origins: with this wrapper the
model forecasts each (series, origin) once, and the statistics can be recomputed without the model.
A forecast is keyed by its history (last timestamp, length, last close), ``pred_len`` and the number of
paths; the seed is not part of the key, so a replayed forecast is the one first drawn.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Replayed:
    samples: np.ndarray  # (S, P, 6)


class CachingPredictor:
    """Wraps a predictor (or None: replay only) and a cache file; ``forecast_batch`` has the predictor's inputs."""

    def __init__(self, predictor: Any | None, path: str | os.PathLike, save_every: float = 60.0):
        self.predictor, self.path, self.save_every = predictor, Path(path), save_every
        self.cache: dict[tuple, np.ndarray] = {}
        if self.path.exists():
            with open(self.path, "rb") as handle:
                self.cache = pickle.load(handle)
        self.hits = self.misses = 0
        self.seconds = 0.0
        self._saved = time.monotonic()

    @staticmethod
    def key(frame: Any, x_ts: Any, pred_len: int, sample_count: int) -> tuple:
        return (str(x_ts[-1]), len(frame), float(frame["close"].iloc[-1]), int(pred_len), int(sample_count))

    def forecast_batch(self, frames, x_ts, y_ts, pred_len, *, sample_count=20, quantiles=(), seed=None, **settings):
        keys = [self.key(f, x, pred_len, sample_count) for f, x in zip(frames, x_ts)]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            if self.predictor is None:
                raise KeyError(f"{len(missing)} forecasts are not in the cache {self.path}")
            started = time.perf_counter()
            made = self.predictor.forecast_batch([frames[i] for i in missing], [x_ts[i] for i in missing],
                                                 [y_ts[i] for i in missing], pred_len=pred_len,
                                                 sample_count=sample_count, quantiles=(), seed=seed, **settings)
            self.seconds += time.perf_counter() - started
            for i, forecast in zip(missing, made):
                self.cache[keys[i]] = np.asarray(forecast.samples, dtype=np.float32)
            if time.monotonic() - self._saved > self.save_every:
                self.save()
        return [Replayed(self.cache[k].astype(np.float64)) for k in keys]

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            pickle.dump(self.cache, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, self.path)
        self._saved = time.monotonic()
