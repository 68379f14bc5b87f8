"""Kronos: the decoder-only transformer over hierarchical (s1, s2) token pairs.

One step of the network: embed the pair and the bar's time features, run the causal trunk, read
s1 logits from the last hidden state, then let the dependency-aware layer (a cross-attention whose
single query is the chosen s1 token) look over the hidden states to give s2 logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import PretrainedMixin
from .config import KronosConfig
from .kv_cache import KVCache, SharedPrefixCache, SplitKV
from .modules import RMSNorm, RotaryEmbedding, TransformerBlock, padded_causal_mask

TIME_FEATURES = ("minute", "hour", "weekday", "day", "month")
TIME_TABLE_SIZES = (60, 24, 7, 32, 13)


class HierarchicalEmbedding(nn.Module):
    """(s1, s2) -> fusion_proj([emb_s1(s1)·sqrt(d), emb_s2(s2)·sqrt(d)])."""

    def __init__(self, s1_bits: int, s2_bits: int, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.emb_s1 = nn.Embedding(2**s1_bits, d_model)
        self.emb_s2 = nn.Embedding(2**s2_bits, d_model)
        self.fusion_proj = nn.Linear(2 * d_model, d_model)
        nn.init.normal_(self.emb_s1.weight, std=d_model**-0.5)
        nn.init.normal_(self.emb_s2.weight, std=d_model**-0.5)

    def forward(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor) -> torch.Tensor:
        scale = math.sqrt(self.d_model)
        return self.fusion_proj(torch.cat([self.emb_s1(s1_ids) * scale, self.emb_s2(s2_ids) * scale], dim=-1))


class FixedEmbedding(nn.Module):
    """A frozen sinusoid table (used when ``learn_te`` is false); stored as ``<name>.emb.weight``."""

    def __init__(self, size: int, d_model: int):
        super().__init__()
        position = torch.arange(size).float().unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model))
        table = torch.zeros(size, d_model)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term)
        self.emb = nn.Embedding(size, d_model)
        self.emb.weight = nn.Parameter(table, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(x).detach()


class TemporalEmbedding(nn.Module):
    """Sum of per-feature tables indexed by stamp (B, T, 5) = minute, hour, weekday, day, month."""

    def __init__(self, d_model: int, learned: bool):
        super().__init__()
        table = nn.Embedding if learned else FixedEmbedding
        for name, size in zip(TIME_FEATURES, TIME_TABLE_SIZES):
            self.add_module(f"{name}_embed", table(size, d_model))

    def forward(self, stamp: torch.Tensor) -> torch.Tensor:
        stamp = stamp.long()
        minute, hour, weekday, day, month = (stamp[..., i] for i in range(5))
        return (self.hour_embed(hour) + self.weekday_embed(weekday) + self.day_embed(day)
                + self.month_embed(month) + self.minute_embed(minute))


class CrossAttention(nn.Module):
    """Multi-head attention of s1 embeddings (queries) over trunk hidden states (keys/values)."""

    packed_kv = None  # k_proj and v_proj as one product, set for inference by kronos.model.precision

    def __init__(self, d_model: int, n_heads: int, rope_base: float = 10000.0):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = RotaryEmbedding(self.head_dim, rope_base)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (B, T, d) -> unrotated keys and values (B, H, T, hd)."""
        if self.packed_kv is not None:
            k, v = self.packed_kv(context).chunk(2, dim=-1)
            return self._heads(k), self._heads(v)
        return self._heads(self.k_proj(context)), self._heads(self.v_proj(context))

    def attend_split(self, query: torch.Tensor, context: SplitKV) -> torch.Tensor:
        """A single query per row (B, 1, d) over context keys/values split into shared prefix and own suffix."""
        b, t_q, d = query.shape
        out = context.attend(self._heads(self.q_proj(query)))
        return self.out_proj(out.transpose(1, 2).reshape(b, t_q, d))

    def forward(self, query: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """query (B, Tq, d) over projected k, v (B, H, Tk, hd) -> (B, Tq, d).

        A single query (inference) is unrotated and sees every key: the published weights were used
        with query and keys all at rotary position 0 and no mask. ``Tq == Tk`` (teacher forcing) rotates
        both by ``positions`` and is causal (``attn_mask`` when rows are padded).
        """
        b, t_q, d = query.shape
        q = self._heads(self.q_proj(query))
        if t_q == 1:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            cos, sin = self.rotary.cos_sin(positions, q.dtype)
            if positions.dim() == 2:
                cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
            q, k = RotaryEmbedding.rotate(q, cos, sin), RotaryEmbedding.rotate(k, cos, sin)
            if attn_mask is None:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, t_q, d))


