"""Key/value caches for inference, in two layouts.

:class:`KVCache` holds every layer's keys and values per row, contiguous and preallocated (the prefill of a
history, and generation with one sample path on CPU). :class:`SharedPrefixCache` serves many rows that
share one history prefix per series (the sample paths of a forecast): the prefix is stored and read once
per series (:class:`SplitKV`), each row caches only its own tokens, and a step has fixed shapes (CUDA
graphs record it). BENCHMARKS.md (generation) has the measurements behind keeping both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class KVCache:
    """Preallocated keys and values of every self-attention layer of one network.

    Buffers are ``(n_layers, batch, n_heads, capacity, head_dim)``; ``length`` is how many positions
    are filled. Layers write at ``[length, length + T)`` and the network advances ``length`` once
    all layers have run.
    """

    def __init__(self, n_layers: int, batch: int, n_heads: int, head_dim: int, capacity: int,
                 device: torch.device, dtype: torch.dtype):
        shape = (n_layers, batch, n_heads, capacity, head_dim)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v`` of shape (batch, heads, T, head_dim) and return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise RuntimeError(f"KVCache overflow: {end} positions > capacity {self.capacity}")
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Append this layer's new ``k, v`` and attend the new queries q (B, H, T, hd) over every cached key.

        ``attn_mask`` None: causal among the new queries, which is only unambiguous on an empty cache or
        for a single query (it then sees every cached key); otherwise pass bool (B, 1, T, T_keys).
        """
        past = self.length
        k, v = self.update(layer, k, v)
        if attn_mask is None:
            causal = q.shape[2] > 1
            if causal and past:
                raise ValueError("multi-token step on a non-empty cache needs an explicit attn_mask")
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)

    def advance(self, n: int) -> None:
        """Mark ``n`` more positions filled (after every layer has written them)."""
        self.length += n

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only batch ``rows`` (a 1-D index tensor; repeats fan one row out to many)."""
        self.k = self.k.index_select(1, rows)
        self.v = self.v.index_select(1, rows)


class SplitKV(NamedTuple):
    """Keys/values of rows that share a per-series prefix, stored once per series.

    Rows are series-major: row ``r`` belongs to series ``r // samples``. The prefix (S, H, P, hd) is
    shared by the ``samples`` rows of its series (``prefix_valid`` (S, P) bool marks its real, non-padding
    positions; None = all real); the suffix (S * samples, H, T_s, hd) is each row's own, and
    ``suffix_allowed`` (T, T_s) bool (None = all) says which suffix keys each of the T queries sees.
    Attending through this layout gives the same result as attending over each row's
    ``cat(prefix, suffix)`` but reads (and stores) every prefix once per series instead of once per row.
    """

    prefix_k: torch.Tensor
    prefix_v: torch.Tensor
    prefix_valid: torch.Tensor | None
    suffix_k: torch.Tensor
    suffix_v: torch.Tensor
    suffix_allowed: torch.Tensor | None = None

    def attend(self, q: torch.Tensor) -> torch.Tensor:
        """q (R, H, T, hd) -> (R, H, T, hd), softmax over the real prefix keys and allowed suffix keys together."""
        n_series, heads, p_len, head_dim = self.prefix_k.shape
        rows, _, t, _ = q.shape
        samples = rows // n_series
        scale = head_dim ** -0.5

        def to_rows(x: torch.Tensor) -> torch.Tensor:  # (S, H, samples * T, ...) -> (R, H, T, ...)
            return x.view(n_series, heads, samples, t, *x.shape[3:]).transpose(1, 2).reshape(rows, heads, t,
                                                                                              *x.shape[3:])

        def to_series(x: torch.Tensor) -> torch.Tensor:  # (R, H, T, ...) -> (S, H, samples * T, ...)
            return x.view(n_series, samples, heads, t, *x.shape[3:]).transpose(1, 2).reshape(
                n_series, heads, samples * t, *x.shape[3:])

        # Softmax over [prefix | suffix] keys in two parts sharing one running maximum, so the prefix is
        # read once per series (the samples of a series are folded into its query axis).
        prefix_scores = torch.matmul(to_series(q), self.prefix_k.transpose(-1, -2)).float().mul_(scale)
        if self.prefix_valid is not None:
            prefix_scores.masked_fill_(~self.prefix_valid[:, None, None, :], float("-inf"))
        top = to_rows(prefix_scores.amax(-1))  # (R, H, T)
        suffix_scores = None
        if self.suffix_k.shape[2]:
            suffix_scores = torch.matmul(q, self.suffix_k.transpose(-1, -2)).float().mul_(scale)  # (R, H, T, T_s)
            if self.suffix_allowed is not None:
                suffix_scores.masked_fill_(~self.suffix_allowed, float("-inf"))
            top = torch.maximum(top, suffix_scores.amax(-1))
        weights = prefix_scores.sub_(to_series(top).unsqueeze(-1)).exp_()
        total = to_rows(weights.sum(-1))
        out = to_rows(torch.matmul(weights.to(q.dtype), self.prefix_v).float())
        if suffix_scores is not None:
            weights = suffix_scores.sub_(top.unsqueeze(-1)).exp_()
            total = total + weights.sum(-1)
            out = out + torch.matmul(weights.to(q.dtype), self.suffix_v).float()
        return out.div_(total.unsqueeze(-1)).to(q.dtype)


class SharedPrefixCache:
    """A key/value cache whose rows share a per-series prefix (see :class:`SplitKV`).

    ``prefix_k``/``prefix_v`` (n_layers, S, H, P, hd) are fixed; each of the S * ``samples`` rows owns a
    suffix buffer of ``capacity`` positions. How many suffix positions are filled is a device tensor
    (``position``), and attention always spans the whole buffer with a mask, so a step has the same
    shapes and launches the same kernels every time (it can be captured in a CUDA graph).
    """

    def __init__(self, prefix_k: torch.Tensor, prefix_v: torch.Tensor, prefix_valid: torch.Tensor | None,
                 samples: int, capacity: int):
        n_layers, n_series, heads, _, head_dim = prefix_k.shape
        self.prefix_k, self.prefix_v, self.prefix_valid = prefix_k, prefix_v, prefix_valid
        self.suffix = KVCache(n_layers, n_series * samples, heads, head_dim, capacity, prefix_k.device,
                              prefix_k.dtype)
        # Attention spans unfilled slots too (masked, weight 0): they must hold finite values, as 0 * NaN
        # from uninitialised memory would still be NaN.
        self.suffix.k.zero_()
        self.suffix.v.zero_()
        self.samples = samples
        self.position = torch.zeros(1, dtype=torch.long, device=prefix_k.device)
        self._slots = torch.arange(capacity, device=prefix_k.device)

    @classmethod
    def from_cache(cls, prefix: KVCache, prefix_valid: torch.Tensor | None, samples: int,
                   capacity: int) -> SharedPrefixCache:
        """Share the filled part of ``prefix`` (a cache over the S series) between ``samples`` rows each."""
        return cls(prefix.k[:, :, :, :prefix.length], prefix.v[:, :, :, :prefix.length], prefix_valid, samples,
                   capacity)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the rows' new keys/values (R, H, T, hd) at suffix slots ``position .. position + T - 1``."""
        slots = self.position + torch.arange(k.shape[2], device=k.device) if k.shape[2] > 1 else self.position
        self.suffix.k[layer].index_copy_(2, slots, k)
        self.suffix.v[layer].index_copy_(2, slots, v)

    def layer(self, layer: int, new: int = 0) -> SplitKV:
        """This layer's keys/values. Queries are the ``new`` tokens just written (each sees the suffix up
        to itself) or, with ``new`` 0, one query that sees every filled slot."""
        if new:
            last = self.position + torch.arange(new, device=self.position.device)  # (new,)
            allowed = self._slots[None, :] <= last[:, None]
        else:
            allowed = (self._slots < self.position)[None, :]
        return SplitKV(self.prefix_k[layer], self.prefix_v[layer], self.prefix_valid,
                       self.suffix.k[layer], self.suffix.v[layer], allowed)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Write the new suffix ``k, v`` (R, H, T, hd); the T queries attend causally (no mask needed)."""
        if attn_mask is not None:
            raise ValueError("SharedPrefixCache builds its own mask; pass attn_mask=None")
        self.write(layer, k, v)
        return self.layer(layer, k.shape[2]).attend(q)

    def advance(self, n: int) -> None:
        """Mark ``n`` more suffix slots filled (after every layer has written them); in place on the device."""
        self.position.add_(n)

    def select_series(self, series: torch.Tensor) -> None:
        """Keep only ``series`` (1-D index into the current series) and their rows."""
        rows = (series[:, None] * self.samples + torch.arange(self.samples, device=series.device)).reshape(-1)
        self.prefix_k = self.prefix_k.index_select(1, series)
        self.prefix_v = self.prefix_v.index_select(1, series)
        if self.prefix_valid is not None:
            self.prefix_valid = self.prefix_valid[series]
        self.suffix.select_rows(rows)
