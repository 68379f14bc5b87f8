"""Sample paths on PyTorch: the backend part of :class:`~kronos.forecasting.predictor.KronosPredictor`.

Per series: z-score and clip the history (:class:`~kronos.data.features.Normalizer`), encode it to tokens,
continue the tokens with :func:`~kronos.forecasting.generation.generate_tokens`, decode the window back to
bars, optionally add the tokenizer's reconstruction residuals (dequantise), and map back to input units.
Everything around it (lookback, seeds, calibration, candles, the Forecast) is the door's
(:mod:`kronos.forecasting.forecast`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ..data.features import Normalizer
from ..model.network import Kronos
from ..model.tokenizer import KronosTokenizer
from .forecast import dequantise_bars, stopping, to_input_units
from .generation import SamplingConfig, SeriesGenerators, generate_tokens
from .inputs import SeriesInput


def _window_tokens(hist: list[torch.Tensor], generated: torch.Tensor, series: list[int], keep_hist: int,
                   pred_len: int, samples: int) -> torch.Tensor:
    """(len(series) * samples, keep_hist + pred_len): the last history tokens, then each path's forecast."""
    rows = []
    for i in series:
        past = hist[i][len(hist[i]) - keep_hist:].expand(samples, -1)
        rows.append(torch.cat([past, generated[i * samples:(i + 1) * samples, :pred_len]], dim=1))
    return torch.cat(rows)


def same_length_groups(arrays: Sequence[Any]) -> list[list[int]]:
    """Indices of ``arrays`` grouped by length (shortest first): the series that can share one batch."""
    groups: dict[int, list[int]] = {}
    for i, array in enumerate(arrays):
        groups.setdefault(len(array), []).append(i)
    return [groups[length] for length in sorted(groups)]


def _own_generator(generator: torch.Generator | SeriesGenerators | None, series: int) -> torch.Generator | None:
    """The generator series number ``series`` draws from."""
    return generator.generators[series] if isinstance(generator, SeriesGenerators) else generator


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


class TorchPaths:
    """Sample paths from a network and its tokenizer on one device, always in eval mode."""

    def __init__(self, model: Kronos, tokenizer: KronosTokenizer, device: torch.device, max_context: int,
                 clip: float):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_context, self.clip = max_context, clip

    @torch.no_grad()
    def sample(self, series: list[SeriesInput], sampling: SamplingConfig, samples: int,
               generator: torch.Generator | SeriesGenerators | None, *, use_cache: bool = True, verbose: bool = False,
               dequantise: bool = False, should_stop: Callable[[], bool] | None = None) -> list[np.ndarray]:
        """Per series, (samples, pred_len, 6) float32 paths in input units."""
        modes = (self.model.training, self.tokenizer.training)
        self.model.eval()
        self.tokenizer.eval()
        try:
            return self._sample(series, sampling, samples, generator, use_cache, verbose, dequantise, should_stop)
        finally:
            self.model.train(modes[0])
            self.tokenizer.train(modes[1])

    def _sample(self, series: list[SeriesInput], sampling: SamplingConfig, samples: int, generator: Any,
                use_cache: bool, verbose: bool, dequantise: bool, should_stop: Any) -> list[np.ndarray]:
        norms = [Normalizer.fit(s.bars, self.clip) for s in series]
        normalised = [n.transform(s.bars) for n, s in zip(norms, series)]
        s1_hist, s2_hist = self._encode(normalised)
        stamps = [torch.from_numpy(np.concatenate([s.x_stamp, s.y_stamp])).to(self.device) for s in series]
        pred_lens = [s.pred_len for s in series]
        with _progress_bar(verbose, max(pred_lens)) as progress:
            gen_s1, gen_s2 = generate_tokens(self.model, s1_hist, s2_hist, stamps, pred_lens, self.max_context,
                                             sampling, samples, generator, use_cache,
                                             stopping(progress, should_stop))
        decoded = self._decode(s1_hist, s2_hist, gen_s1, gen_s2, pred_lens, samples)
        if dequantise:
            residuals = self._residuals(normalised, s1_hist, s2_hist)
            decoded = [dequantise_bars(z, r[_draws(len(r), z.shape[:2], _own_generator(generator, k))], norm)
                       for k, (z, r, norm) in enumerate(zip(decoded, residuals, norms))]
        return [to_input_units(norm, z) for norm, z in zip(norms, decoded)]

    def _residuals(self, normalised: list[np.ndarray], s1_hist: list[torch.Tensor],
                   s2_hist: list[torch.Tensor]) -> list[np.ndarray]:
        """Per series, (T, 6) normalised history minus its reconstruction from its own tokens: what the
        tokenizer's codes leave out of a bar."""
        out: list[np.ndarray | None] = [None] * len(normalised)
        for idx in same_length_groups(normalised):
            tokens = (torch.stack([s1_hist[i] for i in idx]), torch.stack([s2_hist[i] for i in idx]))
            recon = self.tokenizer.decode(tokens, half=True).float().cpu().numpy()
            for row, i in enumerate(idx):
                out[i] = normalised[i] - recon[row]
        return out  # type: ignore[return-value]

    def _encode(self, normalised: list[np.ndarray]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Encode each whole history (series of equal length in one batch) -> per-series s1, s2 (T,)."""
        s1: list[torch.Tensor | None] = [None] * len(normalised)
        s2: list[torch.Tensor | None] = [None] * len(normalised)
        for idx in same_length_groups(normalised):
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
