"""On a CUDA GPU, cached generation replays its fixed-shape step from a CUDA graph
(kronos.forecasting.generation); these
tests check that the replay draws the same tokens as the eager path (``KRONOS_CUDA_GRAPHS=0``), token for
token, on real bars with the tiny parity model: sampled with the default generator and with one generator
per series, greedy, with left-padded histories of different lengths and with series that finish early
(the cached rows change, so the step is recorded again). Without a GPU they skip, saying why."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from kronos import Kronos, KronosTokenizer
from kronos.data.features import Normalizer, bar_features, time_features
from kronos.forecasting import generation
from kronos.forecasting.generation import SamplingConfig, SeriesGenerators, generate_tokens

from .conftest import DATA, PARITY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: the CUDA-graph replay of the cached generation step")
NAMES = ["kronos_XSHG-600977_5min", "bokeh_AAPL_1d", "freqtrade_ETH-BTC_5min"]
HISTORIES = [200, 180, 150]  # different lengths: left-padded, cached together
RECORD = generation._GraphedStep.record  # the library's, before any test wraps it


@pytest.fixture(scope="module")
def cuda_model():
    return Kronos.from_pretrained(PARITY / "model").to("cuda").eval()


@pytest.fixture(scope="module")
def real_inputs():
    """Per series: s1, s2 history tokens (T,) and time features (T + 32, 5) on the GPU, from real bars."""
    tokenizer = KronosTokenizer.from_pretrained(PARITY / "tokenizer").to("cuda").eval()
    s1s, s2s, stamps = [], [], []
    for name, length in zip(NAMES, HISTORIES):
        frame = pd.read_csv(DATA / f"{name}.csv", parse_dates=["timestamps"]).tail(length + 32)
        bars = bar_features(frame.drop(columns=["timestamps"]).iloc[:length], name)
        x = torch.from_numpy(Normalizer.fit(bars, 5.0).transform(bars))[None].to("cuda")
        with torch.no_grad():
            s1, s2 = tokenizer.encode(x, half=True)
        s1s.append(s1[0])
        s2s.append(s2[0])
        stamps.append(torch.from_numpy(time_features(pd.DatetimeIndex(frame["timestamps"]))).float().to("cuda"))
    return s1s, s2s, stamps


def generate(model, inputs, monkeypatch, graphs: bool, pred_lens, sampling, samples, seeds=None):
    """Tokens (rows, max(pred_lens)) with graphs on or off, and the graphs recorded along the way."""
    monkeypatch.setenv("KRONOS_CUDA_GRAPHS", "1" if graphs else "0")
    recorded = []

    def record(step, generator):
        graphed = RECORD(step, generator)
        recorded.append(graphed)
        return graphed

    monkeypatch.setattr(generation._GraphedStep, "record", staticmethod(record))
    torch.manual_seed(0)  # the default CUDA generator, where no per-series generators are given
    generator = None
    if seeds is not None:
        generator = SeriesGenerators([torch.Generator(device="cuda").manual_seed(s) for s in seeds], samples)
    s1s, s2s, stamps = inputs
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed capture (eager fallback) fails the test
        stamps = [st[:len(h) + p] for st, h, p in zip(stamps, s1s, pred_lens)]  # history and forecast bars
        s1, s2 = generate_tokens(model, s1s, s2s, stamps, pred_lens, 256, sampling, samples, generator)
    torch.cuda.synchronize()
    return s1.cpu().numpy(), s2.cpu().numpy(), recorded


@pytest.mark.parametrize("case", ["sampled", "per-series seeds", "greedy", "series finish early"])
def test_cuda_graph_replay_draws_the_eager_tokens(cuda_model, real_inputs, monkeypatch, case):
    sampling = SamplingConfig(temperature=1.0, top_k=0, top_p=0.9)
    pred_lens, samples, seeds = [24, 24, 24], 4, None
    if case == "per-series seeds":
        seeds = [11, 12, 13]
    elif case == "greedy":
        sampling = SamplingConfig(temperature=1.0, top_k=1, top_p=1.0)
    elif case == "series finish early":
        pred_lens = [24, 16, 10]
    eager = generate(cuda_model, real_inputs, monkeypatch, False, pred_lens, sampling, samples, seeds)
    graphed = generate(cuda_model, real_inputs, monkeypatch, True, pred_lens, sampling, samples, seeds)
    assert eager[2] == []  # KRONOS_CUDA_GRAPHS=0: nothing recorded
    # graphs were recorded and used: once, or once per set of cached rows when series finish early
    assert graphed[2] and all(g is not None for g in graphed[2])
    if case == "series finish early":
        assert len(graphed[2]) == 3
    np.testing.assert_array_equal(graphed[0], eager[0])
    np.testing.assert_array_equal(graphed[1], eager[1])
    rows = np.repeat(pred_lens, samples)
    assert all((eager[0][r, n:] == 0).all() for r, n in enumerate(rows))  # rows end at their own pred_len
    if case != "greedy":  # and sampling did sample: the paths of a series differ
        assert len({eager[0][k].tobytes() for k in range(samples)}) > 1
