"""Transformer building blocks shared by the tokenizer and the predictor network.

The inference caches the attention layers can write to live in :mod:`kronos.model.kv_cache`.

Submodule and parameter names follow the published checkpoints (``norm1``, ``self_attn.q_proj``,
``self_attn.rotary.inv_freq``, ``ffn.w1`` ...), so ``load_state_dict`` takes them unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .kv_cache import KVCache, SharedPrefixCache


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

    packed_gate_up = None  # w1 and w3 as one product, set for inference by kronos.model.precision

    def __init__(self, d_model: int, ff_dim: int, dropout_p: float = 0.0):
        super().__init__()
        self.w1 = nn.Linear(d_model, ff_dim, bias=False)
        self.w3 = nn.Linear(d_model, ff_dim, bias=False)
        self.w2 = nn.Linear(ff_dim, d_model, bias=False)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed_gate_up is not None:
            gate, up = self.packed_gate_up(x).chunk(2, dim=-1)
        else:
            gate, up = self.w1(x), self.w3(x)
        return self.dropout(self.w2(F.silu(gate) * up))


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


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions and biased projections."""

    packed_qkv = None  # q_proj, k_proj and v_proj as one product, set for inference by kronos.model.precision

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
        if self.packed_qkv is not None:
            q, k, v = self.packed_qkv(x).chunk(3, dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
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

    def step(self, x: torch.Tensor, angles: RotaryAngles, cache: KVCache | SharedPrefixCache, layer: int,
             attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One new token per row through a cached block, for inference: x (B, d) -> (B, d).

        The same arithmetic as ``forward`` on (B, 1, d), so the same bits, with far less Python per step:
        q, k and v stay views of one packed product and are rotated together, submodules are entered
        through ``forward`` (no hook machinery), and the dropouts (identity in eval mode) are not called.
        At batch 1 a step's small operations cost as much as its matrix products, so this matters.
        ``angles`` as for ``forward``; ``attn_mask`` (B, 1, 1, T_keys) or None.
        """
        attn, ffn = self.self_attn, self.ffn
        b, d = x.shape
        h = self.norm1.forward(x)
        if attn.packed_qkv is not None:
            qkv = attn.packed_qkv(h)
        else:
            qkv = torch.cat([attn.q_proj.forward(h), attn.k_proj.forward(h), attn.v_proj.forward(h)], dim=-1)
        qkv = qkv.view(b, 3, attn.n_heads, 1, attn.head_dim)  # (B, q|k|v, H, T=1, hd)
        cos, signed_sin = angles
        if cos.dim() == 4:  # per-row positions (B, 1, 1, hd): broadcast over q|k too
            cos, signed_sin = cos.unsqueeze(1), signed_sin.unsqueeze(1)
        qk = qkv[:, :2]
        qk = qk * cos + qk.roll(attn.head_dim // 2, -1) * signed_sin  # RotaryAngles.rotate, inlined
        out = cache.attend(layer, qk[:, 0], qk[:, 1], qkv[:, 2], attn_mask)  # (B, H, 1, hd)
        x = x + attn.out_proj.forward(out.reshape(b, d))
        h = self.norm2.forward(x)
        if ffn.packed_gate_up is not None:
            gate_up = ffn.packed_gate_up(h)
        else:
            gate_up = torch.cat([ffn.w1.forward(h), ffn.w3.forward(h)], dim=-1)
        half = gate_up.shape[-1] // 2
        return x + ffn.w2.forward(F.silu(gate_up[:, :half]) * gate_up[:, half:])


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
