"""Token sampling with NumPy: the rules of :func:`kronos.forecasting.generation.sample_next_token` without PyTorch.

The filters and the inverse-CDF draw are the same; the uniforms come from NumPy's PCG64 generators, so a
seed gives reproducible paths here but not the same draws as PyTorch's generator for that seed (the
paths agree in distribution; greedy decoding, ``top_k=1``, uses no random numbers and gives the same tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..forecasting.sampling import MIN_TEMPERATURE, SamplingConfig

Sampling = SamplingConfig  # the one sampling config of both backends

__all__ = ["MIN_TEMPERATURE", "RowGenerators", "Sampling", "SamplingConfig", "filter_logits", "sample_next_token"]


class RowGenerators:
    """Uniform draws for rows that are ``series × rows_per_series`` (series-major): one NumPy generator for all
    rows, or one per series (its rows draw from it alone, so a series' paths do not depend on its batch)."""

    def __init__(self, generators: Sequence[np.random.Generator], rows_per_series: int):
        self.generators = list(generators)
        self.rows_per_series = rows_per_series

    @classmethod
    def from_seed(cls, seed: int | None, rows: int) -> RowGenerators:
        return cls([np.random.default_rng(seed)], rows)

    def random(self, n: int) -> np.ndarray:
        """(n, 1) float64 uniforms in [0, 1)."""
        if len(self.generators) == 1 and self.rows_per_series != n:
            return self.generators[0].random((n, 1))
        if n != len(self.generators) * self.rows_per_series:
            raise RuntimeError(f"{n} rows for {len(self.generators)} series generators of {self.rows_per_series} rows")
        return np.concatenate([g.random((self.rows_per_series, 1)) for g in self.generators])

    def subset(self, series: Sequence[int], rows_per_series: int) -> RowGenerators:
        """The generators of ``series`` (all rows share one when there is a single generator)."""
        if len(self.generators) == 1:
            return RowGenerators(self.generators, rows_per_series)
        return RowGenerators([self.generators[s] for s in series], rows_per_series)


def filter_logits(logits: np.ndarray, top_k: int | None, top_p: float) -> np.ndarray:
    """Set logits (N, V) outside the top-k and outside the nucleus of mass ``top_p`` to -inf (top-k first;
    the token that crosses ``top_p`` is kept, so at least one token survives)."""
    logits = np.array(logits, dtype=np.float32)
    if top_k and top_k < logits.shape[-1]:
        kth = np.partition(logits, -top_k, axis=-1)[:, -top_k:].min(-1, keepdims=True)
        logits[logits < kth] = -np.inf
    if top_p < 1.0:
        order = np.argsort(-logits, axis=-1, kind="stable")
        sorted_logits = np.take_along_axis(logits, order, -1)
        cumulative = np.cumsum(_softmax(sorted_logits), -1)
        drop = np.zeros_like(cumulative, dtype=bool)
        drop[:, 1:] = cumulative[:, :-1] > top_p
        np.put_along_axis(logits, order, np.where(drop, -np.inf, sorted_logits), -1)
    return logits


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sample_next_token(logits: np.ndarray, sampling: SamplingConfig, generators: RowGenerators | None) -> np.ndarray:
    """Logits (N, V) -> int64 token ids (N,): argmax when greedy, else one inverse-CDF draw per row."""
    if sampling.greedy:
        return logits.argmax(-1).astype(np.int64)
    logits = filter_logits(np.asarray(logits, dtype=np.float32) / np.float32(sampling.temperature),
                           sampling.top_k, sampling.top_p)
    cdf = np.cumsum(_softmax(logits), -1)
    u = generators.random(len(cdf)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(-1), cdf.shape[-1] - 1).astype(np.int64)
