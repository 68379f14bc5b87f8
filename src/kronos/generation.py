"""Autoregressive generation of (s1, s2) token pairs: sampling, key/value cache, sliding window.

Semantics (identical to the original, see the spec): at each step the network sees the most recent
``min(tokens so far, max_context)`` tokens with positions from 0; s1 is sampled from the last
position's logits, then s2 from the dependency-aware layer queried by that s1. While a series'
tokens fit in ``max_context`` the trunk's keys/values are cached and each step costs one token;
once the window slides every position's state changes, so those steps recompute the window.

Rows are ``series × samples`` (series-major). Each series' history is encoded and prefilled once,
then its cache is fanned out to its ``sample_count`` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .modules import KVCache
from .network import Kronos, positions_and_mask


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn. ``top_k`` 0 or None and ``top_p`` 1.0 switch those filters off;
    ``top_k=1`` is greedy (the generator is then not used)."""

    temperature: float = 1.0
    top_k: int | None = 0
    top_p: float = 0.9

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise ValueError(f"T (temperature) must be > 0, got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"top_k must be None or an integer >= 0, got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.top_k == 1


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float) -> torch.Tensor:
    """Mask logits (N, V) outside the top-k and outside the nucleus of mass ``top_p`` with -inf.

    Both filters apply when both are set (top-k first); at least one token always survives.
    """
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative > top_p
        drop[..., 1:] = drop[..., :-1].clone()  # keep the token that crosses p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sample_next_token(logits: torch.Tensor, sampling: SamplingConfig,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Logits (N, V) -> token ids (N,). A pure function of its inputs and the generator's state."""
    logits = logits.float()
    if sampling.greedy:
        return logits.argmax(-1)
    logits = filter_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@dataclass
class _StepGroup:
    """Rows whose hidden state for this step came out of one trunk call."""

    slots: torch.Tensor  # positions of these rows among the step's active rows
    hidden_last: torch.Tensor  # (n, 1, d)
    k: torch.Tensor  # dep-layer keys (n, H, T, hd)
    v: torch.Tensor
    key_mask: torch.Tensor | None  # (n, 1, 1, T) bool or None


class _TokenStore:
    """Every row's tokens and stamps, history right-aligned so that step ``i``'s window of length w
    is the slice ``[base + i - w, base + i)`` for every row."""

    def __init__(self, s1_hist: list[torch.Tensor], s2_hist: list[torch.Tensor], stamps: list[torch.Tensor],
                 pred_lens: list[int], samples: int, device: torch.device):
        self.hist_lens = torch.tensor([len(s) for s in s1_hist], device=device).repeat_interleave(samples)
        self.pred_lens = torch.tensor(pred_lens, device=device).repeat_interleave(samples)
        self.base = int(self.hist_lens.max())
        width = self.base + max(pred_lens)
        n_series = len(s1_hist)
        s1 = torch.zeros(n_series, width, dtype=torch.long, device=device)
        s2 = torch.zeros_like(s1)
        stamp = torch.zeros(n_series, width, 5, dtype=torch.float32, device=device)
        for r in range(n_series):
            t, p = len(s1_hist[r]), pred_lens[r]
            s1[r, self.base - t:self.base] = s1_hist[r]
            s2[r, self.base - t:self.base] = s2_hist[r]
            stamp[r, self.base - t:self.base + p] = stamps[r]
        self.series_s1, self.series_s2, self.series_stamp = s1, s2, stamp
        self.s1 = s1.repeat_interleave(samples, 0)
        self.s2 = s2.repeat_interleave(samples, 0)
        self.stamp = stamp.repeat_interleave(samples, 0)

    def window(self, rows: torch.Tensor, step: int, length: int):
        sl = slice(self.base + step - length, self.base + step)
        return self.s1[rows, sl], self.s2[rows, sl], self.stamp[rows, sl]


def _window_group(model: Kronos, store: _TokenStore, rows: torch.Tensor, slots: torch.Tensor, step: int,
                  length: int) -> _StepGroup:
    """Full forward over an equal-length window for ``rows`` (the reference path, and sliding rows)."""
    s1, s2, stamp = store.window(rows, step, length)
    hidden = model.hidden_states(s1, s2, stamp, torch.arange(length, device=s1.device))
    k, v = model.dep_layer.cross_attn.project_context(hidden)
    return _StepGroup(slots, hidden[:, -1:], k, v, None)


