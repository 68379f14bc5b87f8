"""The pool of model and baseline paths: its exact CRPS, fitted weights, dressed bars, and the predictor's use."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
import torch

from kronos.data.candles import valid_candles
from kronos.forecasting.calibration import Calibration
from kronos.forecasting.combination import (
    MAX_RETURNS,
    Baselines,
    fit_weights,
    garch_at,
    past_baseline_closes,
    path_counts,
    pool_paths,
    pool_terms,
)
from kronos.stats.garch import fit_garch_t
from kronos.stats.scores import crps_samples

from .conftest import DATA

PRED = 6


def test_pool_terms_give_the_exact_crps_of_a_pooled_ensemble():
    rng = np.random.default_rng(0)
    k, p = 5, 4
    realised = rng.standard_normal((k, p))
    members = [rng.normal(0.3, 0.5, (k, 8, p)), rng.normal(0.0, 2.0, (k, 24, p)), rng.normal(-1, 1, (k, 16, p))]
    a, b = pool_terms(members, realised)
    for i, x in enumerate(members):  # one member alone: its own CRPS
        assert a[i] - 0.5 * b[i, i] == pytest.approx(float(crps_samples(np.moveaxis(x, 1, 0), realised).mean()))
    # Shares in proportion to the paths (8 and 16): the CRPS of the concatenated ensemble.
    both = np.concatenate([members[0], members[2]], axis=1)
    w = np.array([1 / 3, 0.0, 2 / 3])
    assert w @ a - 0.5 * w @ b @ w == pytest.approx(float(crps_samples(np.moveaxis(both, 1, 0), realised).mean()))


def _past(rng, k=12, s=16, p=PRED, model_sd=0.2, true_sd=1.0):
    last = 100.0 + rng.standard_normal(k)
    realised = last[:, None] + true_sd * rng.standard_normal((k, p))
    model = last[:, None, None] + model_sd * rng.standard_normal((k, s, p))
    right = last[:, None, None] + true_sd * rng.standard_normal((k, 64, p))
    return model, realised, last, right


def test_fitted_weights_sum_to_one_and_favour_the_calibrated_method():
    rng = np.random.default_rng(1)
    model, realised, last, right = _past(rng, k=200)
    fitted = fit_weights(model, {"garch_t": right}, realised, last, strength=0.0)
    assert set(fitted) == {"kronos", "garch_t"} and sum(fitted.values()) == pytest.approx(1.0)
    assert fitted["garch_t"] > 0.8  # the far too narrow model gets little weight
    # Shrinkage toward the prior: with a prior seen on as many origins, halfway.
    prior = {"kronos": 1.0, "garch_t": 0.0}
    half = fit_weights(model, {"garch_t": right}, realised, last, prior=prior, strength=200.0)
    assert half["kronos"] == pytest.approx(0.5 * fitted["kronos"] + 0.5)
    assert all(0 <= w <= 1 for w in half.values())


def test_path_counts_follow_the_weights_and_sum_to_the_paths():
    counts = path_counts({"kronos": 0.5, "garch_t": 0.3, "bootstrap": 0.2, "gaussian_rw": 0.0}, 50)
    assert counts == {"kronos": 25, "garch_t": 15, "bootstrap": 10, "gaussian_rw": 0}
    odd = path_counts({"kronos": 1 / 3, "garch_t": 1 / 3, "bootstrap": 1 / 3}, 10)
    assert sum(odd.values()) == 10 and max(odd.values()) - min(odd.values()) <= 1


def test_pooled_paths_keep_model_paths_and_dress_baseline_closes_in_valid_model_bars():
    rng = np.random.default_rng(2)
    s = 20
    close = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal((s, PRED)), axis=1))
    bars = np.stack([close * 0.999, close * 1.01, close * 0.98, close, np.full_like(close, 5e3),
                     np.full_like(close, 5e5)], axis=-1).astype(np.float32)
    garch = 100 * np.exp(np.cumsum(0.03 * rng.standard_normal((s, PRED)), axis=1))
    pooled = pool_paths(bars, {"garch_t": garch}, {"kronos": 0.6, "garch_t": 0.4})
    assert pooled.shape == bars.shape and pooled.dtype == bars.dtype
    np.testing.assert_array_equal(pooled[:12], bars[:12])  # the model's first 12 paths as they were
    np.testing.assert_allclose(pooled[12:, :, 3], garch[:8], rtol=1e-6)  # then 8 GARCH close paths
    np.testing.assert_allclose(pooled[12:, :, 1] / pooled[12:, :, 3], 1.01, rtol=1e-5)  # in model bar shapes
    np.testing.assert_array_equal(pooled[12:, :, 4:], bars[12:, :, 4:])  # and the donors' volume and amount
    np.testing.assert_array_equal(valid_candles(pooled), pooled)


def test_past_baselines_use_only_bars_before_each_past_origin():
    rng = np.random.default_rng(3)
    closes = 50 * np.exp(np.cumsum(0.02 * rng.standard_normal(1500)))
    base = Baselines.of(closes)
    assert base.garch is not None
    ends = [1200, 1224, 1248]
    one = past_baseline_closes(base, closes, ends, PRED, np.random.default_rng(7))
    changed = closes.copy()
    changed[1248:] *= 3.0  # the bars from the last past origin on
    other = past_baseline_closes(base, changed, ends, PRED, np.random.default_rng(7))
    for name in one:
        assert one[name].shape == (3, 64, PRED)
        np.testing.assert_array_equal(one[name], other[name])
    # The GARCH fit sees the last MAX_RETURNS returns only; moved to a past origin its state is that origin's.
    moved = garch_at(base.garch, base.returns, [len(base.returns)])[0]
    assert moved.next_variance == pytest.approx(base.garch.next_variance, rel=0.05)
    assert fit_garch_t(base.returns[-MAX_RETURNS:]) == base.garch == Baselines.of(closes).garch


def test_calibration_record_carries_the_weights():
    c = Calibration(np.ones(3), 12, weights=(("kronos", 0.5), ("garch_t", 0.3), ("bootstrap", 0.2)))
    back = Calibration.from_dict(c.to_dict())
    assert back.combination == {"kronos": 0.5, "garch_t": 0.3, "bootstrap": 0.2}
    assert "paths combined: kronos 50%, garch_t 30%, bootstrap 20%" in c.summary
    assert "weights=" in repr(c)
    with pytest.raises(ValueError, match="weights must be numbers >= 0 summing to 1"):
        Calibration.from_dict({**c.to_dict(), "weights": {"kronos": 0.5}})


# -- the predictor -------------------------------------------------------------------------------

@pytest.fixture()
def predictor(tiny_predictor, monkeypatch):
    monkeypatch.setattr(tiny_predictor, "lookback", 64)  # a 400-bar history calibrates on several past origins
    return tiny_predictor


@pytest.fixture()
def history(xshg):
    n = 400
    frame = xshg.iloc[:n].reset_index(drop=True)
    return frame, frame["timestamps"], xshg["timestamps"].iloc[n:n + PRED]


def test_combine_false_is_the_model_alone_and_the_pool_keeps_its_first_paths(predictor, history, one_thread):
    frame, x_ts, y_ts = history
    pure = predictor.forecast(frame, x_ts, y_ts, PRED, sample_count=20, seed=5, combine=False)
    pooled = predictor.forecast(frame, x_ts, y_ts, PRED, sample_count=20, seed=5)
    again = predictor.forecast(frame, x_ts, y_ts, PRED, sample_count=20, seed=5)
    assert pure.calibration.weights == () and "combined" not in pure.calibration.summary
    weights = pooled.calibration.combination
    assert set(weights) == {"kronos", "garch_t"} and 0 <= pooled.calibration.follow <= 1
    assert sum(weights.values()) == pytest.approx(1.0)
    np.testing.assert_array_equal(pooled.calibration.scale, pure.calibration.scale)
    kept = path_counts(weights, 20)["kronos"]
    # The model's paths in the pool: its calibrated ones with the spread around the per-step median moved by
    # one factor per step (toward GARCH-t's spread) ...
    median = np.median(pure.samples[..., 3], axis=0)
    moved, before = pooled.samples[:kept, :, 3] - median, pure.samples[:kept, :, 3] - median
    factor = np.median(moved / before, axis=0)  # (P,); float32 prices: compare distances, not their ratios
    np.testing.assert_allclose(moved, factor * before, rtol=1e-3, atol=1e-5 * float(median.max()))
    # ... and without that move, bit for bit.
    still = dataclasses.replace(pooled.calibration, follow=0.0)
    unmoved = predictor.forecast(frame, x_ts, y_ts, PRED, sample_count=20, seed=5, calibration=still)
    np.testing.assert_array_equal(unmoved.samples[:kept], pure.samples[:kept])
    np.testing.assert_array_equal(again.samples, pooled.samples)  # deterministic under the seed
    np.testing.assert_array_equal(valid_candles(pooled.samples), pooled.samples)
    # A calibration given back carries its weights: the same pool without fitting again.
    given = predictor.forecast(frame, x_ts, y_ts, PRED, sample_count=20, seed=5,
                               calibration=Calibration.from_dict(pooled.calibration.to_dict()))
    np.testing.assert_array_equal(given.samples, pooled.samples)


def test_the_pool_does_not_depend_on_the_batch_and_follows_generators(predictor, history, xshg, one_thread):
    frame, x_ts, y_ts = history
    other = xshg.iloc[50:380].reset_index(drop=True)
    alone = predictor.forecast_batch([frame], [x_ts], [y_ts], PRED, sample_count=12, seed=[7])[0]
    paired = predictor.forecast_batch([other, frame], [other["timestamps"], x_ts], [y_ts, y_ts], PRED, sample_count=12,
                                      seed=[3, 7])[1]
    assert alone.calibration.weights and alone.calibration.weights == paired.calibration.weights
    np.testing.assert_array_equal(alone.samples, paired.samples)
    # A torch.Generator forecasts as the int it was seeded with; moved on, it draws other paths.
    generator = torch.Generator().manual_seed(4)
    first = predictor.forecast(frame, x_ts, y_ts, PRED, sample_count=12, seed=generator)
    second = predictor.forecast(frame, x_ts, y_ts, PRED, sample_count=12, seed=generator)
    again = predictor.forecast(frame, x_ts, y_ts, PRED, sample_count=12, seed=torch.Generator().manual_seed(4))
    np.testing.assert_array_equal(first.samples, again.samples)
    np.testing.assert_array_equal(first.samples, predictor.forecast(frame, x_ts, y_ts, PRED, sample_count=12,
                                                                    seed=4).samples)
    assert not np.array_equal(first.samples, second.samples)


def test_combine_is_an_option_checked_once():
    from kronos.forecasting.options import ForecastOptions

    assert ForecastOptions().pools and not ForecastOptions(combine=False).pools
    assert not ForecastOptions(calibrate=False).pools  # no calibration, no pool
    with pytest.raises(TypeError, match="combine must be True or False, got 'yes'"):
        ForecastOptions(combine="yes")


def test_evaluation_baselines_see_at_most_1000_past_returns():
    from kronos.data.tables import Series
    from kronos.evaluation.walkforward import EvaluationConfig, run_walkforward

    rng = np.random.default_rng(4)
    n = 2000
    close = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(n)))
    bars = np.column_stack([close, close * 1.01, close * 0.99, close, np.full(n, 1e3), np.full(n, 1e5)])
    stamps = pd.date_range("2020-01-01", periods=n, freq="D")
    config = EvaluationConfig(lookback=128, pred_len=PRED, sample_count=20, max_origins=1, tail_fraction=0.01)

    def baselines(values: np.ndarray, **changes) -> pd.DataFrame:
        run = run_walkforward([Series("s", values, stamps, None)], EvaluationConfig(**{**config.__dict__, **changes}))
        return run.records.set_index("method")

    reference = baselines(bars)
    origin = stamps.get_loc(reference["origin"].iloc[0])  # the one origin's first forecast bar
    assert origin > MAX_RETURNS + 200
    early = bars.copy()
    early[:origin - MAX_RETURNS - 1] *= 1.5  # bars more than 1000 returns before the origin
    pd.testing.assert_frame_equal(baselines(early), reference)
    late = bars.copy()
    late[origin - 300:origin - 200] *= 1.5  # bars inside the 1000 returns, before the model's window
    moved = baselines(late)
    assert moved.loc["garch_t", "crps_rel"] != reference.loc["garch_t", "crps_rel"]
    assert moved.loc["bootstrap", "crps_rel"] != reference.loc["bootstrap", "crps_rel"]
    window = baselines(late, baseline_returns=None)  # only the model's window: those bars are not seen
    pd.testing.assert_frame_equal(window, baselines(bars, baseline_returns=None))


def test_garch_fit_is_the_same_at_any_blas_thread_count():
    # A Ray actor runs one BLAS thread, the driver all cores: the fit must not depend on which.
    import subprocess
    import sys

    closes = pd.read_csv(DATA / "bokeh_MSFT_1d.csv")["close"].to_numpy()
    returns = np.diff(np.log(closes))
    here = [fit_garch_t(returns[end - 1000:end]) for end in (1000, 1300, 1700)]
    code = ("import sys, numpy as np, pandas as pd; from kronos.stats.garch import fit_garch_t; "
            "r = np.diff(np.log(pd.read_csv(sys.argv[1])['close'].to_numpy())); "
            "print(repr([fit_garch_t(r[e - 1000:e]) for e in (1000, 1300, 1700)]))")
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        there = subprocess.run([sys.executable, "-c", code, str(DATA / "bokeh_MSFT_1d.csv")], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        assert there == repr(here), threads
