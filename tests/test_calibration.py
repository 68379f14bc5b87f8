"""Calibration of sample paths: origin planning, the conformal spread factor, and the predictor's use of both."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kronos.data.features import bar_features
from kronos.forecasting.calibration import (
    MIN_ORIGINS,
    PATHS_PER_ORIGIN,
    Calibration,
    fit_scale,
    fit_shrink,
    minimum_history,
    plan_origins,
    recentre,
    rescale_paths,
)
from kronos.forecasting.past_forecasts import past_seed
from kronos.model.checkpoint import read_predictor_info, write_predictor_info
from kronos.stats.scores import crps_samples

PRED = 6


def test_plan_origins_lie_inside_the_history_on_a_grid_anchored_to_its_first_bar():
    ends = plan_origins(history=500, pred_len=24, lookback=128, max_origins=12)
    assert len(ends) == 12 and ends == sorted(ends)
    assert all(e + 24 <= 500 for e in ends)  # every past horizon ended inside the history
    assert ends[-1] > 500 - 2 * 24 and ends[0] >= 128  # the most recent ones, each from a full lookback
    assert all(e % 24 == 0 for e in ends)  # on the grid: multiples of one horizon from the first bar
    # A history grown by new bars keeps its older grid points: their forecasts can be reused.
    for grown in (501, 523, 524, 600):
        later = plan_origins(history=grown, pred_len=24, lookback=128, max_origins=12)
        assert set(ends) & set(later) == set(ends) - set(range(0, later[0]))
        assert all(e + 24 <= grown for e in later)
    # A short history spreads its origins over its second half on a finer grid.
    short = plan_origins(history=150, pred_len=24, lookback=128, max_origins=12)
    assert len(short) == 12 and short[0] >= 63 and short[-1] + 24 <= 150
    assert len({b - a for a, b in zip(short, short[1:])}) == 1


def test_plan_origins_empty_when_history_is_too_short():
    need = minimum_history(24, 128)
    assert len(plan_origins(need, 24, 128)) == MIN_ORIGINS
    assert plan_origins(need - 1, 24, 128) == []


def test_fit_scale_widens_too_narrow_paths_and_narrows_too_wide_ones():
    rng = np.random.default_rng(0)
    k, s, p = 300, 32, 3
    realised = 100 + rng.standard_normal((k, p))
    narrow = 100 + 0.5 * rng.standard_normal((k, s, p))
    wide = 100 + 3.0 * rng.standard_normal((k, s, p))
    # Undamped, the minimum-CRPS factor restores the true spread; damped, it goes halfway in log space.
    # (within the grid's 7% steps and the small upward bias of a finite ensemble's CRPS)
    np.testing.assert_allclose(fit_scale(narrow, realised, damping=1.0), 2.0, rtol=0.2)
    np.testing.assert_allclose(fit_scale(wide, realised, damping=1.0), 1 / 3, rtol=0.2)
    np.testing.assert_allclose(fit_scale(narrow, realised), np.sqrt(fit_scale(narrow, realised, damping=1.0)))


def test_fitted_scale_lowers_the_crps_of_the_past_forecasts():
    rng = np.random.default_rng(1)
    k, s, p = 60, 16, 4
    realised = rng.standard_t(4, size=(k, p))
    paths = 0.3 * rng.standard_normal((k, s, p))
    scale = fit_scale(paths, realised, window=0, damping=1.0)
    median = np.median(paths, axis=1, keepdims=True)
    before = crps_samples(np.moveaxis(paths, 1, 0), realised).mean(axis=0)
    after = crps_samples(np.moveaxis(median + scale * (paths - median), 1, 0), realised).mean(axis=0)
    assert np.all(after < before)


@pytest.mark.parametrize("window", [0, 2])
def test_fit_scale_picks_the_grid_factor_of_least_pooled_crps(window):
    from kronos.forecasting.calibration import SCALE_GRID

    rng = np.random.default_rng(3)
    k, s, p = 12, 16, 9
    realised = 100 + rng.standard_normal((k, p)).cumsum(-1)
    paths = (100 + rng.uniform(0.3, 3) * rng.standard_normal((k, s, p)).cumsum(-1)).astype(np.float32)
    median = np.median(paths, axis=1, keepdims=True)
    expected = []
    for h in range(p):  # the definition: every factor's CRPS, scored member by member, pooled over the window
        steps = slice(max(0, h - window), h + window + 1)
        scores = [crps_samples(np.moveaxis(median + g * (paths - median), 1, 0)[:, :, steps],
                               realised[:, steps]).mean() for g in SCALE_GRID]
        expected.append(SCALE_GRID[int(np.argmin(scores))])
    np.testing.assert_array_equal(fit_scale(paths, realised, window=window, damping=1.0), expected)


def test_rescale_paths_keeps_the_close_median_and_every_bar_s_shape():
    rng = np.random.default_rng(2)
    close = 10 + rng.standard_normal((21, PRED))
    wick = np.abs(rng.standard_normal((21, PRED, 2)))
    open_ = close + 0.1 * rng.standard_normal((21, PRED))
    high, low = np.maximum(open_, close) + wick[..., 0], np.minimum(open_, close) - wick[..., 1]
    paths = np.stack([open_, high, low, close, np.ones_like(close), np.ones_like(close)], axis=-1)
    scale = np.linspace(0.5, 2.0, PRED)
    out = rescale_paths(paths, scale, [0, 1, 2, 3], reference=3, last_close=10.0, shrink=1.0)
    np.testing.assert_allclose(np.median(out[..., 3], axis=0), np.median(close, axis=0))
    np.testing.assert_array_equal(out[..., 4:], paths[..., 4:])
    np.testing.assert_allclose(np.ptp(out[..., 3], axis=0) / np.ptp(close, axis=0), scale, rtol=1e-6)
    assert np.all(out[..., 1] >= np.maximum(out[..., 0], out[..., 3]))
    assert np.all(out[..., 2] <= np.minimum(out[..., 0], out[..., 3]))
    moved = rescale_paths(paths, np.ones(PRED), [0, 1, 2, 3], reference=3, last_close=10.0, shrink=0.0)
    np.testing.assert_allclose(np.median(moved[..., 3], axis=0), 10.0)


def test_fit_shrink_recovers_how_much_of_the_median_move_happens():
    rng = np.random.default_rng(3)
    k, s, p = 300, 9, 4
    last = np.full(k, 50.0)
    move = rng.standard_normal((k, 1, p))
    paths = last[:, None, None] + move + 0.01 * rng.standard_normal((k, s, p))
    realised = last[:, None] + 0.4 * np.median(move, axis=1) + 0.1 * rng.standard_normal((k, p))
    assert abs(fit_shrink(paths, realised, last) - 0.4) < 0.03
    assert fit_shrink(paths, last[:, None] - 5 * np.median(move, axis=1), last) == 0.0  # clipped into [0, 1]


def test_fit_shrink_keeps_an_exact_drift_and_barely_moves_with_the_draws():
    rng = np.random.default_rng(8)
    k, s, p = 12, 16, 20
    last = np.full(k, 100.0)
    drift = np.cumsum(rng.standard_normal((k, 1, p)), axis=2)
    paths = last[:, None, None] + drift + rng.standard_normal((k, s, p))
    exact = np.median(paths, axis=1)
    assert fit_shrink(paths, exact, last) == pytest.approx(1.0)  # a drift that came true exactly is kept whole
    assert fit_shrink(paths, exact, last, regularisation=0.0) == pytest.approx(1.0)
    # realised moves that the drift explains little of, forecast again with other draws: the plain factor swings,
    # the regularised one stays near 0
    realised = last[:, None] + 0.3 * drift[:, 0] + 2 * np.cumsum(rng.standard_normal((k, p)), axis=1)
    draws = [last[:, None, None] + drift + 3 * rng.standard_normal((k, s, p)) for _ in range(20)]
    plain = [fit_shrink(d, realised, last, regularisation=0.0) for d in draws]
    steady = [fit_shrink(d, realised, last) for d in draws]
    assert np.ptp(plain) > 0.05 and np.ptp(steady) < np.ptp(plain) / 2 and max(steady) < max(plain)


def test_recentre_moves_the_median_and_keeps_the_spread():
    rng = np.random.default_rng(4)
    paths = 10 + rng.standard_normal((31, PRED))
    out = recentre(paths, 9.0, 0.25)
    np.testing.assert_allclose(np.median(out, axis=0), 9.0 + 0.25 * (np.median(paths, axis=0) - 9.0))
    np.testing.assert_allclose(out - np.median(out, axis=0), paths - np.median(paths, axis=0))


# -- the predictor -------------------------------------------------------------------------------

@pytest.fixture()
def long_history(xshg):
    n = 200
    history = xshg.iloc[:n].reset_index(drop=True)
    return history, history["timestamps"], xshg["timestamps"].iloc[n:n + PRED]


@pytest.fixture()
def predictor(tiny_predictor):
    lookback = tiny_predictor.lookback
    tiny_predictor.lookback = 64
    yield tiny_predictor
    tiny_predictor.lookback = lookback


def test_forecast_sees_only_the_last_lookback_bars(predictor, long_history, one_thread):
    history, x_ts, y_ts = long_history
    whole = predictor.forecast(history, x_ts, y_ts, PRED, sample_count=4, seed=5, calibrate=False)
    tail = predictor.forecast(history.iloc[-64:], x_ts.iloc[-64:], y_ts, PRED, sample_count=4, seed=5,
                              calibrate=False)
    np.testing.assert_array_equal(whole.samples, tail.samples)
    assert whole.calibration is None


def test_calibrated_paths_are_the_sampled_paths_rescaled(predictor, long_history, one_thread):
    history, x_ts, y_ts = long_history
    raw = predictor.forecast(history, x_ts, y_ts, PRED, sample_count=8, seed=5, calibrate=False)
    calibrated = predictor.forecast(history, x_ts, y_ts, PRED, sample_count=8, seed=5, combine=False)
    c = calibrated.calibration
    assert c.applied and c.origins == len(plan_origins(200, PRED, 64)) and c.scale.shape == (PRED,)
    assert np.all(c.scale > 0) and c.note == ""
    assert 0 <= c.shrink <= 1
    last_close = float(history["close"].iloc[-1])
    np.testing.assert_allclose(calibrated.samples, rescale_paths(raw.samples, c.scale, [0, 1, 2, 3], 3, last_close,
                                                                 c.shrink), rtol=1e-5)


def test_short_history_is_not_calibrated_and_says_why(predictor, xshg, one_thread, caplog):
    history = xshg.iloc[:40].reset_index(drop=True)
    y_ts = xshg["timestamps"].iloc[40:40 + PRED]
    with caplog.at_level(logging.INFO, logger="kronos.forecasting.predictor"):
        forecast = predictor.forecast(history, history["timestamps"], y_ts, PRED, sample_count=4, seed=0)
    c = forecast.calibration
    assert not c.applied and np.all(c.scale == 1)
    assert f"history of 40 bars is too short to calibrate {PRED} steps: it needs {minimum_history(PRED, 64)}" \
        in c.note
    assert c.note in caplog.text


def test_long_history_is_reported_once(predictor, long_history, one_thread, caplog):
    history, x_ts, y_ts = long_history
    predictor._said_lookback = False
    with caplog.at_level(logging.INFO, logger="kronos.forecasting.predictor"):
        for _ in range(2):
            predictor.forecast(history, x_ts, y_ts, PRED, sample_count=2, seed=0, calibrate=False)
    assert caplog.text.count("feeds the network the last 64 bars") == 1


def test_predict_keeps_the_whole_history(predictor, long_history, one_thread):
    """predict() normalises on every bar it is given, as the original does: a longer history changes it."""
    history, x_ts, y_ts = long_history
    whole = predictor.predict(history, x_ts, y_ts, PRED, top_k=1)
    tail = predictor.predict(history.iloc[-64:], x_ts.iloc[-64:], y_ts, PRED, top_k=1)
    assert not np.allclose(whole.to_numpy(), tail.to_numpy())


def test_predictor_info_round_trip_and_from_pretrained(tmp_path, parity_dir):
    import shutil

    from kronos import KronosPredictor

    folder = tmp_path / "model"
    shutil.copytree(parity_dir / "model", folder)
    write_predictor_info(folder, lookback=96, max_context=128)
    assert read_predictor_info(folder) == {"lookback": 96, "max_context": 128}
    predictor = KronosPredictor.from_pretrained(folder, parity_dir / "tokenizer", device="cpu")
    assert (predictor.lookback, predictor.max_context) == (96, 128)
    assert KronosPredictor.from_pretrained(folder, parity_dir / "tokenizer", device="cpu", lookback=32).lookback == 32
    (folder / "predictor.json").write_text('{"lookback": "many"}')
    with pytest.raises(ValueError, match="lookback must be a positive integer, got 'many'"):
        read_predictor_info(folder)


def test_dequantise_spreads_paths_that_drew_the_same_token(predictor, long_history, one_thread):
    """With two candidates for each of s1 and s2 the first bar takes at most four values; the tokenizer's
    residuals, drawn from the history, make almost every path's first bar its own."""
    history, x_ts, y_ts = long_history
    kwargs = dict(sample_count=32, seed=0, top_k=2, calibrate=False)
    coarse = predictor.forecast(history, x_ts, y_ts, PRED, dequantise=False, **kwargs).samples[:, 0, 3]
    fine = predictor.forecast(history, x_ts, y_ts, PRED, dequantise=True, **kwargs).samples[:, 0, 3]
    # (a few paths may draw both the same token and the same one of the 64 history residuals)
    assert len(np.unique(coarse)) <= 4 and len(np.unique(fine)) >= 28
    # The residuals are the size of the tokenizer's reconstruction error, not of a new forecast.
    assert np.abs(np.median(fine) - np.median(coarse)) < 5 * history["close"].std()


