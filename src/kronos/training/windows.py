"""Seeded random windows over many series, normalised with statistics of their history part only.

A window is ``lookback + horizon`` consecutive bars of one series. Every possible window start of
every series is equally likely, so a series is drawn in proportion to its number of windows (its
length). The windows of a step are a pure function of ``(seed, epoch, rank, step in epoch)``:
nothing about sampling has to be saved to resume a run exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.features import Normalizer
from ..data.tables import Series

# Stream tags keep the training, validation and test draws of one seed apart.
TRAIN_STREAM, VAL_STREAM = 0, 1


@dataclass
class Batch:
    """``x`` (B, W, 6) float32 normalised bars and ``stamps`` (B, W, 5) float32 time features."""

    x: np.ndarray
    stamps: np.ndarray


def normalise_window(bars: np.ndarray, lookback: int, clip: float) -> np.ndarray:
    """(W, 6) raw bars -> (W, 6) z-scored with mean/std of the first ``lookback`` rows only, clipped at ±clip."""
    return Normalizer.fit(bars[:lookback], clip).transform(bars)


class WindowSampler:
    """Draws windows of ``lookback + horizon`` bars from ``series``.

    ``epoch_starts(epoch, rank, n)`` gives the (n,) global window indices of one epoch on one rank;
    ``batch(indices)`` cuts, normalises and stacks them.
    """

    def __init__(self, series: Sequence[Series], lookback: int, horizon: int, clip: float, seed: int):
        if lookback < 1 or horizon < 1:
            raise ValueError(f"lookback= and horizon= must be positive, got {lookback} and {horizon}")
        self.series = [s for s in series if len(s) >= lookback + horizon]
        self.lookback, self.horizon, self.clip, self.seed = lookback, horizon, clip, seed
        self.window = lookback + horizon
        counts = np.array([len(s) - self.window + 1 for s in self.series], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    @property
    def n_windows(self) -> int:
        """Number of distinct windows over all series."""
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Global window index -> (series position, start row)."""
        which = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return which, int(index - self.offsets[which])

    def epoch_indices(self, epoch: int, rank: int, n: int, stream: int = TRAIN_STREAM) -> np.ndarray:
        """(n,) window indices drawn uniformly with replacement; a pure function of the arguments and the seed."""
        if not self.n_windows:
            raise ValueError(f"no series has a window of {self.window} bars in this split")
        rng = np.random.default_rng([self.seed, stream, epoch, rank])
        return rng.integers(0, self.n_windows, size=n)

    def fixed_indices(self, n: int, stream: int = VAL_STREAM) -> np.ndarray:
        """A fixed, sorted evaluation set: every window when there are at most ``n``, else ``n`` drawn without
        replacement (the same for every epoch and rank)."""
        if self.n_windows <= n:
            return np.arange(self.n_windows)
        rng = np.random.default_rng([self.seed, stream])
        return np.sort(rng.choice(self.n_windows, size=n, replace=False))

    def batch(self, indices: Sequence[int]) -> Batch:
        xs, stamps = [], []
        for index in indices:
            which, start = self.locate(int(index))
            item = self.series[which]
            stop = start + self.window
            xs.append(normalise_window(item.bars[start:stop], self.lookback, self.clip))
            stamps.append(item.stamps[start:stop])
        return Batch(np.stack(xs).astype(np.float32), np.stack(stamps).astype(np.float32))