class DependencyAwareLayer(nn.Module):
    """``RMSNorm(hidden + CrossAttention(emb_s1(s1), hidden))``: conditions s2 on the chosen s1."""

    def __init__(self, d_model: int, n_heads: int, rope_base: float = 10000.0):
        super().__init__()
        self.cross_attn = CrossAttention(d_model, n_heads, rope_base)
        self.norm = RMSNorm(d_model)


class DualHead(nn.Module):
    def __init__(self, d_model: int, s1_vocab: int, s2_vocab: int):
        super().__init__()
        self.proj_s1 = nn.Linear(d_model, s1_vocab)
        self.proj_s2 = nn.Linear(d_model, s2_vocab)


def positions_and_mask(padding_mask: torch.Tensor | None, length: int, device: torch.device):
    """Rotary positions and attention mask for a (B, T) validity mask (True = real token).

    Without a mask: positions 0..T-1 and plain causal attention (mask None). With one: each row's
    positions count its real tokens from 0, so a left-padded row matches the same row unpadded.
    """
    if padding_mask is None:
        return torch.arange(length, device=device), None
    valid = padding_mask.to(device=device, dtype=torch.bool)
    positions = (valid.long().cumsum(-1) - 1).clamp_min(0)
    return positions, padded_causal_mask(valid)