# -- the predictor's calibration, rebuilt from the public API ------------------------------------------

def _rebuilt_calibration(predictor, history, x_ts, pred_len, ends, shift=0):
    """Scale and shrink fitted from past forecasts made one by one with ``predictor.forecast`` at each end row,
    each drawn with its published seed, scored on the closes read from the frame ``shift`` bars late."""
    closes = bar_features(history)[:, 3]
    paths, realised, last = [], [], []
    for end in ends:
        start = max(0, end - predictor.lookback)
        bars, stamps, horizon = history.iloc[start:end], x_ts.iloc[start:end], x_ts.iloc[end:end + pred_len]
        seed = past_seed(bar_features(bars), stamps, horizon)
        past = predictor.forecast(bars, stamps, horizon, pred_len, sample_count=PATHS_PER_ORIGIN, seed=seed,
                                  calibrate=False)
        paths.append(past.samples[..., 3])
        realised.append(closes[end + shift:end + shift + pred_len])
        last.append(float(closes[end - 1]))
    paths, realised, last = np.stack(paths), np.stack(realised), np.array(last)
    shrink = fit_shrink(paths, realised, last)
    return fit_scale(recentre(paths, last[:, None, None], shrink), realised), shrink


def _matches(calibration, scale, shrink) -> bool:
    return bool(np.allclose(calibration.scale, scale, rtol=1e-6) and abs(calibration.shrink - shrink) < 1e-6)


