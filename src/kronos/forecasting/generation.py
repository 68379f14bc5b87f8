"""Autoregressive generation of (s1, s2) token pairs: sampling, key/value cache, sliding window.

Semantics (identical to the original implementation): at each step the network sees the most recent
``min(tokens so far, max_context)`` tokens with positions from 0; s1 is sampled from the last
position's logits, then s2 from the dependency-aware layer queried by that s1. While a series'
tokens fit in ``max_context`` the trunk's keys/values are cached and each step costs one token;
once the window slides every position's state changes, so those steps recompute the window.

Rows are ``series × samples`` (series-major). Each series' history is encoded and prefilled once;
its ``sample_count`` rows share that history's keys/values and cache only their own generated tokens
(:class:`~kronos.model.kv_cache.SharedPrefixCache`), and slide steps compute the window's history part once
per series. On CUDA the fixed-shape cached step is recorded as a CUDA graph and replayed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..model.kv_cache import KVCache, SharedPrefixCache, SplitKV
from ..model.network import Kronos, positions_and_mask
from .sampling import MIN_TEMPERATURE, SamplingConfig

__all__ = ["MIN_TEMPERATURE", "SamplingConfig", "SeriesGenerators", "filter_logits", "generate_tokens",
           "sample_next_token"]

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


class SeriesGenerators:
    """One generator per series for rows that are ``series × rows_per_series`` (series-major): each series'
    rows draw their uniforms from its own generator, so its tokens do not depend on the other series in
    the batch. Every series must be active at every step (equal ``pred_len``)."""

    def __init__(self, generators: list[torch.Generator], rows_per_series: int):
        self.generators = list(generators)
        self.rows_per_series = rows_per_series

    def rand(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(n, 1) uniforms, the rows of series i from ``generators[i]``."""
        if n != len(self.generators) * self.rows_per_series:
            raise RuntimeError(f"{n} rows for {len(self.generators)} series generators of {self.rows_per_series} rows")
        return torch.cat([torch.rand(self.rows_per_series, 1, generator=g, device=device, dtype=dtype)
                          for g in self.generators])


def sample_next_token(logits: torch.Tensor, sampling: SamplingConfig,
                      generator: torch.Generator | SeriesGenerators | None = None) -> torch.Tensor:
    """Logits (N, V) -> token ids (N,). A pure function of its inputs and the generator's state."""
    logits = logits.float()
    if sampling.greedy:
        return logits.argmax(-1)
    logits = filter_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p)
    # Inverse-CDF draw: one uniform per row against the cumulative probabilities. Same distribution as
    # torch.multinomial, several times faster on the CPU for vocabularies of a thousand tokens.
    cdf = logits.softmax(-1).cumsum(-1)
    if isinstance(generator, SeriesGenerators):
        u = generator.rand(cdf.shape[0], cdf.device, cdf.dtype) * cdf[:, -1:]
    else:
        u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


@dataclass
class _StepGroup:
    """Rows whose hidden state for this step came out of one trunk call."""

    slots: torch.Tensor  # positions of these rows among the step's active rows
    hidden_last: torch.Tensor  # (n, 1, d)
    dep_k: torch.Tensor | SplitKV  # dep-layer keys (n, H, T, hd), or keys and values split by series
    dep_v: torch.Tensor | None = None
    key_mask: torch.Tensor | None = None  # (n, 1, 1, T) bool, real context positions


class _TokenStore:
    """Every row's tokens and stamps, history right-aligned so that step ``i``'s window of length w
    is the slice ``[base + i - w, base + i)`` for every row. ``series_*`` hold one row per series."""

    def __init__(self, s1_hist: list[torch.Tensor], s2_hist: list[torch.Tensor], stamps: list[torch.Tensor],
                 pred_lens: list[int], samples: int, device: torch.device):
        self.hist_lens = [len(s) for s in s1_hist]
        self.base = max(self.hist_lens)
        width = self.base + max(pred_lens)
        n_series = len(s1_hist)
        s1 = torch.zeros(n_series, width, dtype=torch.long, device=device)
        s2 = torch.zeros_like(s1)
        stamp = torch.zeros(n_series, width, 5, dtype=torch.float32, device=device)
        for r in range(n_series):
            t, p = self.hist_lens[r], pred_lens[r]
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