class Kronos(PretrainedMixin, nn.Module):
    """The predictor network. Build it from a :class:`KronosConfig` or the ``config.json`` keyword
    arguments, or load one with :meth:`from_pretrained`."""

    config_class = KronosConfig
    bundled_part = "model"  # from_pretrained("default"): the bundled model

    def __init__(self, config: KronosConfig | dict | None = None, **kwargs: Any):
        super().__init__()
        cfg = self.config = KronosConfig.of(config, **kwargs)
        self.s1_vocab_size, self.s2_vocab_size = cfg.s1_vocab, cfg.s2_vocab
        self.embedding = HierarchicalEmbedding(cfg.s1_bits, cfg.s2_bits, cfg.d_model)
        self.time_emb = TemporalEmbedding(cfg.d_model, cfg.learn_te)
        self.token_drop = nn.Dropout(cfg.token_dropout_p)
        self.transformer = nn.ModuleList(
            TransformerBlock(cfg.d_model, cfg.n_heads, cfg.ff_dim, cfg.ffn_dropout_p, cfg.attn_dropout_p,
                             cfg.resid_dropout_p, cfg.rope_base) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model)
        self.dep_layer = DependencyAwareLayer(cfg.d_model, cfg.dep_n_heads, cfg.rope_base)
        self.head = DualHead(cfg.d_model, cfg.s1_vocab, cfg.s2_vocab)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding) and module.weight.requires_grad:
            nn.init.normal_(module.weight, std=module.embedding_dim**-0.5)

    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        first = self.transformer[0].self_attn
        return KVCache(len(self.transformer), batch, first.n_heads, first.head_dim, capacity,
                       self.device, self.norm.weight.dtype)

    def hidden_states(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, stamp: torch.Tensor | None,
                      positions: torch.Tensor, attn_mask: torch.Tensor | None = None,
                      cache: KVCache | SharedPrefixCache | None = None,
                      max_position: int | None = None) -> torch.Tensor:
        """The trunk: token ids (B, T) and stamps (B, T, 5) -> normed hidden states (B, T, d).

        With a ``cache`` the T new tokens are appended after ``cache.length`` cached ones.
        ``max_position``: an upper bound of ``positions`` if the caller knows one (saves a device read).
        """
        x = self.embedding(s1_ids, s2_ids)
        if stamp is not None:
            x = x + self.time_emb(stamp)
        x = self.token_drop(x)
        angles = self.transformer[0].self_attn.rotary.angles(positions, x.dtype, max_position)  # all layers
        for index, block in enumerate(self.transformer):
            x = block(x, angles, attn_mask, cache, index)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.norm(x)

    def next_hidden(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, stamp: torch.Tensor | None,
                    positions: torch.Tensor, cache: KVCache | SharedPrefixCache,
                    attn_mask: torch.Tensor | None = None, max_position: int | None = None) -> torch.Tensor:
        """The trunk on one new token per row after ``cache.length`` cached ones, for inference: ids (B, 1),
        stamps (B, 1, 5), positions (1,) or (B, 1) -> normed hidden states (B, 1, d).

        Gives the bits of :meth:`hidden_states` on the same inputs with fewer operations per step
        (:meth:`TransformerBlock.step`). In training mode (dropout active) it is :meth:`hidden_states`.
        """
        if self.training:
            return self.hidden_states(s1_ids, s2_ids, stamp, positions, attn_mask, cache, max_position)
        x = self.embedding(s1_ids, s2_ids)
        if stamp is not None:
            x = x + self.time_emb(stamp)
        x = x[:, 0]
        angles = self.transformer[0].self_attn.rotary.angles(positions, x.dtype, max_position)
        for index, block in enumerate(self.transformer):
            x = block.step(x, angles, cache, index, attn_mask)
        cache.advance(1)
        return self.norm(x)[:, None]

    def s2_logits(self, hidden_last: torch.Tensor, s1_ids: torch.Tensor, k: torch.Tensor | SplitKV,
                  v: torch.Tensor | None = None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One s2 step: last hidden state (B, 1, d), chosen s1 (B, 1), dep-layer keys/values (B, H, T, hd)
        -> s2 logits (B, 1, V2). ``key_mask`` (B, 1, 1, T) bool marks real context positions.
        ``k`` may instead be a :class:`SplitKV` holding both keys and values (``v`` is then None)."""
        dep = self.dep_layer
        query = self.embedding.emb_s1(s1_ids)
        if isinstance(k, SplitKV):
            attended = dep.cross_attn.attend_split(query, k)
        else:
            attended = dep.cross_attn(query, k, v, attn_mask=key_mask)
        return self.head.proj_s2(dep.norm(hidden_last + attended))

    # -- the original's public methods ----------------------------------------------------------
    def decode_s1(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, stamp: torch.Tensor | None = None,
                  padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, T) -> (s1 logits (B, T, V1), context = normed hidden states (B, T, d)).

        ``padding_mask`` (B, T) is True (or 1) at real tokens.
        """
        positions, mask = positions_and_mask(padding_mask, s1_ids.shape[1], s1_ids.device)
        context = self.hidden_states(s1_ids, s2_ids, stamp, positions, mask)
        return self.head.proj_s1(context), context

    def decode_s2(self, context: torch.Tensor, s1_ids: torch.Tensor,
                  padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """s2 logits given the context (B, T, d) and s1 ids.

        ``s1_ids`` (B, 1): one query for the next step, attending to the whole context -> (B, 1, V2),
        conditioned on the last context position. ``s1_ids`` (B, T): teacher forcing, causal -> (B, T, V2).
        """
        k, v = self.dep_layer.cross_attn.project_context(context)
        if s1_ids.shape[1] == 1:
            key_mask = None if padding_mask is None else padding_mask.bool()[:, None, None, :]
            return self.s2_logits(context[:, -1:], s1_ids, k, v, key_mask)
        positions, mask = positions_and_mask(padding_mask, context.shape[1], context.device)
        attended = self.dep_layer.cross_attn(self.embedding.emb_s1(s1_ids), k, v, positions, mask)
        return self.head.proj_s2(self.dep_layer.norm(context + attended))

    def forward(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, stamp: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None, use_teacher_forcing: bool = False,
                s1_targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: (s1 logits (B, T, V1), s2 logits (B, T, V2)).

        With ``use_teacher_forcing`` the s2 head is conditioned on ``s1_targets`` (the true next s1);
        otherwise on the argmax of the s1 logits (deterministic; the original sampled here).
        """
        s1_logits, context = self.decode_s1(s1_ids, s2_ids, stamp, padding_mask)
        if use_teacher_forcing:
            if s1_targets is None:
                raise ValueError("use_teacher_forcing=True needs s1_targets")
            sibling = s1_targets
        else:
            sibling = s1_logits.detach().argmax(-1)
        return s1_logits, self.decode_s2(context, sibling, padding_mask)