def test_calibration_equals_one_rebuilt_from_past_forecasts_and_not_a_shifted_one(predictor, xshg, one_thread):
    """Past forecasts rebuilt independently, scored on the realised closes, give the forecast's own factors;
    scored one bar late (the realised window misaligned) they do not, so this test catches that bug."""
    history = xshg.iloc[:260].reset_index(drop=True)
    x_ts, y_ts = history["timestamps"], xshg["timestamps"].iloc[260:260 + PRED]
    predictor.past_forecasts.clear()
    raw = predictor.forecast(history, x_ts, y_ts, PRED, sample_count=8, seed=5, calibrate=False)
    forecast = predictor.forecast(history, x_ts, y_ts, PRED, sample_count=8, seed=5, combine=False)
    c = forecast.calibration
    assert list(c.ends) == plan_origins(len(history), PRED, predictor.lookback) and c.origins == len(c.ends) == 12
    scale, shrink = _rebuilt_calibration(predictor, history, x_ts, PRED, c.ends)
    assert _matches(c, scale, shrink)
    np.testing.assert_allclose(forecast.samples, rescale_paths(raw.samples, scale, [0, 1, 2, 3], 3,
                                                               float(bar_features(history)[-1, 3]), shrink),
                               rtol=1e-6)
    # the mutation: the realised window shifted by one bar must not pass
    assert not _matches(c, *_rebuilt_calibration(predictor, history, x_ts, PRED, c.ends, shift=1))