class _Indexer:
    """Device index tensors for host-side lists of series, made once per distinct list: the schedule
    lives on the host, so a step never waits for the device to say which rows do what."""

    def __init__(self, samples: int, device: torch.device):
        self.samples, self.device = samples, device
        self._made: dict[tuple[object, tuple[int, ...]], torch.Tensor] = {}

    def _get(self, kind: object, values: tuple[int, ...], make) -> torch.Tensor:
        key = (kind, values)
        if key not in self._made:
            self._made[key] = torch.tensor(make(values), dtype=torch.long, device=self.device)
        return self._made[key]

    def series(self, series: tuple[int, ...]) -> torch.Tensor:
        return self._get("series", series, list)

    def rows(self, series: tuple[int, ...]) -> torch.Tensor:
        """Rows (series-major, ``samples`` per series) of ``series``."""
        return self._get("rows", series, lambda ss: [s * self.samples + j for s in ss for j in range(self.samples)])

    def slots(self, series: tuple[int, ...], active: tuple[int, ...]) -> torch.Tensor:
        """Where the rows of ``series`` sit among the rows of ``active``."""
        place = {s: i for i, s in enumerate(active)}
        return self._get(("slots", active), series,
                         lambda ss: [place[s] * self.samples + j for s in ss for j in range(self.samples)])


def _window_group(model: Kronos, store: _TokenStore, rows: torch.Tensor, slots: torch.Tensor, step: int,
                  length: int) -> _StepGroup:
    """Full forward over an equal-length window for ``rows`` (the reference path)."""
    s1, s2, stamp = store.window(rows, step, length)
    hidden = model.hidden_states(s1, s2, stamp, torch.arange(length, device=s1.device), max_position=length - 1)
    k, v = model.dep_layer.cross_attn.project_context(hidden)
    return _StepGroup(slots, hidden[:, -1:], k, v)


def _slide_group(model: Kronos, store: _TokenStore, series: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor,
                 samples: int, step: int, length: int) -> _StepGroup:
    """The same window forward for rows whose window still starts inside their history, computed once per
    series for the history part (identical across a series' samples: attention is causal) and per row
    for the ``step`` generated tokens, which attend to the shared history part."""
    device = rows.device
    history = length - step
    sl = slice(store.base - history, store.base)
    prefix = model.new_cache(len(series), history)
    hidden_prefix = model.hidden_states(store.series_s1[series, sl], store.series_s2[series, sl],
                                        store.series_stamp[series, sl], torch.arange(history, device=device),
                                        cache=prefix, max_position=history - 1)
    dep = model.dep_layer.cross_attn
    if step == 0:  # nothing generated yet: every row of a series has the same state
        k, v = dep.project_context(hidden_prefix)
        empty = k.new_empty(len(rows), k.shape[1], 0, k.shape[3])
        return _StepGroup(slots, hidden_prefix[:, -1:].repeat_interleave(samples, 0),
                          SplitKV(k, v, None, empty, empty))
    shared = SharedPrefixCache.from_cache(prefix, None, samples, step)
    sl = slice(store.base, store.base + step)
    hidden = model.hidden_states(store.s1[rows, sl], store.s2[rows, sl], store.stamp[rows, sl],
                                 torch.arange(history, length, device=device), cache=shared,
                                 max_position=length - 1)
    context = SplitKV(*dep.project_context(hidden_prefix), None, *dep.project_context(hidden))
    return _StepGroup(slots, hidden[:, -1:], context)


