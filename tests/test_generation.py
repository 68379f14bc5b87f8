"""Generation engine: cached vs full-recompute equivalence, seeds, sampling filters, ragged batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kronos.data.features import Normalizer, bar_features, time_features
from kronos.forecasting.generation import SamplingConfig, filter_logits, generate_tokens, sample_next_token

from .conftest import read_bars
from .reference_generator import reference_generate


def _tokens(predictor, bars, start: int, lookback: int, pred_len: int):
    """History tokens and stamps of a real window, as the predictor prepares them."""
    window = bars.iloc[start:start + lookback + pred_len]
    x = bar_features(window.iloc[:lookback])
    norm = Normalizer.fit(x, 5)
    s1, s2 = predictor.tokenizer.encode(torch.from_numpy(norm.transform(x))[None], half=True)
    stamp = torch.from_numpy(time_features(pd.DatetimeIndex(window["timestamps"])))
    return s1[0], s2[0], stamp


def _generate(predictor, series, pred_lens, max_context, sampling, samples=1, seed=None, use_cache=True):
    s1, s2, stamps = zip(*series)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return generate_tokens(predictor.model, list(s1), list(s2), list(stamps), pred_lens, max_context, sampling,
                           samples, generator, use_cache)


# Sampling settings as the predictor's arguments (T, top_k, top_p), as SamplingConfig for the engine.
SETTINGS = {
    "greedy": dict(top_k=1),
    "temperature+top-k": dict(T=1.3, top_k=5, top_p=1.0),
    "top-p": dict(T=1.0, top_k=0, top_p=0.8),
    "top-k+top-p": dict(T=0.7, top_k=20, top_p=0.6),
}
SAMPLINGS = {name: SamplingConfig(temperature=s.get("T", 1.0), top_k=s["top_k"], top_p=s.get("top_p", 1.0))
             for name, s in SETTINGS.items()}
WINDOWS = {"inside-window": (40, 12), "slides-while-generating": (56, 20), "history-longer-than-window": (90, 6)}


@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("window", WINDOWS)
def test_engine_matches_the_naive_reference_token_for_token(tiny_predictor, xshg, one_thread, name, window):
    """The cached engine against tests/reference_generator.py (full recompute through decode_s1/decode_s2,
    written from the spec): same generator seed, same tokens for every sample path."""
    lookback, pred_len = WINDOWS[window]
    s1, s2, stamp = _tokens(tiny_predictor, xshg, 300, lookback, pred_len)
    got = _generate(tiny_predictor, [(s1, s2, stamp)], [pred_len], 64, SAMPLINGS[name], samples=3, seed=11)
    want = reference_generate(tiny_predictor.model, s1, s2, stamp, pred_len, 64, samples=3,
                              generator=torch.Generator().manual_seed(11), **SETTINGS[name])
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    if name != "greedy":
        assert len(set(map(tuple, got[0].tolist()))) > 1  # the paths differ: the draws were really used


@pytest.mark.parametrize("name", ["greedy", "top-k+top-p"])  # argmax, and the generator's draws
@pytest.mark.parametrize("lookback, pred_len", [(40, 12), (56, 20), (90, 6), (30, 80)],
                         ids=["inside-window", "slides-while-generating", "history-longer-than-window",
                              "forecast-longer-than-window"])
def test_cached_and_full_recompute_give_identical_tokens(tiny_predictor, xshg, one_thread, name, lookback,
                                                         pred_len):
    series = [_tokens(tiny_predictor, xshg, 300, lookback, pred_len)]
    cached = _generate(tiny_predictor, series, [pred_len], 64, SAMPLINGS[name], samples=3, seed=11)
    full = _generate(tiny_predictor, series, [pred_len], 64, SAMPLINGS[name], samples=3, seed=11, use_cache=False)
    assert torch.equal(cached[0], full[0]) and torch.equal(cached[1], full[1])


@pytest.mark.parametrize("name", ["greedy", "top-k+top-p"])
def test_cached_equals_full_recompute_for_a_ragged_batch_of_sampled_paths(tiny_predictor, xshg, one_thread, name):
    """Series that start beyond the window, slide while generating, or stay inside it; different pred_len.
    The cached path shares each series' history between its sample paths; the reference does not."""
    series = [_tokens(tiny_predictor, xshg, 100, 90, 6), _tokens(tiny_predictor, xshg, 300, 56, 20),
              _tokens(tiny_predictor, xshg, 500, 30, 9), _tokens(tiny_predictor, xshg, 700, 50, 20)]
    pred_lens = [6, 20, 9, 20]
    cached = _generate(tiny_predictor, series, pred_lens, 64, SAMPLINGS[name], samples=4, seed=3)
    full = _generate(tiny_predictor, series, pred_lens, 64, SAMPLINGS[name], samples=4, seed=3, use_cache=False)
    assert cached[0].shape == (16, 20)
    assert torch.equal(cached[0], full[0]) and torch.equal(cached[1], full[1])


@pytest.mark.parametrize("shared, samples", [(True, 1), (False, 3)], ids=["shared-prefix-1-path", "per-row-3-paths"])
def test_either_cache_layout_equals_full_recompute(tiny_predictor, xshg, one_thread, monkeypatch, shared, samples):
    """The library picks the per-row layout for one path on CPU and the shared-prefix one otherwise (always on
    CUDA); check each where it is not the default (the benchmark forces both the same way)."""
    import kronos.forecasting.generation as generation

    monkeypatch.setattr(generation, "_split_cache", lambda samples, device: shared)
    series = [_tokens(tiny_predictor, xshg, 100, 90, 6), _tokens(tiny_predictor, xshg, 300, 56, 20),
              _tokens(tiny_predictor, xshg, 500, 30, 9)]
    for name in ("greedy", "top-p"):
        cached = _generate(tiny_predictor, series, [6, 20, 9], 64, SAMPLINGS[name], samples=samples, seed=5)
        full = _generate(tiny_predictor, series, [6, 20, 9], 64, SAMPLINGS[name], samples=samples, seed=5,
                         use_cache=False)
        assert torch.equal(cached[0], full[0]) and torch.equal(cached[1], full[1])


