"""Metric functions against hand-computed values and independent reference computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kronos.evaluation.aggregate import calibration, rank_ic, summarise
from kronos.evaluation.baselines import baseline_forecasts, is_intraday, seasonal_naive_volume
from kronos.evaluation.metrics import (
    CALIBRATION_LEVELS,
    central_interval,
    coverages,
    crps_samples,
    direction_hits,
    interval_coverage,
    log_returns,
    ohlc_break_rates,
    rankdata,
    realised_volatility,
    score_origin,
    spearman,
)

from .conftest import read_bars


@pytest.fixture(scope="module")
def aapl() -> pd.DataFrame:
    return read_bars("bokeh_AAPL_1d.csv")


def crps_by_integral(samples: np.ndarray, y: float) -> float:
    """Reference: integral of (F(x) - 1{x >= y})^2 for the empirical CDF F, exact on its breakpoints."""
    points = np.sort(np.r_[samples, y])
    total = 0.0
    for left, right in zip(points[:-1], points[1:]):
        cdf = np.mean(samples <= left)
        total += (cdf - float(left >= y)) ** 2 * (right - left)
    return total


class TestCrps:
    def test_hand_computed_three_members(self):
        # mean|X - 2| = 2/3; mean|X - X'| over 9 pairs = 8/9, half is 4/9
        assert crps_samples(np.array([1.0, 2.0, 3.0]), 2.0) == pytest.approx(2 / 9)

    def test_single_member_is_absolute_error(self):
        assert crps_samples(np.array([5.0]), 3.5) == pytest.approx(1.5)

    def test_matches_integral_form_on_real_closes(self, aapl):
        closes = aapl["close"].to_numpy()[:41]
        for y in (closes[40], closes[:40].mean(), closes.max() + 1):
            assert crps_samples(closes[:40], y) == pytest.approx(crps_by_integral(closes[:40], y), rel=1e-12)

    def test_matches_pairwise_energy_form_vectorised(self, aapl):
        paths = aapl["close"].to_numpy()[:60].reshape(20, 3)  # 20 members, 3 bars
        y = aapl["close"].to_numpy()[60:63]
        brute = [np.abs(paths[:, j] - y[j]).mean() - 0.5 * np.abs(paths[:, j, None] - paths[None, :, j]).mean()
                 for j in range(3)]
        np.testing.assert_allclose(crps_samples(paths, y), brute, rtol=1e-12)

    def test_no_samples_raises(self):
        with pytest.raises(ValueError, match="at least one sample"):
            crps_samples(np.empty((0, 3)), np.zeros(3))


class TestIntervals:
    def test_central_interval_bounds(self):
        lo, hi = central_interval(np.arange(101.0), 0.8)
        assert (lo, hi) == pytest.approx((10.0, 90.0))

    def test_coverage_counts_bounds_as_inside(self):
        samples = np.repeat(np.arange(101.0)[:, None], 5, axis=1)
        assert interval_coverage(samples, np.array([5.0, 10.0, 50.0, 90.0, 95.0]), 0.8) == pytest.approx(0.6)

    def test_all_levels_at_once_match_one_by_one(self, aapl):
        paths = aapl["close"].to_numpy()[:200].reshape(20, 10)
        y = aapl["close"].to_numpy()[200:210]
        expected = [interval_coverage(paths, y, level) for level in CALIBRATION_LEVELS]
        np.testing.assert_allclose(coverages(paths, y), expected)

    def test_level_out_of_range(self):
        with pytest.raises(ValueError, match=r"interval level must be in \(0, 1\), got 1.0"):
            central_interval(np.arange(5.0), 1.0)


class TestReturnsAndVolatility:
    def test_log_returns_anchor_on_last_close(self):
        np.testing.assert_allclose(log_returns(np.array([110.0, 99.0]), 100.0), [math.log(1.1), math.log(0.9)])

    def test_volatility_is_population_std(self):
        expected = abs(math.log(1.1) - math.log(0.9)) / 2
        assert realised_volatility(np.array([110.0, 99.0]), 100.0) == pytest.approx(expected)
        assert realised_volatility(np.array([110.0, 121.0]), 100.0) == pytest.approx(0.0, abs=1e-15)

    def test_volatility_per_path(self):
        paths = np.array([[110.0, 99.0], [110.0, 121.0]])
        np.testing.assert_allclose(realised_volatility(paths, 100.0), [0.5 * math.log(1.1 / 0.9), 0.0], atol=1e-15)

    def test_one_bar_has_no_volatility(self):
        assert np.isnan(realised_volatility(np.array([101.0]), 100.0))

    def test_non_positive_price_gives_nan(self):
        assert np.isnan(log_returns(np.array([-1.0]), 100.0)[0])

    def test_direction_rules(self):
        hits = direction_hits(np.array([0.1, 0.1, -0.2, 0.0, 0.3]), np.array([0.2, -0.1, -0.1, 0.5, 0.0]))
        np.testing.assert_array_equal(hits, [1.0, 0.0, 1.0, 0.5, np.nan])


class TestRanks:
    def test_rankdata_ties_match_scipy(self, aapl):
        values = aapl["volume"].to_numpy()[:200] // 10**6  # integer millions: many ties
        np.testing.assert_array_equal(rankdata(values), stats.rankdata(values))

    def test_spearman_matches_scipy_on_real_returns(self, aapl):
        returns = np.diff(np.log(aapl["close"].to_numpy()[:301]))
        x, y = returns[:-1], returns[1:]
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)

    def test_spearman_constant_or_short_is_nan(self):
        assert np.isnan(spearman(np.zeros(6), np.arange(6.0)))
        assert np.isnan(spearman(np.array([1.0, 2.0]), np.array([2.0, 1.0])))


def test_ohlc_break_rates_hand_made_bars():
    bars = np.array([[10, 12, 9, 11],  # fine
                     [10, 10.5, 9, 11],  # high < close
                     [10, 12, 10.5, 11],  # low > open
                     [10, 9, 11, 10.5]], dtype=float)  # both
    assert ohlc_break_rates(bars) == {"high_break": 0.5, "low_break": 0.5, "any_break": 0.75}


class TestScoreOrigin:
    def test_hand_computed_two_paths(self):
        paths = np.array([[102.0, 106.0], [100.0, 102.0]])  # mean path 101, 104
        out = score_origin(paths, np.array([[10.0, 20.0], [30.0, 40.0]]), 100.0, np.array([100.0, 103.0]),
                           np.array([15.0, 35.0]), volume_scale=50.0)
        assert out["close_ae"] == pytest.approx(1.0)
        assert out["close_se"] == pytest.approx(1.0)
        assert out["close_ae_rel"] == pytest.approx(0.01)
        assert out["forecast_return"] == pytest.approx(math.log(1.04))
        assert out["realised_return"] == pytest.approx(math.log(1.03))
        assert out["logret_ae"] == pytest.approx(math.log(1.04 / 1.03))
        assert out["direction"] == 1.0
        # bar 1: {102, 100} vs 100 -> 1 - 0.5; bar 2: {106, 102} vs 103 -> 2 - 1
        assert out["crps"] == pytest.approx(0.75)
        assert out["crps_rel"] == pytest.approx(0.0075)
        # 80% interval of two members spans [min+10%, max-10%] of the gap: bar 1 [100.2, 101.8] misses 100
        assert out["coverage_80"] == pytest.approx(0.5)
        # volumes: mean path (20, 30) vs (15, 35) -> 5
        assert out["volume_ae"] == pytest.approx(5.0)
        assert out["volume_ae_rel"] == pytest.approx(0.1)

    def test_point_forecast_has_no_coverage(self):
        out = score_origin(np.full((1, 3), 100.0), None, 100.0, np.array([99.0, 101.0, 102.0]), np.ones(3), 1.0)
        assert np.isnan(out["coverage_80"]) and "volume_ae" not in out
        assert out["direction"] == 0.5  # no direction called
        assert out["vol_ae"] == pytest.approx(out["realised_vol"])  # a flat path has zero volatility


class TestAggregate:
    def records(self) -> pd.DataFrame:
        rows = []
        for i in range(5):  # five series share the first origin, four the second
            for origin, forecast in (("2020-01-01", i + 1.0), ("2020-01-02", float(i))):
                if origin == "2020-01-02" and i == 4:
                    continue
                rows.append({"series": f"s{i}", "origin": pd.Timestamp(origin), "method": "kronos",
                             "forecast_return": forecast, "realised_return": 2 * forecast + 1,
                             "close_ae": 1.0 + i, "close_se": (1.0 + i) ** 2, "close_ae_rel": 0.01 * (i + 1),
                             "close_se_rel": (0.01 * (i + 1)) ** 2, "direction": 1.0, "coverage_80": 1.0})
        return pd.DataFrame(rows)

    def test_pooled_rmse_and_price_metrics(self):
        summary = summarise(self.records())
        pooled = summary[summary["series"] == "ALL"].iloc[0]
        rel = np.array([0.01 * (i + 1) for i in range(5) for _ in range(2)][:-1])
        assert pooled["close_rmse_rel"] == pytest.approx(np.sqrt(np.mean(rel**2)))
        assert pooled["close_mae_rel"] == pytest.approx(rel.mean())
        assert np.isnan(pooled["close_mae"])  # price units do not pool
        s1 = summary[(summary["series"] == "s1")].iloc[0]
        assert s1["close_mae"] == pytest.approx(2.0) and s1["n_origins"] == 2

    def test_rank_ic_needs_five_series(self):
        table = rank_ic(self.records()).set_index("method")
        assert table.loc["kronos", "timestamps"] == 1
        assert table.loc["kronos", "mean_ic"] == pytest.approx(1.0)

    def test_calibration_reports_only_methods_with_paths(self):
        table = calibration(self.records())
        assert list(table.columns) == ["kronos"] and table.loc[0.8, "kronos"] == 1.0


class TestBaselines:
    def test_persistence_and_drift_by_hand(self, aapl):
        history = aapl[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)[:50]
        history = np.c_[history, np.zeros(len(history))]
        ts = pd.DatetimeIndex(aapl["timestamps"])
        out = baseline_forecasts(history, ts[:50], ts[50:53], 8, np.random.default_rng(0), vol_window=10)
        np.testing.assert_array_equal(out["persistence"].close, np.full((1, 3), history[-1, 3]))
        np.testing.assert_array_equal(out["persistence"].volume, np.full((1, 3), history[-1, 4]))
        mu = np.diff(np.log(history[-11:, 3])).mean()
        np.testing.assert_allclose(out["rw_drift"].close[0], history[-1, 3] * np.exp(mu * np.arange(1, 4)))
        assert out["gaussian_rw"].close.shape == (8, 3)
        assert "seasonal_naive" not in out  # daily series

    def test_gaussian_paths_have_historical_volatility(self, aapl):
        history = np.c_[aapl[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)[:300], np.zeros(300)]
        ts = pd.DatetimeIndex(aapl["timestamps"])
        paths = baseline_forecasts(history, ts[:300], ts[300:350], 4000, np.random.default_rng(1))["gaussian_rw"]
        sigma = np.diff(np.log(history[:, 3])).std(ddof=1)
        steps = np.diff(np.log(paths.close), axis=1)
        assert steps.std() == pytest.approx(sigma, rel=0.02)

    def test_seasonal_naive_takes_same_clock_time_a_day_earlier(self):
        bars = read_bars("freqtrade_ETH-BTC_5min.csv")
        ts = pd.DatetimeIndex(bars["timestamps"])
        assert is_intraday(ts) and not is_intraday(pd.DatetimeIndex(read_bars("bokeh_IBM_1d.csv")["timestamps"]))
        origin = 3000
        volume = seasonal_naive_volume(ts[:origin], bars["volume"].to_numpy(), ts[origin:origin + 4])
        for j, stamp in enumerate(ts[origin:origin + 4]):
            day_before = bars.loc[bars["timestamps"] == stamp - pd.Timedelta(days=1), "volume"]
            assert volume[j] == day_before.iloc[0]
