"""KronosTokenizer and the BSQ quantiser: index layout, causality, input errors, training loss."""

from __future__ import annotations

import pytest
import torch

from kronos import KronosTokenizer, TokenizerConfig
from kronos.model.quantizer import BSQuantizer

from .conftest import PARITY


@pytest.fixture(scope="module")
def tokenizer() -> KronosTokenizer:
    return KronosTokenizer.from_pretrained(PARITY / "tokenizer")


def test_index_bit_order_is_least_significant_first():
    quantizer = BSQuantizer(s1_bits=3, s2_bits=2, beta=0.05, gamma0=1.0, gamma=1.1, zeta=0.05, group_size=5)
    z = torch.tensor([[[0.5, -0.2, 0.1, 0.0, 0.3]]])  # signs + - + (0 -> -) +
    _, codes, full = quantizer(z, with_loss=False)
    _, _, (s1, s2) = quantizer(z, half=True, with_loss=False)
    assert torch.allclose(codes.abs(), torch.full_like(codes, 5 ** -0.5))
    assert codes[0, 0, 3] < 0  # exactly zero maps to -1
    assert s1.item() == 0b101 and s2.item() == 0b10
    assert full.item() == s1.item() + s2.item() * 2**3
    bits = quantizer.indices_to_bits(full)
    assert torch.equal(bits, quantizer.indices_to_bits((s1, s2), half=True))
    assert torch.equal(bits, codes)


def test_encode_decode_round_trip_of_indices(tokenizer, xshg):
    from kronos.data.features import Normalizer, bar_features

    bars = bar_features(xshg.iloc[:120])
    x = torch.from_numpy(Normalizer.fit(bars, 5).transform(bars))[None]
    full = tokenizer.encode(x)
    s1, s2 = tokenizer.encode(x, half=True)
    assert full.dtype == torch.int64 and full.shape == (1, 120)
    assert int(full.max()) < 2 ** tokenizer.codebook_dim and int(s1.max()) < 2**tokenizer.s1_bits
    with torch.no_grad():
        assert torch.allclose(tokenizer.decode(full), tokenizer.decode((s1, s2), half=True))


def test_encoder_is_causal(tokenizer, xshg):
    from kronos.data.features import Normalizer, bar_features

    bars = bar_features(xshg.iloc[:80])
    x = torch.from_numpy(Normalizer.fit(bars, 5).transform(bars))[None]
    changed = x.clone()
    changed[:, 60:] += 1.0
    assert torch.equal(tokenizer.encode(x)[:, :60], tokenizer.encode(changed)[:, :60])


@pytest.mark.parametrize("bad, error, message", [
    (torch.zeros(10, 6), ValueError, r"3 dimensions \(batch, seq_len, d_in\), got shape \(10, 6\)"),
    (torch.zeros(1, 10, 5), ValueError, r"last dimension d_in=6, got shape \(1, 10, 5\)"),
    (torch.zeros(1, 10, 6, dtype=torch.long), TypeError, "floating-point tensor, got dtype torch.int64"),
    ([[0.0] * 6], TypeError, "must be a torch.Tensor"),
])
def test_encode_rejects_bad_input(tokenizer, bad, error, message):
    with pytest.raises(error, match=message):
        tokenizer.encode(bad)


@pytest.mark.parametrize("value, kind", [(float("nan"), "NaN"), (float("inf"), "inf")])
def test_encode_rejects_non_finite_and_says_where(tokenizer, value, kind):
    x = torch.zeros(2, 10, 6)
    x[1, 7, 3] = value
    with pytest.raises(ValueError, match=r"NaN or inf \(first at batch 1, step 7, feature 3\)"):
        tokenizer.encode(x)


def test_encode_rejects_other_device(tokenizer):
    x = torch.zeros(1, 4, 6, device="meta")
    with pytest.raises(ValueError, match="x is on meta but the tokenizer is on cpu"):
        tokenizer.encode(x)


def test_training_loss_combines_reconstruction_and_bsq_terms(xshg):
    from kronos.data.features import Normalizer, bar_features

    torch.manual_seed(0)
    tokenizer = KronosTokenizer(TokenizerConfig(d_model=32, n_heads=2, ff_dim=64, n_enc_layers=2, n_dec_layers=2,
                                                s1_bits=4, s2_bits=4, group_size=4)).train()
    bars = bar_features(xshg.iloc[:64])
    x = torch.from_numpy(Normalizer.fit(bars, 5).transform(bars))[None]
    (coarse, full), bsq_loss, codes, indices = tokenizer(x)
    assert coarse.shape == full.shape == x.shape and codes.shape == (1, 64, 8) and indices.shape == (1, 64)
    total, parts = tokenizer.loss(x)
    expected = (parts["recon_mse_coarse"] + parts["recon_mse"] + parts["bsq_loss"]) / 2
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()  # the straight-through estimator lets gradients reach the encoder
    assert tokenizer.embed.weight.grad is not None and tokenizer.embed.weight.grad.abs().sum() > 0


def test_config_errors_name_the_values():
    with pytest.raises(ValueError, match=r"d_model=30 must split into n_heads=4 heads"):
        TokenizerConfig(d_model=30)
    with pytest.raises(ValueError, match=r"s1_bits \+ s2_bits = 20 must be a multiple of group_size=3"):
        TokenizerConfig(group_size=3)
    with pytest.raises(TypeError, match="unknown TokenizerConfig keys: colour"):
        KronosTokenizer(colour="red")


def test_decode_paths_equals_decoding_each_whole_window(parity_dir):
    """Paths that share a history decode to the same bars whether the history is decoded once or per row."""
    tokenizer = KronosTokenizer.from_pretrained(parity_dir / "tokenizer").eval()
    gen = torch.Generator().manual_seed(0)
    s1_vocab, s2_vocab = 2 ** tokenizer.s1_bits, 2 ** tokenizer.s2_bits
    series, samples, t_p, pred = 3, 4, 20, 5
    prefix = (torch.randint(s1_vocab, (series, t_p), generator=gen),
              torch.randint(s2_vocab, (series, t_p), generator=gen))
    suffix = (torch.randint(s1_vocab, (series * samples, pred), generator=gen),
              torch.randint(s2_vocab, (series * samples, pred), generator=gen))
    with torch.no_grad():
        shared = tokenizer.decode_paths(prefix, suffix, samples)
        whole = tokenizer.decode(tuple(torch.cat([p.repeat_interleave(samples, 0), s], dim=1)
                                       for p, s in zip(prefix, suffix)), half=True)
    torch.testing.assert_close(shared, whole[:, -pred:], rtol=1e-5, atol=1e-5)
