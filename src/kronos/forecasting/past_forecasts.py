"""Past-origin forecasts as reusable work: keys, seeds and a bounded in-memory store.

Calibration forecasts a series from past origins inside its history (:mod:`kronos.forecasting.calibration`). Such a
forecast depends only on the bars before its end row, the timestamps of its horizon, the network and the
sampling settings, so it is keyed by exactly those (a digest of the bars' content, not of the row number
or of the rest of the history) and drawn with its own seed derived from that key. Neighbouring origins
of a walk-forward evaluation or a backtest, a universe forecast run again, or a service asked twice
about one series then find the past forecasts already made, and get the same numbers whether or not
they were computed before, in which batch, or on which worker.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_MAX_BYTES = 256 * 2**20  # close paths kept: 16 paths x 24 steps take 1.5 KiB, so about 170,000 past forecasts


def past_seed(bars: np.ndarray, timestamps: Any, horizon: Any, calibration_seed: int = 0) -> int:
    """The 63-bit seed one past forecast is drawn with: a BLAKE2b hash of its history bars (T, 6) as the
    predictor reads them (float32, :func:`kronos.data.features.bar_features`), their timestamps (T,), the horizon's
    timestamps (P,) (both in nanoseconds, so any resolution gives one seed) and ``calibration_seed``.
    Reproduce a calibration's past forecast with
    ``predictor.forecast(history, timestamps, horizon, P, sample_count=PATHS_PER_ORIGIN, seed=past_seed(...))``.
    """
    return int.from_bytes(_content_digest(bars, timestamps, horizon, calibration_seed)[:8], "little") >> 1


def past_key(bars: np.ndarray, timestamps: Any, horizon: Any, calibration_seed: int,
             settings: Sequence[Any]) -> bytes:
    """A 32-byte key of one past forecast: its content (as :func:`past_seed`) and ``settings`` (everything
    else the forecast depends on: the network, how it runs, sampling options, paths)."""
    digest = hashlib.blake2b(_content_digest(bars, timestamps, horizon, calibration_seed), digest_size=32)
    digest.update(repr(tuple(settings)).encode())
    return digest.digest()


def _content_digest(bars: np.ndarray, timestamps: Any, horizon: Any, calibration_seed: int) -> bytes:
    digest = hashlib.blake2b(digest_size=32)
    values = np.ascontiguousarray(bars, dtype=np.float32)
    digest.update(f"{values.shape}".encode())
    digest.update(values.tobytes())
    for stamps in (timestamps, horizon):
        ns = np.ascontiguousarray(pd.DatetimeIndex(stamps).as_unit("ns").asi8)  # the same for any resolution
        digest.update(f"|{len(ns)}|".encode())
        digest.update(ns.tobytes())
    digest.update(f"|{int(calibration_seed)}".encode())
    return digest.digest()


class PastForecasts:
    """A bounded, thread-safe store of past forecasts' close paths (S, P) float32 by key, least recently
    used dropped first once they take more than ``max_bytes``. ``hits`` and ``misses`` count look-ups."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickled empty and without its lock (Ray sends the predictor to workers; each fills its own)."""
        state = dict(self.__dict__)
        del state["_lock"]
        state.update(_items=OrderedDict(), bytes=0, hits=0, misses=0)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: bytes, closes: np.ndarray) -> None:
        value = np.array(closes, dtype=np.float32)
        if value.nbytes > self.max_bytes:
            return
        value.setflags(write=False)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._items[key] = value
            self.bytes += value.nbytes
            while self.bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = self.hits = self.misses = 0
