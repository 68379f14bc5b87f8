"""Transformer building blocks shared by the tokenizer and the predictor network.

Submodule and parameter names follow the published checkpoints (``norm1``, ``self_attn.q_proj``,
``self_attn.rotary.inv_freq``, ``ffn.w1`` ...), so ``load_state_dict`` takes them unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension, computed in float32 (eps 1e-5)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            # One fused kernel; same formula as below, bit for bit on float32.
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class FeedForward(nn.Module):
    """SwiGLU feed-forward without biases: ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, d_model: int, ff_dim: int, dropout_p: float = 0.0):
        super().__init__()
        self.w1 = nn.Linear(d_model, ff_dim, bias=False)
        self.w3 = nn.Linear(d_model, ff_dim, bias=False)
        self.w2 = nn.Linear(ff_dim, d_model, bias=False)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class RotaryEmbedding(nn.Module):
    """Rotary position embedding in rotate-half form.

    ``inv_freq`` is a persistent buffer because the published checkpoints store it. Angles are always
    computed in float32 (a bfloat16 copy of ``inv_freq`` or of the positions would be off by whole
    radians at position 500) and cast to the activations' dtype afterwards.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.head_dim, self.base = head_dim, base
        self.register_buffer("inv_freq", self._inv_freq(head_dim, base))
        self._table: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def _inv_freq(head_dim: int, base: float, device: torch.device | None = None) -> torch.Tensor:
        return 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))

    def _float32_inv_freq(self) -> torch.Tensor:
        if self.inv_freq.dtype == torch.float32:
            return self.inv_freq
        # The module was cast (``model.to(torch.bfloat16)``): use the float32 values the checkpoints store.
        return self._inv_freq(self.head_dim, self.base, self.inv_freq.device)

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype | None = None,
                max_position: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for integer ``positions`` (any shape), each of shape ``positions.shape + (head_dim,)``,
        in ``dtype`` (float32 by default). ``max_position``, an upper bound of ``positions`` known to the
        caller, saves reading the positions back from the device."""
        if max_position is not None:
            needed = max_position + 1
        else:
            needed = int(positions.max()) + 1 if positions.numel() else 1
        table = self._table
        if table is None or table[0].shape[0] < needed or table[0].device != self.inv_freq.device:
            length = max(needed, 1024)
            inv_freq = self._float32_inv_freq()
            t = torch.arange(length, device=inv_freq.device, dtype=torch.float32)
            freqs = torch.outer(t, inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            table = self._table = (emb.cos(), emb.sin())
        cos, sin = table[0][positions], table[1][positions]
        if dtype is not None and dtype != cos.dtype:
            cos, sin = cos.to(dtype), sin.to(dtype)
        return cos, sin

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def angles(self, positions: torch.Tensor, dtype: torch.dtype | None = None,
               max_position: int | None = None) -> RotaryAngles:
        """Angles for ``positions`` (T,) or (B, T) in ``dtype``, shaped to broadcast over (B, H, T, head_dim)."""
        cos, sin = self.cos_sin(positions, dtype, max_position)
        half = sin.shape[-1] // 2
        signed_sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        if positions.dim() == 2:  # per-row positions: (B, T, hd) -> (B, 1, T, hd)
            cos, signed_sin = cos.unsqueeze(1), signed_sin.unsqueeze(1)
        return RotaryAngles(cos, signed_sin)


class RotaryAngles(NamedTuple):
    """cos and sign-folded sin ``[-sin_lo, sin_hi]`` of some positions, computed once per forward pass
    and shared by every layer (all layers have the same head size and base)."""

    cos: torch.Tensor
    signed_sin: torch.Tensor

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate-half rotary embedding of x (..., T, hd); bit-identical to :meth:`RotaryEmbedding.rotate`
        (``roll`` gives ``[x2, x1]``, the folded sign makes it ``[-x2, x1]``)."""
        return x * self.cos + x.roll(x.shape[-1] // 2, -1) * self.signed_sin


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


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions and biased projections."""

    def __init__(self, d_model: int, n_heads: int, attn_dropout_p: float = 0.0, resid_dropout_p: float = 0.0,
                 rope_base: float = 10000.0):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = RotaryEmbedding(self.head_dim, rope_base)
        self.attn_dropout_p = attn_dropout_p
        self.resid_dropout = nn.Dropout(resid_dropout_p)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | RotaryAngles, attn_mask: torch.Tensor | None = None,
                cache: KVCache | SharedPrefixCache | None = None, layer: int = 0) -> torch.Tensor:
        """x (B, T, d); positions (T,) or (B, T), or their precomputed :class:`RotaryAngles`;
        attn_mask None (plain causal) or bool (B, 1, T, T_keys)."""
        b, t, d = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        angles = positions if isinstance(positions, RotaryAngles) else self.rotary.angles(positions, x.dtype)
        q, k = angles.rotate(q), angles.rotate(k)
        if cache is not None:
            out = cache.attend(layer, q, k, v, attn_mask)
        else:
            dropout = self.attn_dropout_p if self.training else 0.0
            causal = attn_mask is None and t > 1
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=causal)
        out = out.transpose(1, 2).reshape(b, t, d)
        return self.resid_dropout(self.out_proj(out))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then + ffn(norm2(x))."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, ffn_dropout_p: float = 0.0,
                 attn_dropout_p: float = 0.0, resid_dropout_p: float = 0.0, rope_base: float = 10000.0):
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.self_attn = SelfAttention(d_model, n_heads, attn_dropout_p, resid_dropout_p, rope_base)
        self.norm2 = RMSNorm(d_model)
        self.ffn = FeedForward(d_model, ff_dim, ffn_dropout_p)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | RotaryAngles, attn_mask: torch.Tensor | None = None,
                cache: KVCache | SharedPrefixCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), positions, attn_mask, cache, layer)
        return x + self.ffn(self.norm2(x))


def padded_causal_mask(valid: torch.Tensor, n_queries: int | None = None) -> torch.Tensor:
    """Attention mask for left-padded rows.

    valid: bool (B, T_keys), True at real tokens. Queries are the last ``n_queries`` key positions
    (all of them by default). Returns bool (B, 1, T_q, T_keys), True where attention is allowed: causal,
    real keys only, and each query may always see itself so padded rows never produce NaN.
    """
    t_keys = valid.shape[1]
    n_queries = t_keys if n_queries is None else n_queries
    q_pos = torch.arange(t_keys - n_queries, t_keys, device=valid.device)
    k_pos = torch.arange(t_keys, device=valid.device)
    causal = k_pos[None, :] <= q_pos[:, None]  # (Tq, Tk)
    mask = causal[None] & valid[:, None, :]
    mask |= k_pos[None, None, :] == q_pos[None, :, None]
    return mask.unsqueeze(1)
