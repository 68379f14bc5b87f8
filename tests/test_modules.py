"""Transformer building blocks: rotary angles under bfloat16, the padded causal mask, the KV caches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kronos.model.kv_cache import KVCache, SharedPrefixCache, SplitKV
from kronos.model.modules import RotaryEmbedding, padded_causal_mask


def test_rotary_table_stays_exact_after_casting_the_module_to_bfloat16():
    reference = RotaryEmbedding(64)
    cast = RotaryEmbedding(64).to(torch.bfloat16)  # inv_freq becomes bfloat16
    positions = torch.arange(512)
    cos32, sin32 = reference.cos_sin(positions)
    cos16, sin16 = cast.cos_sin(positions)
    assert cos16.dtype == torch.float32
    assert (cos16 - cos32).abs().max() < 2e-3 and (sin16 - sin32).abs().max() < 2e-3
    low_cos, _ = cast.cos_sin(positions, torch.bfloat16)
    assert low_cos.dtype == torch.bfloat16 and (low_cos.float() - cos32).abs().max() < 1e-2


def test_padded_causal_mask_is_causal_ignores_padding_and_keeps_the_diagonal():
    valid = torch.tensor([[False, False, True, True], [True, True, True, True]])
    mask = padded_causal_mask(valid)[:, 0]
    assert mask.shape == (2, 4, 4)
    assert torch.equal(mask[1], torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    # Row 0: real tokens see only real tokens up to themselves; padded queries see only themselves.
    assert mask[0].tolist() == [[True, False, False, False], [False, True, False, False],
                                [False, False, True, False], [False, False, True, True]]
    last = padded_causal_mask(valid, n_queries=1)[:, 0]
    assert last.tolist() == [[[False, False, True, True]], [[True, True, True, True]]]


def test_kv_cache_appends_fans_out_rows_and_refuses_overflow():
    cache = KVCache(n_layers=2, batch=2, n_heads=1, head_dim=2, capacity=3, device=torch.device("cpu"),
                    dtype=torch.float32)
    k = torch.arange(8.0).view(2, 1, 2, 2)
    keys, values = cache.update(0, k, k + 100)
    assert torch.equal(keys, k) and torch.equal(values, k + 100)
    cache.length = 2
    cache.select_rows(torch.tensor([1, 1, 0]))  # fan row 1 out twice
    assert cache.k.shape[1] == 3 and torch.equal(cache.k[0, 0, :, :2], k[1]) and torch.equal(cache.k[0, 2, :, :2], k[0])
    step = torch.zeros(3, 1, 1, 2)
    keys, _ = cache.update(0, step, step)
    assert keys.shape == (3, 1, 3, 2)
    cache.length = 3
    with pytest.raises(RuntimeError, match="KVCache overflow: 4 positions > capacity 3"):
        cache.update(0, step, step)


def _dense_attention(q, prefix_k, prefix_v, prefix_valid, suffix_k, suffix_v, samples, suffix_allowed):
    """Reference: every row attends over cat(its series' prefix, its own suffix) with one explicit mask."""
    k = torch.cat((prefix_k.repeat_interleave(samples, 0), suffix_k), dim=2)
    v = torch.cat((prefix_v.repeat_interleave(samples, 0), suffix_v), dim=2)
    rows, _, t, _ = q.shape
    p_len = prefix_k.shape[2]
    allowed = torch.ones(rows, 1, t, p_len + suffix_k.shape[2], dtype=torch.bool)
    if prefix_valid is not None:
        allowed[..., :p_len] &= prefix_valid.repeat_interleave(samples, 0)[:, None, None, :]
    if suffix_allowed is not None:
        allowed[..., p_len:] &= suffix_allowed
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


@pytest.mark.parametrize("t, t_s, masked", [(1, 0, False), (1, 5, False), (1, 5, True), (4, 4, True), (3, 7, True)])
@pytest.mark.parametrize("padded", [False, True])
def test_split_kv_attention_equals_attention_over_each_rows_whole_context(t, t_s, masked, padded):
    torch.manual_seed(0)
    series, samples, heads, p_len, hd = 3, 4, 2, 6, 8
    rows = series * samples
    q = torch.randn(rows, heads, t, hd)
    prefix_k, prefix_v = torch.randn(series, heads, p_len, hd), torch.randn(series, heads, p_len, hd)
    suffix_k, suffix_v = torch.randn(rows, heads, t_s, hd), torch.randn(rows, heads, t_s, hd)
    valid = None
    if padded:  # left padding of 0, 2 and 5 positions
        valid = torch.arange(p_len)[None, :] >= torch.tensor([0, 2, 5])[:, None]
    allowed = None
    if masked:  # the queries are the last t of t_s - 1 filled slots, causal; the last slot is empty
        last = torch.arange(t_s - 1 - t, t_s - 1)
        allowed = torch.arange(t_s)[None, :] <= last[:, None]
    got = SplitKV(prefix_k, prefix_v, valid, suffix_k, suffix_v, allowed).attend(q)
    want = _dense_attention(q, prefix_k, prefix_v, valid, suffix_k, suffix_v, samples, allowed)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_shared_prefix_cache_writes_at_its_device_position_and_drops_whole_series():
    torch.manual_seed(1)
    prefix = KVCache(n_layers=1, batch=3, n_heads=1, head_dim=4, capacity=5, device=torch.device("cpu"),
                     dtype=torch.float32)
    prefix.update(0, torch.randn(3, 1, 5, 4), torch.randn(3, 1, 5, 4))
    prefix.advance(5)
    cache = SharedPrefixCache.from_cache(prefix, None, samples=2, capacity=3)
    assert not cache.suffix.k.any() and not cache.suffix.v.any()  # unfilled slots are read (masked): zeros
    first_k, first_v, q = torch.randn(6, 1, 2, 4), torch.randn(6, 1, 2, 4), torch.randn(6, 1, 2, 4)
    out = cache.attend(0, q, first_k, first_v)  # two tokens, causal among themselves
    want = _dense_attention(q, prefix.k[0], prefix.v[0], None, first_k, first_v, 2,
                            torch.tensor([[True, False], [True, True]]))
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    cache.advance(2)
    assert cache.position.tolist() == [2]
    reading = cache.layer(0)  # one query over every filled slot: slots 0 and 1, not the empty slot 2
    assert reading.suffix_allowed.tolist() == [[True, True, False]]
    cache.select_series(torch.tensor([2, 0]))
    kept = cache.layer(0)
    assert torch.equal(kept.prefix_k, prefix.k[0, [2, 0]])
    assert torch.equal(kept.suffix_k[:, :, :2], first_k[[4, 5, 0, 1]])
    with pytest.raises(ValueError, match="builds its own mask"):
        cache.attend(0, q[:4, :, :1], first_k[:4, :, :1], first_v[:4, :, :1],
                     attn_mask=torch.ones(4, 1, 1, 8, dtype=torch.bool))
