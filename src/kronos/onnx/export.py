"""Export a Kronos predictor (network and tokenizer) to ONNX graphs that ONNX Runtime runs without PyTorch.

A folder written by :func:`export_onnx` holds five graphs and one metadata file:

- ``tokenizer_encode.onnx``: normalised bars (N, T, 6) float32 -> s1, s2 token ids (N, T) int64;
- ``tokenizer_decode.onnx``: s1, s2 (N, T) int64 -> reconstructed normalised bars (N, T, 6);
- ``prefill.onnx``: a window of tokens (N, T) and their time features (N, T, 5) -> the last position's
  s1 logits and hidden state, every layer's keys/values (L, N, H, T, hd) and the dependency layer's
  keys/values (N, Hd, T, hdd);
- ``step.onnx``: one new token per row after cached keys/values (a per-series prefix and a per-row suffix
  filled up to ``suffix_len``) -> its s1 logits, hidden state and the new keys/values to store;
- ``s2.onnx``: the chosen s1 and the dependency layer's keys/values -> s2 logits;
- ``kronos_onnx.json``: both configs, ``max_context``, ``lookback``, ``clip`` and the shapes above.

The graphs are written from this module's own forward functions over the network's parameters, the same
arithmetic as :mod:`kronos.model.network` in inference (no dropout, the dependency layer's single query unrotated).
``int8=True`` also writes ``*.int8.onnx`` copies of the network graphs with dynamically quantised matrix
products (``onnxruntime.quantization.quantize_dynamic``, int8 weights, per-row activations scale).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..model.modules import TransformerBlock
from ..model.network import Kronos
from ..model.tokenizer import KronosTokenizer

META_FILE = "kronos_onnx.json"
FORMAT_VERSION = 1
NETWORK_GRAPHS = ("prefill", "step", "s2")
TOKENIZER_GRAPHS = ("tokenizer_encode", "tokenizer_decode")
OPSET = 17
MIN_POSITIONS = 2048  # rows of the rotary tables at least: max_context can be raised when running


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class _Tables(nn.Module):
    """cos/sin rotary tables (positions, head_dim) of the network's float32 ``inv_freq``, as graph constants."""

    def __init__(self, inv_freq: torch.Tensor, length: int):
        super().__init__()
        t = torch.arange(length, dtype=torch.float32)
        emb = torch.cat([torch.outer(t, inv_freq.float())] * 2, dim=-1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())


def _block_qkv(block: TransformerBlock, x: torch.Tensor):
    """x (..., d) -> q, k, v (..., H, hd) before rotation, and the normed input."""
    a = block.self_attn
    h = _rms(x, block.norm1.weight, block.norm1.eps)
    shape = x.shape[:-1] + (a.n_heads, a.head_dim)
    return a.q_proj(h).reshape(shape), a.k_proj(h).reshape(shape), a.v_proj(h).reshape(shape)


