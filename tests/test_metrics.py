"""Metric functions against hand-computed values and independent reference computations."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from kronos.evaluation.aggregate import calibration, crps_by_step, rank_ic, summarise
from kronos.evaluation.baselines import (
    baseline_forecasts,
    bootstrap_bars,
    bootstrap_returns,
    garch_forecast,
    history_returns,
    is_intraday,
    paths_from_returns,
    seasonal_naive_volume,
)
from kronos.evaluation.compare import geometric_mean_ratio, paired_differences, paired_stats, versus
from kronos.evaluation.metrics import (
    CALIBRATION_LEVELS,
    central_interval,
    coverages,
    crps_samples,
    direction_hits,
    expected_sample_coverage,
    interval_coverage,
    log_returns,
    ohlc_break_rates,
    pinball_loss,
    rankdata,
    realised_volatility,
    score_origin,
    spearman,
)
from kronos.stats.garch import fit_garch_t, simulate_garch_t

from .conftest import import_or_need, read_bars

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "kronos" / "examples_data"


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

    @pytest.mark.parametrize("seed", range(4))
    def test_matches_properscoring(self, seed):
        properscoring = import_or_need("properscoring")
        rng = np.random.default_rng(seed)
        members, y = rng.standard_t(3, size=(rng.integers(2, 60), 7)) * 5 + 100, rng.normal(100, 5, size=7)
        np.testing.assert_allclose(crps_samples(members, y), properscoring.crps_ensemble(y, members.T), rtol=1e-10)

    @pytest.mark.parametrize("seed", range(4))
    def test_matches_scipy_integral_of_empirical_cdf(self, seed):
        rng = np.random.default_rng(100 + seed)
        members, y = rng.lognormal(0, 0.3, size=rng.integers(1, 25)), float(rng.lognormal(0, 0.4))

        def integrand(x: float) -> float:
            return (np.mean(members <= x) - float(x >= y)) ** 2

        edges = np.unique(np.r_[members, y])  # the integrand is constant between these and 0 outside
        total = sum(integrate.quad(integrand, a, b)[0] for a, b in zip(edges[:-1], edges[1:]))
        assert crps_samples(members, y) == pytest.approx(total, rel=1e-9, abs=1e-12)


class TestPinball:
    def test_hand_computed_levels(self):
        members = np.arange(11.0)  # the tau-quantile is exactly 10 * tau
        assert pinball_loss(members, 5.0, levels=(0.1,)) == pytest.approx(0.1 * 4)  # y above q = 1
        assert pinball_loss(members, 5.0, levels=(0.9,)) == pytest.approx(0.1 * 4)  # y below q = 9
        # all nine levels: 0.4, 0.6, 0.6, 0.4, 0, 0.4, 0.6, 0.6, 0.4
        assert pinball_loss(members, 5.0) == pytest.approx(4.0 / 9)
        np.testing.assert_allclose(pinball_loss(np.c_[members, members], np.array([5.0, 0.0]), levels=(0.5,)),
                                   [0.0, 2.5])  # per column: |y - median| / 2

    def test_twice_the_mean_over_a_dense_grid_is_crps(self, aapl):
        closes = aapl["close"].to_numpy()[:400]
        levels = tuple(np.linspace(0.0005, 0.9995, 1000))
        assert 2 * pinball_loss(closes, closes.mean() * 1.01, levels) == pytest.approx(
            crps_samples(closes, closes.mean() * 1.01), rel=0.01)

    def test_bad_levels(self):
        with pytest.raises(ValueError, match="pinball levels"):
            pinball_loss(np.arange(3.0), 1.0, levels=(0.0, 0.5))


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
        assert (out["crps_rel_h1"], out["crps_rel_h2"]) == pytest.approx((0.005, 0.01))
        expected = pinball_loss(paths, np.array([100.0, 103.0])).mean() / 100.0
        assert out["pinball_rel"] == pytest.approx(expected)

    def test_point_forecast_has_no_coverage(self):
        out = score_origin(np.full((1, 3), 100.0), None, 100.0, np.array([99.0, 101.0, 102.0]), np.ones(3), 1.0)
        assert np.isnan(out["coverage_80"]) and "volume_ae" not in out
        assert "pinball_rel" not in out and "crps_rel_h1" not in out  # path metrics only
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

    def test_crps_by_step_pools_origins_per_bar(self):
        records = pd.DataFrame([
            {"series": "a", "method": "kronos", "crps_rel_h1": 0.1, "crps_rel_h2": 0.3, "crps_rel_h10": 0.5},
            {"series": "b", "method": "kronos", "crps_rel_h1": 0.3, "crps_rel_h2": 0.5, "crps_rel_h10": 0.7},
            {"series": "a", "method": "persistence"}])  # no paths: no column
        table = crps_by_step(records)
        assert list(table.index) == [1, 2, 10] and list(table.columns) == ["kronos"]
        np.testing.assert_allclose(table["kronos"], [0.2, 0.4, 0.6])
        np.testing.assert_allclose(crps_by_step(records, "b")["kronos"], [0.3, 0.5, 0.7])


class TestCompare:
    def test_paired_stats_by_hand(self):
        out = paired_stats(np.array([1.0, 2.0, 3.0, np.nan]), np.array([2.0, 2.0, 2.0, 1.0]))
        # differences -1, 0, 1 (the NaN pair dropped): mean 0, std (ddof 1) 1
        assert out == pytest.approx({"n_origins": 3.0, "model": 2.0, "reference": 2.0, "ratio": 1.0,
                                     "mean_diff": 0.0, "two_se": 2 / math.sqrt(3)})
        assert math.isnan(paired_stats(np.array([1.0]), np.array([2.0]))["two_se"])  # one pair: no spread

    def test_geometric_mean_ratio(self):
        assert geometric_mean_ratio(np.array([0.5, 2.0])) == pytest.approx(1.0)
        assert geometric_mean_ratio(np.array([0.25, 1.0, np.nan, np.inf])) == pytest.approx(0.5)
        assert math.isnan(geometric_mean_ratio(np.array([np.nan])))

    def records(self) -> pd.DataFrame:
        # series a: model 1, 3 vs baseline 2, 2; series b: model 1, 1 vs baseline 8, 8 (crps_rel)
        scores = {("a", 1): (1.0, 2.0), ("a", 2): (3.0, 2.0), ("b", 1): (1.0, 8.0), ("b", 2): (1.0, 8.0)}
        rows = []
        for (series, origin), (model, baseline) in scores.items():
            rows += [{"series": series, "origin": origin, "method": "kronos", "crps_rel": model},
                     {"series": series, "origin": origin, "method": "gaussian_rw", "crps_rel": baseline}]
        return pd.DataFrame(rows)

    def test_paired_differences_per_series_and_pooled(self):
        paired = paired_differences(self.records()).set_index("series")
        assert list(paired.index) == ["a", "b", "ALL"] and set(paired["baseline"]) == {"gaussian_rw"}
        assert paired.loc["a", "mean_diff"] == pytest.approx(0.0)  # -1, +1
        assert paired.loc["a", "two_se"] == pytest.approx(2 * math.sqrt(2) / math.sqrt(2))
        assert paired.loc["b", "mean_diff"] == pytest.approx(-7.0) and paired.loc["b", "two_se"] == 0.0
        assert paired.loc["a", "ratio"] == pytest.approx(1.0) and paired.loc["b", "ratio"] == pytest.approx(0.125)
        # pooled differences -1, 1, -7, -7: mean -3.5, squared deviations 51, std sqrt(51 / 3) over 4 origins
        assert paired.loc["ALL", "mean_diff"] == pytest.approx(-3.5)
        assert paired.loc["ALL", "two_se"] == pytest.approx(2 * math.sqrt(17) / 2)
        assert paired.loc["ALL", "ratio"] == pytest.approx(6 / 20)

    def test_versus_gives_geometric_mean_of_series_ratios(self):
        row = versus(paired_differences(self.records())).loc["gaussian_rw"]
        assert row["geo_mean_ratio"] == pytest.approx(math.sqrt(1.0 * 0.125))  # each series weighs the same
        assert row["ratio"] == pytest.approx(0.3)  # pooled: series b's larger scores weigh more
        assert (row["n_series"], row["series_better"]) == (2, 1)  # a: ratio 1 is not below 1

    def test_no_model_gives_empty_tables(self):
        records = self.records()
        assert paired_differences(records[records["method"] != "kronos"]).empty
        assert versus(paired_differences(records[records["method"] != "kronos"])).empty


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

    def test_bootstrap_draws_only_history_returns(self):
        bars = pd.read_csv(EXAMPLES / "AAPL_1d.csv")
        history = np.c_[bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)[:200], np.zeros(200)]
        ts = pd.DatetimeIndex(pd.to_datetime(bars["timestamps"]))
        for window in (None, 10):
            out = baseline_forecasts(history, ts[:200], ts[200:212], 500, np.random.default_rng(2), vol_window=window)
            steps = log_returns(out["bootstrap"].close, history[-1, 3])  # (500, 12) per-bar log returns
            pool = np.diff(np.log(history[:, 3]))[-(window or 199):]
            nearest = np.abs(steps[..., None] - pool).min(axis=-1)
            assert nearest.max() < 1e-12  # every drawn return is one of the pool's
            assert len(np.unique(np.round(steps, 12))) == len(np.unique(np.round(pool, 12)))  # all get drawn
        np.testing.assert_allclose(out["bootstrap"].close[:, 0], history[-1, 3] * np.exp(steps[:, 0]))

    def test_bootstrap_bars_are_history_bars_on_the_same_draws(self):
        bars = pd.read_csv(EXAMPLES / "AAPL_1d.csv")
        history = np.c_[bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)[:200], np.zeros(200)]
        closes, paths = bootstrap_bars(history, 50, 300, 8, np.random.default_rng(4))
        same = paths_from_returns(history[-1, 3], bootstrap_returns(history_returns(history[:, 3], 50), 300, 8,
                                                                    np.random.default_rng(4)))
        np.testing.assert_allclose(closes, same)  # the closes the bootstrap always drew
        np.testing.assert_allclose(paths[..., 3], closes)
        assert ohlc_break_rates(paths)["any_break"] == 0.0  # valid history bars give valid bars
        previous = np.concatenate([np.full((300, 1), history[-1, 3]), closes[:, :-1]], axis=1)
        shapes = np.stack([paths[..., 0] / previous, paths[..., 1] / closes, paths[..., 2] / closes], -1)
        known = np.stack([history[1:, 0] / history[:-1, 3], history[1:, 1] / history[1:, 3],
                          history[1:, 2] / history[1:, 3]], -1)[-50:]
        nearest = np.abs(shapes.reshape(-1, 1, 3) - known[None]).max(-1).min(-1)
        assert nearest.max() < 1e-9  # each bar's open, high and low ratios are one history bar's, together

    def test_score_origin_scores_highs_and_lows(self):
        rng = np.random.default_rng(5)
        bars = 100 + rng.normal(size=(30, 6, 6))
        realised = 100 + rng.normal(size=(6, 6))
        got = score_origin(bars[..., 3], None, 100.0, realised[:, 3], realised[:, 4], 1.0, bars, realised_bars=realised)
        assert got["crps_high_rel"] == pytest.approx(crps_samples(bars[..., 1], realised[:, 1]).mean() / 100)
        assert got["crps_low_rel"] == pytest.approx(crps_samples(bars[..., 2], realised[:, 2]).mean() / 100)
        assert "crps_high_rel" not in score_origin(bars[..., 3], None, 100.0, realised[:, 3], realised[:, 4], 1.0,
                                                   bars)

    def test_bootstrap_keeps_the_history_mean(self):
        returns = np.array([0.01, 0.02, 0.03])  # all positive: no demeaning, so every path goes up
        draws = bootstrap_returns(returns, 4000, 5, np.random.default_rng(0))
        assert draws.min() == 0.01 and draws.mean() == pytest.approx(0.02, abs=5e-4)
        assert bootstrap_returns(np.array([]), 3, 2, np.random.default_rng(0)).tolist() == [[0.0, 0.0]] * 3

    def test_seasonal_naive_takes_same_clock_time_a_day_earlier(self):
        bars = read_bars("freqtrade_ETH-BTC_5min.csv")
        ts = pd.DatetimeIndex(bars["timestamps"])
        assert is_intraday(ts) and not is_intraday(pd.DatetimeIndex(read_bars("bokeh_IBM_1d.csv")["timestamps"]))
        origin = 3000
        volume = seasonal_naive_volume(ts[:origin], bars["volume"].to_numpy(), ts[origin:origin + 4])
        for j, stamp in enumerate(ts[origin:origin + 4]):
            day_before = bars.loc[bars["timestamps"] == stamp - pd.Timedelta(days=1), "volume"]
            assert volume[j] == day_before.iloc[0]


class TestGarch:
    @pytest.fixture(scope="class")
    def returns(self) -> np.ndarray:
        import_or_need("arch", "needs arch for the GARCH(1,1)-t checks (pip install 'kronos-kline[garch]')")
        closes = pd.read_csv(EXAMPLES / "AAPL_1d.csv")["close"].to_numpy(dtype=float)
        return np.diff(np.log(closes))

    def test_fit_is_rescaled_and_matches_arch_forecast(self, returns):
        from arch import arch_model

        fit = fit_garch_t(returns)
        assert fit is not None and fit.is_usable()
        assert fit.scale == 100.0  # daily returns (~0.02) were multiplied by 100 for the fit
        result = arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=True).fit(disp="off")
        variance = result.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0] / result.scale**2
        assert fit.next_variance == pytest.approx(variance, rel=1e-6)  # back in log-return units
        assert fit.alpha + fit.beta < 1 and 2 < fit.nu < 50

    def test_paths_have_sensible_spread(self, returns):
        fit = fit_garch_t(returns)
        simulated = simulate_garch_t(fit, 20000, 3, np.random.default_rng(0))
        assert simulated.shape == (20000, 3) and np.isfinite(simulated).all()
        low, high = np.quantile(simulated[:, 0], [0.1, 0.9])
        history_std = returns.std(ddof=1)
        assert history_std / 3 < high - low < 3 * history_std
        # unit-variance innovations: the mean square of the first bar is the model's next variance
        assert (simulated[:, 0] ** 2).mean() == pytest.approx(fit.next_variance, rel=0.15)

    def test_simulated_returns_stay_within_the_history_range(self, returns):
        fit = fit_garch_t(returns)
        assert fit.bound == pytest.approx(np.abs(returns).max())
        wild = dataclasses.replace(fit, alpha=0.3, beta=0.7, nu=2.1)  # near-integrated, very heavy tails
        simulated = simulate_garch_t(wild, 5000, 24, np.random.default_rng(0))
        assert np.abs(simulated).max() <= fit.bound and np.isfinite(simulated).all()
        assert (np.abs(simulated) == fit.bound).mean() < 0.05  # the clip is for the tails only

    def test_baseline_paths_start_from_last_close(self, returns):
        bars = pd.read_csv(EXAMPLES / "AAPL_1d.csv")
        history = np.c_[bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)[:300], np.zeros(300)]
        ts = pd.DatetimeIndex(pd.to_datetime(bars["timestamps"]))
        out = baseline_forecasts(history, ts[:300], ts[300:310], 200, np.random.default_rng(0))["garch_t"]
        assert out.close.shape == (200, 10) and np.isfinite(out.close).all() and not out.fallback
        first = np.log(out.close[:, 0] / history[-1, 3])
        assert 0.2 < first.std() / np.diff(np.log(history[:, 3])).std() < 5

    def test_no_fit_falls_back_to_the_gaussian_paths(self, returns):
        assert fit_garch_t(returns[:10]) is None  # too short
        assert fit_garch_t(np.zeros(200)) is None  # no variation
        gaussian = baseline_forecasts(np.c_[np.ones((50, 4)), np.ones((50, 2))],
                                      pd.date_range("2020-01-01", periods=50), pd.date_range("2020-02-20", periods=3),
                                      5, np.random.default_rng(0))
        assert gaussian["garch_t"].fallback
        np.testing.assert_array_equal(gaussian["garch_t"].close, gaussian["gaussian_rw"].close)
        forecast = garch_forecast(np.zeros(5), 10.0, 2, 3, np.random.default_rng(0), gaussian["gaussian_rw"])
        assert forecast.fallback and forecast.close is gaussian["gaussian_rw"].close


@pytest.mark.parametrize(("paths", "level", "tolerance"), [
    (11, 0.8, 0.0), (21, 0.5, 0.0),  # whole-number quantile ranks: exact
    (20, 0.8, 0.005), (20, 0.5, 0.005), (100, 0.8, 0.005),  # interpolated ranks: close
])
def test_expected_sample_coverage_matches_a_calibrated_simulation(paths, level, tolerance):
    """Draws and outcomes from the same distribution: the empirical intervals cover about level * (n-1)/(n+1)."""
    rng = np.random.default_rng(7)
    trials = 60_000
    samples = rng.standard_t(4, size=(paths, trials))  # heavy tails
    outcome = rng.standard_t(4, size=trials)
    covered = interval_coverage(samples, outcome, level)
    expected = expected_sample_coverage(level, paths)
    assert abs(covered - expected) < tolerance + 4 * math.sqrt(expected * (1 - expected) / trials)
    assert expected < level


def test_expected_sample_coverage_refuses_impossible_settings():
    with pytest.raises(ValueError, match="level"):
        expected_sample_coverage(1.0, 20)
    with pytest.raises(ValueError, match="paths"):
        expected_sample_coverage(0.8, 1)