def test_past_forecasts_are_made_once_and_reused_exactly(predictor, xshg, one_thread):
    """A history that grew by one horizon reuses all but one of its past forecasts; reused or made afresh
    (another batch, an empty store), the calibration is the same to the bit."""
    series = xshg.iloc[:300].reset_index(drop=True)
    grown, y_ts = series.iloc[:260 + PRED], xshg["timestamps"].iloc[260 + PRED:260 + 2 * PRED]
    predictor.past_forecasts.clear()
    predictor.forecast(series.iloc[:260], series["timestamps"].iloc[:260], series["timestamps"].iloc[260:260 + PRED],
                       PRED, sample_count=4, seed=1)
    assert (predictor.past_forecasts.hits, predictor.past_forecasts.misses) == (0, 12)
    reused = predictor.forecast(grown, grown["timestamps"], y_ts, PRED, sample_count=4, seed=1)
    assert (predictor.past_forecasts.hits, predictor.past_forecasts.misses) == (11, 13)
    predictor.past_forecasts.clear()
    fresh = predictor.forecast(grown, grown["timestamps"], y_ts, PRED, sample_count=4, seed=1)
    assert reused.calibration.ends == fresh.calibration.ends
    assert np.array_equal(reused.calibration.scale, fresh.calibration.scale)
    assert reused.calibration.shrink == fresh.calibration.shrink
    assert np.array_equal(reused.samples, fresh.samples)