class _CachedRows:
    """Series whose whole sequence still fits in the window, with their trunk and dep-layer caches.

    Histories (left-padded to the longest) are prefilled once per series. In *split* mode (several
    samples, or any CUDA run) the history cache is shared by a series' rows, each row caches only its
    generated tokens (:class:`SharedPrefixCache`), and a step has fixed shapes and device-side counters,
    so on CUDA it is recorded once as a graph and replayed. With one sample on CPU a plain contiguous
    cache is faster.
    """

    def __init__(self, model: Kronos, store: _TokenStore, series: tuple[int, ...], indexer: _Indexer,
                 capacity: int):
        device, dtype = store.s1.device, model.norm.weight.dtype
        self.samples, self.indexer = indexer.samples, indexer
        self.split = _split_cache(self.samples, device)
        hist = [store.hist_lens[s] for s in series]
        width = max(hist)
        self.padded = min(hist) < width
        self.max_position = width + capacity
        sl = slice(store.base - width, store.base)
        index = indexer.series(series)
        pad = torch.tensor([width - h for h in hist], device=device)
        # (S, width + capacity): False at left padding, True at history and at every generated slot.
        self.valid = torch.arange(width + capacity, device=device)[None, :] >= pad[:, None]
        positions, mask = positions_and_mask(self.valid[:, :width] if self.padded else None, width, device)
        cache = model.new_cache(len(series), width if self.split else width + capacity)
        hidden = model.hidden_states(store.series_s1[index, sl], store.series_s2[index, sl],
                                     store.series_stamp[index, sl], positions, mask, cache, max_position=width - 1)
        dep = model.dep_layer.cross_attn
        if self.split:
            prefix_valid = self.valid[:, :width] if self.padded else None
            self.cache = SharedPrefixCache.from_cache(cache, prefix_valid, self.samples, capacity)
            dep_k, dep_v = dep.project_context(hidden)
            self.dep = SharedPrefixCache(dep_k[None], dep_v[None], prefix_valid, self.samples, capacity)
        else:
            self.cache = cache
            self.dep = KVCache(1, len(series), dep.n_heads, dep.head_dim, width + capacity, device, dtype)
            self.dep.update(0, *dep.project_context(hidden))
            self.dep.advance(width)
            if self.samples > 1:  # every row gets its own copy of its series' history
                fan = torch.arange(len(series), device=device).repeat_interleave(self.samples)
                self.cache.select_rows(fan)
                self.dep.select_rows(fan)
        self.series = series
        # The next token's position in each row (rows of a series share it); one shared value if unpadded.
        self.next_pos = torch.tensor(hist, device=device).repeat_interleave(self.samples)
        self.hidden_last = hidden[:, -1:].repeat_interleave(self.samples, 0)
        self.column = torch.full((1,), store.base, dtype=torch.long, device=device)  # next token's column

    def keep(self, series: tuple[int, ...]) -> bool:
        """Keep only ``series`` (a sub-sequence of the current ones) and their rows; True if any left."""
        if series == self.series:
            return False
        place = {s: i for i, s in enumerate(self.series)}
        local = torch.tensor([place[s] for s in series], dtype=torch.long, device=self.next_pos.device)
        rows = (local[:, None] * self.samples + torch.arange(self.samples, device=local.device)).reshape(-1)
        if self.split:
            self.cache.select_series(local)
            self.dep.select_series(local)
        else:
            self.cache.select_rows(rows)
            self.dep.select_rows(rows)
        self.valid = self.valid[local]
        self.next_pos, self.hidden_last = self.next_pos[rows], self.hidden_last[rows]
        self.series = series
        return True

    def _mask(self, end: int) -> torch.Tensor | None:
        """Key mask over the first ``end`` slots of the per-row caches, one per path (None: no padding or shared)."""
        if not self.padded or self.split:
            return None
        mask = self.valid[:, None, None, :end]
        return mask.repeat_interleave(self.samples, 0) if self.samples > 1 else mask

    def advance(self, model: Kronos, store: _TokenStore) -> None:
        """Append the tokens chosen at the previous step (read from ``store``) and run the trunk on them.

        Split mode only changes device tensors in place, so the step can be replayed from a CUDA graph.
        """
        rows = self.indexer.rows(self.series)
        column = self.column
        s1 = store.s1.index_select(1, column)[rows]  # (n, 1)
        s2 = store.s2.index_select(1, column)[rows]
        stamp = store.stamp.index_select(1, column)[rows]  # (n, 1, 5)
        positions = self.next_pos[:, None] if self.padded else self.next_pos[:1]
        mask = None if self.split else self._mask(self.cache.length + 1)
        hidden = model.next_hidden(s1, s2, stamp, positions, self.cache, mask, max_position=self.max_position)
        k, v = model.dep_layer.cross_attn.project_context(hidden)
        if self.split:
            self.dep.write(0, k, v)
        else:
            self.dep.update(0, k, v)
        self.dep.advance(1)
        self.next_pos.add_(1)
        self.column.add_(1)
        if self.split:
            self.hidden_last.copy_(hidden)
        else:
            self.hidden_last = hidden

    def group(self, slots: torch.Tensor) -> _StepGroup:
        if self.split:
            return _StepGroup(slots, self.hidden_last, self.dep.layer(0))
        end = self.dep.length
        return _StepGroup(slots, self.hidden_last, self.dep.k[0, :, :, :end], self.dep.v[0, :, :, :end],
                          key_mask=self._mask(end))