class _CachedRows:
    """Rows whose whole sequence still fits in the window, with their trunk and dep-layer caches."""

    def __init__(self, model: Kronos, store: _TokenStore, series: torch.Tensor, samples: int, capacity: int):
        device = store.s1.device
        hist = store.hist_lens[series * samples]
        width = int(hist.max())
        sl = slice(store.base - width, store.base)
        columns = torch.arange(width, device=device)
        valid = columns[None, :] >= (width - hist)[:, None]  # (n, width), left padding is False
        self.padded = bool((~valid).any())
        self.valid = torch.zeros(len(series), capacity, dtype=torch.bool, device=device)
        self.valid[:, :width] = valid
        self.cache = model.new_cache(len(series), capacity)
        dep = model.dep_layer.cross_attn
        self.dep_cache = KVCache(1, len(series), dep.n_heads, dep.head_dim, capacity, device,
                                 model.norm.weight.dtype)
        positions, mask = positions_and_mask(valid if self.padded else None, width, device)
        hidden = model.hidden_states(store.series_s1[series, sl], store.series_s2[series, sl],
                                     store.series_stamp[series, sl], positions, mask, self.cache)
        self.dep_cache.update(0, *dep.project_context(hidden))
        self.dep_cache.length = width
        self.next_pos = hist.clone()
        self.hidden_last = hidden[:, -1:]
        # Fan each series out to its sample rows (global row = series * samples + sample).
        self.rows = series
        self._select(torch.arange(len(series), device=device).repeat_interleave(samples))
        self.rows = (series[:, None] * samples + torch.arange(samples, device=device)[None, :]).reshape(-1)

    def _select(self, keep: torch.Tensor) -> None:
        self.cache.select_rows(keep)
        self.dep_cache.select_rows(keep)
        self.valid = self.valid[keep]
        self.next_pos = self.next_pos[keep]
        self.hidden_last = self.hidden_last[keep]
        self.rows = self.rows[keep]

    def keep_only(self, still: torch.Tensor) -> None:
        """Drop rows where ``still`` (bool over current rows) is False."""
        if not bool(still.all()):
            self._select(still.nonzero().squeeze(-1))

    def advance(self, model: Kronos, store: _TokenStore, step: int) -> None:
        """Append the tokens chosen at ``step - 1`` (read from ``store``) and run the trunk on them."""
        column = store.base + step - 1
        s1, s2 = store.s1[self.rows, column, None], store.s2[self.rows, column, None]  # (n, 1)
        stamp = store.stamp[self.rows, column].unsqueeze(1)
        end = self.cache.length + 1
        self.valid[:, end - 1] = True
        if self.padded:
            positions = self.next_pos[:, None]
            mask = self.valid[:, None, None, :end]
        else:
            positions = self.next_pos[:1]
            mask = None
        hidden = model.hidden_states(s1, s2, stamp, positions, mask, self.cache)
        self.dep_cache.update(0, *model.dep_layer.cross_attn.project_context(hidden))
        self.dep_cache.length = end
        self.next_pos = self.next_pos + 1
        self.hidden_last = hidden

    def group(self, slots: torch.Tensor) -> _StepGroup:
        end = self.dep_cache.length
        mask = self.valid[:, None, None, :end] if self.padded else None
        return _StepGroup(slots, self.hidden_last, self.dep_cache.k[0, :, :, :end], self.dep_cache.v[0, :, :, :end],
                          mask)


@torch.no_grad()
def generate_tokens(model: Kronos, s1_hist: list[torch.Tensor], s2_hist: list[torch.Tensor],
                    stamps: list[torch.Tensor], pred_lens: list[int], max_context: int,
                    sampling: SamplingConfig, sample_count: int = 1, generator: torch.Generator | None = None,
                    use_cache: bool = True,
                    progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``pred_lens[r]`` token pairs after each series' history.

    s1_hist, s2_hist: per series, (T_r,) int64 history tokens. stamps: per series, (T_r + P_r, 5) time
    features of history and forecast bars. Returns s1, s2 of shape (R * sample_count, max(P)) (rows
    series-major; entries past a row's own P_r are 0). ``progress(done, total)`` is called after each step.
    """
    device = model.device
    store = _TokenStore(s1_hist, s2_hist, stamps, pred_lens, sample_count, device)
    n_rows, steps = len(store.hist_lens), max(pred_lens)
    all_rows = torch.arange(n_rows, device=device)
    cached: _CachedRows | None = None
    if use_cache:
        fits = store.hist_lens[::sample_count] <= max_context
        series = fits.nonzero().squeeze(-1)
        if len(series):
            hist = store.hist_lens[series * sample_count]
            # Left-padded columns: the longest history plus the steps any row may stay in the cache.
            capacity = int(hist.max()) + min(steps - 1, max_context - int(hist.min())) + 1
            cached = _CachedRows(model, store, series, sample_count, capacity)

    for step in range(steps):
        active = all_rows[store.pred_lens > step]
        current = store.hist_lens[active] + step  # tokens each active row has so far
        slot_of = torch.full((n_rows,), -1, dtype=torch.long, device=device)
        slot_of[active] = torch.arange(len(active), device=device)
        groups: list[_StepGroup] = []
        in_cache = torch.zeros(n_rows, dtype=torch.bool, device=device)
        if cached is not None:
            cached_current = store.hist_lens[cached.rows] + step
            cached.keep_only((store.pred_lens[cached.rows] > step) & (cached_current <= max_context))
            if len(cached.rows):
                if step > 0:
                    cached.advance(model, store, step)
                groups.append(cached.group(slot_of[cached.rows]))
                in_cache[cached.rows] = True
            else:
                cached = None
        rest = ~in_cache[active]
        windows = current.clamp_max(max_context)
        for length in torch.unique(windows[rest]).tolist():
            pick = rest & (windows == length)
            groups.append(_window_group(model, store, active[pick], pick.nonzero().squeeze(-1), step, length))

        s1_logits = torch.empty(len(active), model.s1_vocab_size, device=device)
        for g in groups:
            s1_logits[g.slots] = model.head.proj_s1(g.hidden_last[:, 0]).float()
        s1 = sample_next_token(s1_logits, sampling, generator)
        s2_logits = torch.empty(len(active), model.s2_vocab_size, device=device)
        for g in groups:
            logits = model.s2_logits(g.hidden_last, s1[g.slots].unsqueeze(-1), g.k, g.v, g.key_mask)
            s2_logits[g.slots] = logits[:, 0].float()
        s2 = sample_next_token(s2_logits, sampling, generator)

        column = store.base + step
        store.s1[active, column], store.s2[active, column] = s1, s2
        if progress is not None:
            progress(step + 1, steps)
    return store.s1[:, store.base:], store.s2[:, store.base:]