def test_calibration_seed_draws_other_past_forecasts(predictor, long_history, one_thread):
    history, x_ts, y_ts = long_history
    one = predictor.forecast(history, x_ts, y_ts, PRED, sample_count=4, seed=1).calibration
    other = predictor.forecast(history, x_ts, y_ts, PRED, sample_count=4, seed=1, calibration_seed=7).calibration
    assert one.ends == other.ends
    assert not np.array_equal(one.scale, other.scale) or one.shrink != other.shrink


def test_a_fitted_calibration_given_back_is_applied_without_past_forecasts(predictor, long_history, one_thread):
    history, x_ts, y_ts = long_history
    fitted = predictor.forecast(history, x_ts, y_ts, PRED, sample_count=8, seed=5)
    looked_up = predictor.past_forecasts.hits + predictor.past_forecasts.misses
    again = predictor.forecast(history, x_ts, y_ts, PRED, sample_count=8, seed=5,
                               calibration=Calibration.from_dict(fitted.calibration.to_dict()))
    assert predictor.past_forecasts.hits + predictor.past_forecasts.misses == looked_up  # no past forecast asked for
    np.testing.assert_array_equal(again.samples, fitted.samples)
    with pytest.raises(ValueError, match="has 3 scale factors for pred_len 6"):
        predictor.forecast(history, x_ts, y_ts, PRED, calibration=Calibration(np.ones(3), 4))