def test_same_seed_same_paths_and_different_seeds_differ(tiny_predictor, xshg, one_thread):
    history = xshg.iloc[100:160]
    future = xshg["timestamps"].iloc[160:170]
    run = lambda seed: tiny_predictor.forecast(history, history["timestamps"], future, 10, sample_count=8,  # noqa: E731
                                               seed=seed).samples
    first, again, other = run(5), run(5), run(6)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert len({path.tobytes() for path in first}) > 1  # the 8 paths are not copies of one another
    generator = torch.Generator().manual_seed(5)
    np.testing.assert_array_equal(
        tiny_predictor.forecast(history, history["timestamps"], future, 10, sample_count=8, seed=generator).samples,
        first)


def test_greedy_ignores_the_seed(tiny_predictor, xshg, one_thread):
    history = xshg.iloc[:50]
    future = xshg["timestamps"].iloc[50:55]
    a = tiny_predictor.predict(history, history["timestamps"], future, 5, top_k=1, seed=1)
    b = tiny_predictor.predict(history, history["timestamps"], future, 5, top_k=1, seed=2)
    assert a.equals(b)


def test_ragged_batch_equals_each_series_alone(tiny_predictor, one_thread):
    """Different histories (inside and beyond max_context=256), lengths, frequencies and pred_len."""
    names = ["kronos_XSHG-600977_5min.csv", "bokeh_AAPL_1d.csv", "backtesting_EURUSD_1h.csv",
             "freqtrade_ETH-BTC_5min.csv"]
    lookbacks, pred_lens = [300, 60, 120, 61], [5, 12, 8, 3]
    frames = [read_bars(n) for n in names]
    histories = [f.iloc[:lb] for f, lb in zip(frames, lookbacks)]
    futures = [f["timestamps"].iloc[lb:lb + p] for f, lb, p in zip(frames, lookbacks, pred_lens)]
    batch = tiny_predictor.predict_batch(histories, [h["timestamps"] for h in histories], futures, pred_lens,
                                         top_k=1)
    for history, future, pred_len, together in zip(histories, futures, pred_lens, batch):
        alone = tiny_predictor.predict(history, history["timestamps"], future, pred_len, top_k=1)
        assert together.index.equals(alone.index)
        np.testing.assert_allclose(together.to_numpy(), alone.to_numpy(), rtol=1e-4)


def test_ragged_batch_sampled_paths_are_reproducible(tiny_predictor, one_thread):
    frames = [read_bars("bokeh_IBM_1d.csv"), read_bars("bokeh_MSFT_1d.csv")]
    histories = [frames[0].iloc[:80], frames[1].iloc[:40]]
    futures = [frames[0]["timestamps"].iloc[80:84], frames[1]["timestamps"].iloc[40:47]]
    run = lambda: tiny_predictor.forecast_batch(histories, [h["timestamps"] for h in histories], futures,  # noqa: E731
                                                [4, 7], sample_count=4, seed=9)
    first, second = run(), run()
    for a, b, p in zip(first, second, [4, 7]):
        assert a.samples.shape == (4, p, 6)
        np.testing.assert_array_equal(a.samples, b.samples)


def test_filter_logits_applies_top_k_and_top_p_together():
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.15, 0.1, 0.05]]))
    only_k = filter_logits(logits, top_k=3, top_p=1.0)
    assert torch.isfinite(only_k).tolist() == [[True, True, True, False, False]]
    both = filter_logits(logits, top_k=3, top_p=0.6)  # 0.4 + 0.3 reaches 0.6 -> two tokens
    assert torch.isfinite(both).tolist() == [[True, True, False, False, False]]
    tiny_p = filter_logits(logits, top_k=0, top_p=1e-6)  # always at least one token
    assert torch.isfinite(tiny_p).tolist() == [[True, False, False, False, False]]
    for off in (0, None):
        assert torch.equal(filter_logits(logits, top_k=off, top_p=1.0), logits)


def test_sampling_respects_filters_and_greedy_is_argmax():
    torch.manual_seed(0)
    logits = torch.randn(64, 50)
    greedy = sample_next_token(logits, SamplingConfig(top_k=1))
    assert torch.equal(greedy, logits.argmax(-1))
    drawn = sample_next_token(logits.repeat(20, 1), SamplingConfig(top_k=3, top_p=1.0),
                              torch.Generator().manual_seed(1))
    allowed = torch.topk(logits, 3).indices.repeat(20, 1)
    assert (drawn[:, None] == allowed).any(-1).all()


def test_sampled_tokens_follow_the_softmax_and_never_a_filtered_token():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = probs.clamp_min(1e-30).log().expand(40_000, -1).clone()
    logits[:, 4] = float("-inf")
    draws = sample_next_token(logits, SamplingConfig(top_p=1.0), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    torch.testing.assert_close(freq, probs.double(), atol=0.01, rtol=0)
    nucleus = sample_next_token(logits, SamplingConfig(top_p=0.7), torch.Generator().manual_seed(0))
    assert set(nucleus.tolist()) == {0, 1}  # 0.5 + 0.3 crosses 0.7: the last two are cut