def _block_rest(block: TransformerBlock, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """Residual after attention (attended (..., d)), then the SwiGLU feed-forward."""
    x = x + block.self_attn.out_proj(attended)
    h = _rms(x, block.norm2.weight, block.norm2.eps)
    ffn = block.ffn
    return x + ffn.w2(F.silu(ffn.w1(h)) * ffn.w3(h))


def _causal_blocks(blocks: nn.ModuleList, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   keep: bool = False):
    """Full causal pass of (N, T, d) through ``blocks``; with ``keep`` also each layer's rotated k and v
    stacked (L, N, H, T, hd)."""
    t = x.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
    bias = torch.zeros(t, t, device=x.device).masked_fill(~causal, float("-inf"))
    keys, values = [], []
    for block in blocks:
        q, k, v = (z.transpose(1, 2) for z in _block_qkv(block, x))  # (N, H, T, hd)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5) + bias
        out = torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(x.shape)
        x = _block_rest(block, x, out)
        if keep:
            keys.append(k)
            values.append(v)
    if keep:
        return x, torch.stack(keys), torch.stack(values)
    return x


class Prefill(nn.Module):
    """Window (N, T) tokens at positions 0..T-1 -> s1 logits (N, V1), hidden (N, d), keys, values
    (L, N, H, T, hd), dep_k, dep_v (N, Hd, T, hdd)."""

    def __init__(self, model: Kronos, max_context: int):
        super().__init__()
        self.model = model
        self.tables = _Tables(model.transformer[0].self_attn.rotary.inv_freq, max_context)

    def forward(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor):
        m = self.model
        t = s1.shape[1]
        x = m.embedding(s1, s2) + m.time_emb(stamp)
        cos, sin = self.tables.cos[:t], self.tables.sin[:t]
        x, keys, values = _causal_blocks(m.transformer, x, cos, sin, keep=True)
        hidden = _rms(x, m.norm.weight, m.norm.eps)
        dep = m.dep_layer.cross_attn
        n = hidden.shape[0]
        dep_k = dep.k_proj(hidden).reshape(n, t, dep.n_heads, dep.head_dim).transpose(1, 2)
        dep_v = dep.v_proj(hidden).reshape(n, t, dep.n_heads, dep.head_dim).transpose(1, 2)
        last = hidden[:, -1]
        return m.head.proj_s1(last), last, keys, values, dep_k, dep_v


def _split_attend(q: torch.Tensor, prefix_k: torch.Tensor, prefix_v: torch.Tensor, suffix_k: torch.Tensor,
                  suffix_v: torch.Tensor, suffix_bias: torch.Tensor, new_k: torch.Tensor | None,
                  new_v: torch.Tensor | None) -> torch.Tensor:
    """One query per row q (B, H, hd) over a per-series prefix (S, H, P, hd) shared by B / S rows, each row's
    suffix (B, H, C, hd) with additive ``suffix_bias`` (C,) (0 at filled slots, -inf after), and optionally the
    row's own new key/value (B, H, hd). Softmax over all of them together -> (B, H, hd)."""
    b, h, hd = q.shape
    s, p = prefix_k.shape[0], prefix_k.shape[2]
    scale = hd ** -0.5
    q_series = q.reshape(s, -1, h, hd).transpose(1, 2)  # (S, H, samples, hd)
    prefix_scores = torch.matmul(q_series, prefix_k.transpose(-1, -2)).transpose(1, 2).reshape(b, h, p) * scale
    suffix_scores = torch.matmul(q.unsqueeze(2), suffix_k.transpose(-1, -2)).squeeze(2) * scale + suffix_bias
    parts = [prefix_scores, suffix_scores]
    if new_k is not None:
        parts.append((q * new_k).sum(-1, keepdim=True) * scale)
    weights = torch.cat(parts, dim=-1).softmax(-1)
    c = suffix_k.shape[2]
    w_prefix = weights[..., :p].reshape(s, -1, h, p).transpose(1, 2)  # (S, H, samples, P)
    out = torch.matmul(w_prefix, prefix_v).transpose(1, 2).reshape(b, h, hd)
    out = out + torch.matmul(weights[..., p:p + c].unsqueeze(2), suffix_v).squeeze(2)
    if new_v is not None:
        out = out + weights[..., p + c:] * new_v
    return out


class Step(nn.Module):
    """One token per row after its cached keys/values.

    Inputs: s1, s2 (B,) int64, stamp (B, 5), position (1,) int64 (the new token's position, shared by all
    rows), prefix_k/prefix_v (L, S, H, P, hd), suffix_k/suffix_v (L, B, H, C, hd), suffix_len (1,) int64 (filled
    suffix slots). Outputs: s1 logits (B, V1), hidden (B, d), new_k/new_v (L, B, H, hd) (rotated, to store at
    suffix slot ``suffix_len``), dep_k/dep_v (B, Hd, hdd) of the new position.
    """

    def __init__(self, model: Kronos, max_context: int):
        super().__init__()
        self.model = model
        self.tables = _Tables(model.transformer[0].self_attn.rotary.inv_freq, max_context)

    def forward(self, s1, s2, stamp, position, prefix_k, prefix_v, suffix_k, suffix_v, suffix_len):
        m = self.model
        x = m.embedding(s1, s2) + m.time_emb(stamp)
        cos, sin = self.tables.cos[position], self.tables.sin[position]  # (1, hd)
        slots = torch.arange(suffix_k.shape[3], device=x.device)
        bias = torch.zeros(slots.shape, device=x.device).masked_fill(slots >= suffix_len, float("-inf"))
        keys, values = [], []
        for i, block in enumerate(m.transformer):
            q, k, v = _block_qkv(block, x)  # (B, H, hd)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            out = _split_attend(q, prefix_k[i], prefix_v[i], suffix_k[i], suffix_v[i], bias, k, v)
            x = _block_rest(block, x, out.reshape(x.shape))
            keys.append(k)
            values.append(v)
        hidden = _rms(x, m.norm.weight, m.norm.eps)
        dep = m.dep_layer.cross_attn
        shape = (hidden.shape[0], dep.n_heads, dep.head_dim)
        return (m.head.proj_s1(hidden), hidden, torch.stack(keys), torch.stack(values),
                dep.k_proj(hidden).reshape(shape), dep.v_proj(hidden).reshape(shape))


class S2(nn.Module):
    """hidden (B, d), chosen s1 (B,) int64, dep prefix keys/values (S, Hd, P, hdd), dep suffix (B, Hd, C, hdd)
    filled up to ``suffix_len`` (1,) -> s2 logits (B, V2). The single query is unrotated and sees every key."""

    def __init__(self, model: Kronos):
        super().__init__()
        self.model = model

    def forward(self, hidden, s1, prefix_k, prefix_v, suffix_k, suffix_v, suffix_len):
        m = self.model
        dep = m.dep_layer.cross_attn
        query = m.embedding.emb_s1(s1)
        q = dep.q_proj(query).reshape(query.shape[0], dep.n_heads, dep.head_dim)
        slots = torch.arange(suffix_k.shape[2], device=q.device)
        bias = torch.zeros(slots.shape, device=q.device).masked_fill(slots >= suffix_len, float("-inf"))
        out = _split_attend(q, prefix_k, prefix_v, suffix_k, suffix_v, bias, None, None)
        attended = dep.out_proj(out.reshape(query.shape))
        normed = _rms(hidden + attended, m.dep_layer.norm.weight, m.dep_layer.norm.eps)
        return m.head.proj_s2(normed)


class _Codec(nn.Module):
    def __init__(self, tokenizer: KronosTokenizer, length: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.tables = _Tables(tokenizer.encoder[0].self_attn.rotary.inv_freq if len(tokenizer.encoder)
                              else tokenizer.decoder[0].self_attn.rotary.inv_freq, length)

    def angles(self, t: int):
        return self.tables.cos[:t], self.tables.sin[:t]


class Encode(_Codec):
    """Normalised bars (N, T, 6) -> s1, s2 (N, T) int64 (bit i of an index set where coordinate i is > 0)."""

    def forward(self, x: torch.Tensor):
        tok = self.tokenizer
        z = tok.embed(x)
        z = _causal_blocks(tok.encoder, z, *self.angles(x.shape[1]))
        z = tok.quant_embed(z)
        positive = (z > 0).long()
        s1_bits, s2_bits = tok.s1_bits, tok.s2_bits
        w1 = 2 ** torch.arange(s1_bits, dtype=torch.long)
        w2 = 2 ** torch.arange(s2_bits, dtype=torch.long)
        return (positive[..., :s1_bits] * w1).sum(-1), (positive[..., s1_bits:] * w2).sum(-1)


class Decode(_Codec):
    """s1, s2 (N, T) int64 -> reconstructed normalised bars (N, T, 6)."""

    def forward(self, s1: torch.Tensor, s2: torch.Tensor):
        tok = self.tokenizer
        scale = 1.0 / math.sqrt(tok.codebook_dim)
        w1 = 2 ** torch.arange(tok.s1_bits, dtype=torch.long)
        w2 = 2 ** torch.arange(tok.s2_bits, dtype=torch.long)
        bits = torch.cat([(s1.unsqueeze(-1) // w1) % 2, (s2.unsqueeze(-1) // w2) % 2], dim=-1)
        codes = (bits.float() * 2 - 1) * scale
        z = tok.post_quant_embed(codes)
        z = _causal_blocks(tok.decoder, z, *self.angles(s1.shape[1]))
        return tok.head(z)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]]) -> None:
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)


def _network_graphs(model: Kronos, folder: Path, max_context: int) -> None:
    cfg = model.config
    layers, heads, head_dim = cfg.n_layers, cfg.n_heads, cfg.d_model // cfg.n_heads
    dep_heads = cfg.dep_n_heads
    t, b, s, c = 6, 4, 2, 3
    s1 = torch.zeros(b, t, dtype=torch.long)
    stamp = torch.zeros(b, t, 5)
    _export(Prefill(model, max_context), (s1, s1, stamp), folder / "prefill.onnx", ["s1", "s2", "stamp"],
            ["s1_logits", "hidden", "keys", "values", "dep_k", "dep_v"],
            {"s1": {0: "rows", 1: "length"}, "s2": {0: "rows", 1: "length"}, "stamp": {0: "rows", 1: "length"},
             "s1_logits": {0: "rows"}, "hidden": {0: "rows"}, "keys": {1: "rows", 3: "length"},
             "values": {1: "rows", 3: "length"}, "dep_k": {0: "rows", 2: "length"}, "dep_v": {0: "rows", 2: "length"}})
    prefix = torch.zeros(layers, s, heads, t, head_dim)
    suffix = torch.zeros(layers, b, heads, c, head_dim)
    count = torch.tensor([1], dtype=torch.long)
    cache_axes = {1: "series", 3: "prefix"}
    suffix_axes = {1: "rows", 3: "capacity"}
    _export(Step(model, max_context),
            (s1[:, 0], s1[:, 0], stamp[:, 0], torch.tensor([t], dtype=torch.long), prefix, prefix, suffix, suffix,
             count), folder / "step.onnx",
            ["s1", "s2", "stamp", "position", "prefix_k", "prefix_v", "suffix_k", "suffix_v", "suffix_len"],
            ["s1_logits", "hidden", "new_k", "new_v", "dep_k", "dep_v"],
            {"s1": {0: "rows"}, "s2": {0: "rows"}, "stamp": {0: "rows"}, "prefix_k": cache_axes,
             "prefix_v": cache_axes, "suffix_k": suffix_axes, "suffix_v": suffix_axes, "s1_logits": {0: "rows"},
             "hidden": {0: "rows"}, "new_k": {1: "rows"}, "new_v": {1: "rows"}, "dep_k": {0: "rows"},
             "dep_v": {0: "rows"}})
    dep_prefix = torch.zeros(s, dep_heads, t, cfg.d_model // dep_heads)
    dep_suffix = torch.zeros(b, dep_heads, c, cfg.d_model // dep_heads)
    _export(S2(model), (torch.zeros(b, cfg.d_model), s1[:, 0], dep_prefix, dep_prefix, dep_suffix, dep_suffix, count),
            folder / "s2.onnx", ["hidden", "s1", "prefix_k", "prefix_v", "suffix_k", "suffix_v", "suffix_len"],
            ["s2_logits"],
            {"hidden": {0: "rows"}, "s1": {0: "rows"}, "prefix_k": {0: "series", 2: "prefix"},
             "prefix_v": {0: "series", 2: "prefix"}, "suffix_k": {0: "rows", 2: "capacity"},
             "suffix_v": {0: "rows", 2: "capacity"}, "s2_logits": {0: "rows"}})


def _tokenizer_graphs(tokenizer: KronosTokenizer, folder: Path, length: int) -> None:
    x = torch.zeros(2, 5, tokenizer.config.d_in)
    _export(Encode(tokenizer, length), (x,), folder / "tokenizer_encode.onnx", ["bars"], ["s1", "s2"],
            {"bars": {0: "rows", 1: "length"}, "s1": {0: "rows", 1: "length"}, "s2": {0: "rows", 1: "length"}})
    ids = torch.zeros(2, 5, dtype=torch.long)
    _export(Decode(tokenizer, length), (ids, ids), folder / "tokenizer_decode.onnx", ["s1", "s2"], ["bars"],
            {"s1": {0: "rows", 1: "length"}, "s2": {0: "rows", 1: "length"}, "bars": {0: "rows", 1: "length"}})


def quantise_int8(folder: str | os.PathLike) -> list[Path]:
    """Write ``NAME.int8.onnx`` beside each network graph: int8 weights for every matrix product (dynamic
    quantisation: activations are quantised per call from their own range)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = Path(folder)
    written = []
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a generic pre-processing hint on the root logger
    try:
        for name in NETWORK_GRAPHS:
            target = folder / f"{name}.int8.onnx"
            quantize_dynamic(folder / f"{name}.onnx", target, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"])
            written.append(target)
    finally:
        root.setLevel(level)
    return written


def export_onnx(model: Kronos, tokenizer: KronosTokenizer, out: str | os.PathLike, *, max_context: int = 512,
                lookback: int | None = None, clip: float = 5.0, int8: bool = True,
                sources: dict[str, str] | None = None) -> Path:
    """Write the ONNX graphs of ``model`` and ``tokenizer`` and their metadata into the new folder ``out``.

    The folder is built beside ``out`` and renamed into place, so a failed export leaves nothing behind.
    ``max_context``, ``lookback`` and ``clip`` are what the ONNX predictor uses by default.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"out={out} already exists; give a new folder")
    model = model.float().cpu().eval()
    tokenizer = tokenizer.float().cpu().eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        positions = max(int(max_context), MIN_POSITIONS)
        _network_graphs(model, staging, positions)
        _tokenizer_graphs(tokenizer, staging, positions)
        if int8:
            quantise_int8(staging)
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION, "model_config": model.config.to_dict(),
            "tokenizer_config": tokenizer.config.to_dict(), "max_context": int(max_context),
            "lookback": int(lookback or max_context), "clip": float(clip), "max_positions": positions,
            "int8": bool(int8), "sources": sources or {}, "opset": OPSET,
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def export_predictor(predictor: Any, out: str | os.PathLike, *, int8: bool = True) -> Path:
    """:func:`export_onnx` of a loaded :class:`~kronos.forecasting.predictor.KronosPredictor` (float32 weights are
    exported whatever its dtype; it must hold float32 or bfloat16 parameters, not int8-packed ones)."""
    return export_onnx(predictor.model, predictor.tokenizer, out, max_context=predictor.max_context,
                       lookback=predictor.lookback, clip=predictor.clip, int8=int8,
                       sources=getattr(predictor, "sources", None))
