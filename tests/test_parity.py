"""Parity with the original implementation's outputs on the tiny random-weight checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kronos import Kronos, KronosTokenizer

from .conftest import PARITY, read_bars

CASE_IDS = ["64_8", "200_16", "500_24"]


@pytest.fixture(scope="module")
def tokenizer() -> KronosTokenizer:
    return KronosTokenizer.from_pretrained(PARITY / "tokenizer")


@pytest.fixture(scope="module")
def model() -> Kronos:
    return Kronos.from_pretrained(PARITY / "model")


def _case(parity_cases, index):
    return parity_cases["cases"][index]


def _close(actual, expected, rtol: float) -> None:
    """Relative tolerance per element, with an absolute floor of rtol x the array's largest magnitude
    (elements near zero in logits/normalised bars would otherwise make any rounding 'large')."""
    expected = np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol,
                               atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("index", range(3), ids=CASE_IDS)
def test_parity_tokenizer_indices_exact(tokenizer, parity_cases, index):
    ref = np.load(PARITY / _case(parity_cases, index)["encode"])
    x = torch.from_numpy(ref["x_norm"])[None]
    full = tokenizer.encode(x)
    s1, s2 = tokenizer.encode(x, half=True)
    np.testing.assert_array_equal(full.numpy(), ref["full"])
    np.testing.assert_array_equal(s1.numpy(), ref["s1"])
    np.testing.assert_array_equal(s2.numpy(), ref["s2"])
    # full = s1 + s2 * 2**s1_bits
    np.testing.assert_array_equal(full.numpy(), (s1 + s2 * 2**tokenizer.s1_bits).numpy())


@pytest.mark.parametrize("index", range(3), ids=CASE_IDS)
def test_parity_normalised_history(parity_cases, index):
    from kronos.data.features import Normalizer, bar_features

    case = _case(parity_cases, index)
    ref = np.load(PARITY / case["encode"])
    bars = read_bars(parity_cases["csv"]).iloc[case["start_row"]:case["start_row"] + case["lookback"]]
    x = bar_features(bars)
    norm = Normalizer.fit(x, parity_cases["clip"])
    np.testing.assert_allclose(norm.transform(x), ref["x_norm"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("index", range(3), ids=CASE_IDS)
def test_parity_decoded_bars(tokenizer, parity_cases, index):
    ref = np.load(PARITY / _case(parity_cases, index)["encode"])
    with torch.no_grad():
        decoded = tokenizer.decode((torch.from_numpy(ref["s1"]), torch.from_numpy(ref["s2"])), half=True)
        decoded_full = tokenizer.decode(torch.from_numpy(ref["full"]))
    _close(decoded.numpy(), ref["decoded"], 1e-5)
    _close(decoded_full.numpy(), ref["decoded"], 1e-5)


@pytest.mark.parametrize("index", range(3), ids=CASE_IDS)
def test_parity_network_logits(model, parity_cases, index):
    ref = np.load(PARITY / _case(parity_cases, index)["encode"])
    window = ref["stamp"].shape[1]
    s1 = torch.from_numpy(ref["s1"])[:, -window:]
    s2 = torch.from_numpy(ref["s2"])[:, -window:]
    with torch.no_grad():
        s1_logits, context = model.decode_s1(s1, s2, torch.from_numpy(ref["stamp"]))
        s2_logits = model.decode_s2(context, torch.from_numpy(ref["s1_next"]))
    _close(s1_logits[:, -16:].numpy(), ref["s1_logits_last16"], 1e-5)
    np.testing.assert_array_equal(s1_logits[:, -1:].argmax(-1).numpy(), ref["s1_next"])
    assert s2_logits.shape == ref["s2_logits_last"].shape
    _close(s2_logits.numpy(), ref["s2_logits_last"], 1e-5)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "full-recompute"])
@pytest.mark.parametrize("index", range(3), ids=CASE_IDS)
def test_parity_greedy_forecast(tiny_predictor, parity_cases, index, use_cache):
    case = _case(parity_cases, index)
    bars = read_bars(parity_cases["csv"])
    start, lookback, pred_len = case["start_row"], case["lookback"], case["pred_len"]
    history = bars.iloc[start:start + lookback]
    future = bars["timestamps"].iloc[start + lookback:start + lookback + pred_len]
    expected = pd.read_csv(PARITY / case["expected"], parse_dates=["timestamps"]).set_index("timestamps")
    out = tiny_predictor.predict(history[parity_cases["columns"]], history["timestamps"], future, pred_len,
                                 T=parity_cases["T"], top_k=parity_cases["top_k"], top_p=parity_cases["top_p"],
                                 sample_count=parity_cases["sample_count"], use_cache=use_cache)
    assert list(out.columns) == list(expected.columns)
    assert (out.index == expected.index).all()
    # Forecast prices and volumes are far from zero: a plain elementwise relative tolerance.
    np.testing.assert_allclose(out.to_numpy(), expected.to_numpy(), rtol=1e-4, atol=0)
