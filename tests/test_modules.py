"""Transformer building blocks: rotary angles under bfloat16, the padded causal mask, the KV cache."""

from __future__ import annotations

import pytest
import torch

from kronos.modules import KVCache, RotaryEmbedding, padded_causal_mask


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