def _sample_groups(model: Kronos, groups: list[_StepGroup], n_rows: int, sampling: SamplingConfig,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """s1 from the last hidden states, then s2 conditioned on it: two (n_rows,) token tensors."""
    device = groups[0].hidden_last.device
    if len(groups) == 1:  # one group holds every active row, in order: its rows are the slots
        (g,) = groups
        s1 = sample_next_token(model.head.proj_s1(g.hidden_last[:, 0]), sampling, generator)
        logits = model.s2_logits(g.hidden_last, s1.unsqueeze(-1), g.dep_k, g.dep_v, g.key_mask)
        return s1, sample_next_token(logits[:, 0], sampling, generator)
    s1_logits = torch.empty(n_rows, model.s1_vocab_size, device=device)
    for g in groups:
        s1_logits[g.slots] = model.head.proj_s1(g.hidden_last[:, 0]).float()
    s1 = sample_next_token(s1_logits, sampling, generator)
    s2_logits = torch.empty(n_rows, model.s2_vocab_size, device=device)
    for g in groups:
        logits = model.s2_logits(g.hidden_last, s1[g.slots].unsqueeze(-1), g.dep_k, g.dep_v, g.key_mask)
        s2_logits[g.slots] = logits[:, 0].float()
    return s1, sample_next_token(s2_logits, sampling, generator)


class _GraphedStep:
    """A cached-only step (advance, sample, store the tokens) recorded once as a CUDA graph and replayed.

    Valid while the cached rows stay the same; every counter it reads lives on the device and is
    advanced inside the graph. ``KRONOS_CUDA_GRAPHS=0`` turns graphs off.
    """

    def __init__(self, step: Callable[[], None], generator: torch.Generator | None):
        self.graph = torch.cuda.CUDAGraph()
        for g in getattr(generator, "generators", [generator]):
            if g is not None:
                self.graph.register_generator_state(g)
        with torch.cuda.graph(self.graph):
            step()  # recorded, not run

    @classmethod
    def record(cls, step: Callable[[], None], generator: torch.Generator | None) -> _GraphedStep | None:
        """The recorded step, or None (with a warning) where this PyTorch or this step cannot be recorded;
        the caller then keeps running the step eagerly, with the same results."""
        if generator is not None and not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
            return None
        try:
            return cls(step, generator)
        except RuntimeError as exc:
            warnings.warn(f"CUDA graph capture of the generation step failed, running it eagerly: {exc}",
                          RuntimeWarning, stacklevel=3)
            return None

    def __call__(self) -> None:
        self.graph.replay()


def _split_cache(samples: int, device: torch.device) -> bool:
    """Whether cached rows use the shared-prefix layout (needed for graphs). On CPU the per-row layout is faster
    for one path and the shared one for many (BENCHMARKS.md, generation: cache layouts)."""
    return samples > 1 or device.type == "cuda"


def _graphs_enabled(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get("KRONOS_CUDA_GRAPHS", "1") != "0"


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
    hist, steps = store.hist_lens, max(pred_lens)
    indexer = _Indexer(sample_count, device)
    cached: _CachedRows | None = None
    if use_cache:
        fits = tuple(s for s, h in enumerate(hist) if h <= max_context)
        if fits:
            shortest = min(hist[s] for s in fits)
            # Generated tokens a row may hold in the cache: it stays while history + step <= max_context.
            capacity = max(0, min(steps - 1, max_context - shortest))
            cached = _CachedRows(model, store, fits, indexer, capacity)
    graphed: _GraphedStep | None = None
    eager_cached_steps = 0  # cached-only steps run since the cached rows last changed

    def cached_step() -> None:
        """One step when every active row is cached (fixed shapes: it may be recorded as a graph)."""
        cached.advance(model, store)
        s1, s2 = _sample_groups(model, [cached.group(indexer.slots(cached.series, cached.series))],
                                len(cached.series) * sample_count, sampling, generator)
        rows = indexer.rows(cached.series)
        column = cached.column.expand(len(rows))
        store.s1.index_put_((rows, column), s1)
        store.s2.index_put_((rows, column), s2)

    for step in range(steps):
        active = tuple(s for s in range(len(hist)) if pred_lens[s] > step)
        groups: list[_StepGroup] = []
        in_cache: tuple[int, ...] = ()
        if cached is not None:
            in_cache = tuple(s for s in cached.series if pred_lens[s] > step and hist[s] + step <= max_context)
            if not in_cache:
                cached = graphed = None
            elif cached.keep(in_cache):
                graphed, eager_cached_steps = None, 0
        if step > 0 and in_cache == active and cached.split:
            # Every active row is cached: one fixed-shape step, replayed from a CUDA graph once warm
            # (two eager steps first, so lazy initialisation is not recorded).
            if graphed is None and eager_cached_steps == 2 and _graphs_enabled(device):
                graphed = _GraphedStep.record(cached_step, generator)
            if graphed is not None:
                graphed()
            else:
                cached_step()
                eager_cached_steps += 1
            if progress is not None:
                progress(step + 1, steps)
            continue
        if in_cache:
            if step > 0:
                cached.advance(model, store)
            groups.append(cached.group(indexer.slots(in_cache, active)))
        by_length: dict[int, list[int]] = {}
        for s in active:
            if s not in in_cache:
                by_length.setdefault(min(hist[s] + step, max_context), []).append(s)
        for length, members in by_length.items():
            series = tuple(members)
            rows, slots = indexer.rows(series), indexer.slots(series, active)
            if use_cache and sample_count > 1 and length > step:
                groups.append(_slide_group(model, store, indexer.series(series), rows, slots, sample_count, step,
                                           length))
            else:
                groups.append(_window_group(model, store, rows, slots, step, length))
        s1, s2 = _sample_groups(model, groups, len(active) * sample_count, sampling, generator)
        column = store.base + step
        active_rows = indexer.rows(active)
        store.s1[active_rows, column], store.s2[active_rows, column] = s1, s2
        if progress is not None:
            progress(step + 1, steps)
    return store.s1[:, store.base:], store.s2[:, store.base:]
