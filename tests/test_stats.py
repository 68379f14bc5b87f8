"""Known-answer tests of the statistics: Newey–West and the block bootstrap against statsmodels and arch on
fixed data, IC tests on an oracle and on random signals, Sharpe ratios, QLIKE in a simulation, the
volatility proxies, baselines and probability scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from kronos.evaluation import probability, volatility
from kronos.stats import significance as stats

from .conftest import DATA, import_or_need


def ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    shocks = rng.standard_normal(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + shocks[t]
    return x + 0.1


class TestNeweyWest:
    @pytest.mark.parametrize("lags", [0, 1, 4, 12])
    def test_matches_statsmodels_hac(self, lags):
        sm = import_or_need("statsmodels.api")
        x = ar1(300, 0.6, seed=1)
        fit = sm.OLS(x, np.ones(len(x))).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
        test = stats.newey_west(x, lags)
        assert test.mean == pytest.approx(float(fit.params[0]), rel=1e-12)
        assert test.se == pytest.approx(float(fit.bse[0]), rel=1e-10)
        assert test.t == pytest.approx(float(fit.tvalues[0]), rel=1e-10)
        assert test.p == pytest.approx(float(fit.pvalues[0]), rel=1e-6, abs=1e-12)

    def test_default_lags_rule_and_nan_handling(self):
        assert stats.default_lags(100) == 4 and stats.default_lags(1000) == 6
        x = ar1(200, 0.3, seed=2)
        with_nan = np.insert(x, [5, 50], np.nan)
        assert stats.newey_west(with_nan).se == pytest.approx(stats.newey_west(x).se)
        assert math.isnan(stats.newey_west(np.array([1.0])).t)

    def test_positive_autocorrelation_widens_the_error(self):
        x = ar1(2000, 0.8, seed=3)
        assert stats.newey_west(x, 20).se > 2 * stats.newey_west(x, 0).se

    def test_diebold_mariano_sign_and_significance(self):
        rng = np.random.default_rng(4)
        truth = rng.standard_normal(500)
        good = (truth - (truth + 0.1 * rng.standard_normal(500))) ** 2
        bad = (truth - rng.standard_normal(500)) ** 2
        test = stats.diebold_mariano(good, bad)
        assert test.t < -10 and test.p < 1e-6
        assert stats.diebold_mariano(bad, bad).mean == 0


class TestBootstrap:
    def test_indices_match_arch_circular_block_bootstrap(self):
        bootstrap = import_or_need("arch.bootstrap")
        x = ar1(97, 0.5, seed=5)
        reference = bootstrap.CircularBlockBootstrap(6, x, seed=np.random.default_rng(11))
        rng = np.random.default_rng(11)
        for (data,), _ in reference.bootstrap(25):
            np.testing.assert_array_equal(x[stats.block_bootstrap_indices(len(x), 6, rng)], data)

    def test_sharpe_interval_matches_arch_percentile_interval(self):
        bootstrap = import_or_need("arch.bootstrap")
        r = 0.001 + 0.01 * ar1(400, 0.2, seed=6) / 1.1
        block = stats.default_block(len(r))
        reference = bootstrap.CircularBlockBootstrap(block, r, seed=np.random.default_rng(3))
        sharpes = np.array([stats.sharpe(data) * math.sqrt(252) for (data,), _ in reference.bootstrap(500)])
        lo, hi = stats.bootstrap_sharpe_interval(r, 252, reps=500, seed=3)
        assert (lo, hi) == pytest.approx(tuple(np.quantile(sharpes, [0.025, 0.975])), rel=1e-9)
        assert lo < stats.sharpe(r, 252) < hi


class TestSharpe:
    def test_probabilistic_sharpe_for_normal_returns(self):
        r = np.random.default_rng(7).normal(0.05, 1.0, 5000)
        sr = r.mean() / r.std(ddof=1)
        expected = scipy_stats.norm.cdf(sr * math.sqrt(len(r) - 1) / math.sqrt(1 + sr**2 / 2))
        assert stats.probabilistic_sharpe(r) == pytest.approx(expected, abs=0.01)
        assert stats.probabilistic_sharpe(-r) == pytest.approx(1 - expected, abs=0.01)

    def test_deflated_sharpe_is_lower_with_more_trials(self):
        r = np.random.default_rng(8).normal(0.08, 1.0, 500)
        one = stats.deflated_sharpe(r, 1)
        assert one == pytest.approx(stats.probabilistic_sharpe(r))
        assert stats.deflated_sharpe(r, 10) < one
        assert stats.deflated_sharpe(r, 100) < stats.deflated_sharpe(r, 10)

    def test_expected_max_sharpe_matches_simulation(self):
        rng = np.random.default_rng(9)
        trials, variance = 50, 0.01
        maxima = rng.normal(0, math.sqrt(variance), (4000, trials)).max(axis=1)
        assert stats.expected_max_sharpe(trials, variance) == pytest.approx(maxima.mean(), rel=0.03)


class TestInformationCoefficients:
    def test_matches_scipy_per_date(self):
        rng = np.random.default_rng(10)
        scores, realised = rng.standard_normal((6, 12)), rng.standard_normal((6, 12))
        scores[2, :3] = np.nan
        scores[3, 5:8] = 1.0  # ties
        ic, rank_ic = stats.cross_sectional_ic(scores, realised)
        for d in range(6):
            ok = np.isfinite(scores[d])
            assert ic[d] == pytest.approx(scipy_stats.pearsonr(scores[d, ok], realised[d, ok])[0])
            assert rank_ic[d] == pytest.approx(scipy_stats.spearmanr(scores[d, ok], realised[d, ok])[0])

    def test_too_few_names_or_no_spread_give_nan(self):
        ic, rank_ic = stats.cross_sectional_ic(np.array([[1.0, 2.0, np.nan], [1.0, 1.0, 1.0]]),
                                               np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
        assert np.isnan(ic).all() and np.isnan(rank_ic).all()

    def test_oracle_signal_gets_a_large_significant_ic(self):
        rng = np.random.default_rng(11)
        future = rng.standard_normal((120, 30))
        signal = future + 2.0 * rng.standard_normal(future.shape)  # the future return seen through noise
        _, rank_ic = stats.cross_sectional_ic(signal, future)
        summary = stats.ic_summary(rank_ic)
        assert summary["mean"] > 0.3 and summary["t"] > 10 and summary["p"] < 1e-10 and summary["hit_rate"] > 0.9

    def test_random_signal_is_rarely_significant(self):
        rejections, seeds = 0, 400
        for seed in range(seeds):
            rng = np.random.default_rng([12, seed])
            _, rank_ic = stats.cross_sectional_ic(rng.standard_normal((100, 20)), rng.standard_normal((100, 20)))
            rejections += stats.ic_summary(rank_ic)["p"] < 0.05
        # the nominal 5%, with the sampling error of 400 seeds (binomial sd about 1.1 points)
        assert 0.02 <= rejections / seeds <= 0.09


class TestVolatility:
    def test_qlike_and_mse_are_minimised_by_the_true_variance(self):
        rng = np.random.default_rng(13)
        n, bars = 20000, 5
        variance = np.exp(rng.normal(np.log(1e-4), 0.7, n))  # per-bar variance changes from origin to origin
        returns = rng.standard_normal((n, bars)) * np.sqrt(variance)[:, None]
        records = pd.DataFrame({"rv_close": (returns**2).sum(axis=1), "var_scale": np.full(n, bars * 1e-4)})
        means = {}
        for factor in (0.7, 0.9, 1.0, 1.1, 1.4):
            frame = records.assign(var_forecast=factor * bars * variance)
            means[factor] = volatility.losses(frame, "rv_close").mean()
        constant = volatility.losses(records.assign(var_forecast=bars * variance.mean()), "rv_close").mean()
        for loss in ("qlike", "mse"):
            best = min(means, key=lambda f: means[f][loss])
            assert best == 1.0, (loss, {f: m[loss] for f, m in means.items()})
            assert means[1.0][loss] < constant[loss]

    def test_range_proxies_by_hand(self):
        bars = np.array([[100.0, 110.0, 95.0, 105.0], [105.0, 106.0, 99.0, 100.0]])
        out = volatility.realised_variances(bars, 98.0)
        hl, co = np.log(bars[:, 1] / bars[:, 2]), np.log(bars[:, 3] / bars[:, 0])
        assert out["rv_close"] == pytest.approx(np.log(105 / 98) ** 2 + np.log(100 / 105) ** 2)
        assert out["rv_parkinson"] == pytest.approx((hl**2).sum() / (4 * np.log(2)))
        assert out["rv_gk"] == pytest.approx((0.5 * hl**2 - (2 * np.log(2) - 1) * co**2).sum())

    def test_range_proxies_estimate_the_variance_of_a_random_walk(self):
        rng = np.random.default_rng(14)
        sigma, steps, bars = 0.01, 400, 2000  # each bar: a fine random walk of 400 steps
        paths = np.cumsum(rng.standard_normal((bars, steps)) * sigma / math.sqrt(steps), axis=1)
        paths = np.concatenate([np.zeros((bars, 1)), paths], axis=1)
        ohlc = np.exp(np.stack([paths[:, 0], paths.max(1), paths.min(1), paths[:, -1]], axis=1))
        for proxy in ("rv_parkinson", "rv_gk"):
            per_bar = np.mean([volatility.realised_variances(ohlc[i:i + 1], ohlc[i, 0])[proxy] for i in range(bars)])
            assert per_bar == pytest.approx(sigma**2, rel=0.1), proxy  # discrete paths bias ranges a little low

    def test_path_variance_and_mincer_zarnowitz(self):
        paths = np.array([[101.0, 102.0], [99.0, 99.0]])
        expected = np.mean([np.log(1.01) ** 2 + np.log(102 / 101) ** 2, np.log(0.99) ** 2])
        assert volatility.path_variance(paths, 100.0) == pytest.approx(expected)
        assert math.isnan(volatility.path_variance(paths[:1], 100.0))
        f = np.linspace(1, 2, 50)
        assert volatility.mincer_zarnowitz(f, 0.5 + 2 * f) == pytest.approx((0.5, 2.0, 1.0))

    def test_ewma_closed_form_equals_the_recursion(self):
        r = np.random.default_rng(15).standard_normal(300) * 0.01
        s2 = np.mean(r[:30] ** 2)
        for x in r:
            s2 = 0.94 * s2 + 0.06 * x**2
        assert volatility.ewma_variance(r) == pytest.approx(s2)

    def test_har_tracks_persistent_variance(self):
        rng = np.random.default_rng(16)
        calm, wild = rng.standard_normal(400) * 0.01, rng.standard_normal(60) * 0.03
        after_calm = volatility.har_variance(calm, 5)
        after_wild = volatility.har_variance(np.r_[calm, wild], 5)
        assert after_calm == pytest.approx(1e-4, rel=0.35)
        assert after_wild > 3 * after_calm
        assert math.isnan(volatility.har_variance(calm[:50], 5))

    def test_har_stays_within_the_history_after_one_extreme_bar(self):
        # 1,000 real daily returns (a crash among them), the 8th last replaced by an unadjusted 1:8 split (log 8):
        # the regression line extrapolates to 0.8 per bar, four times the history's highest month.
        closes = pd.read_csv(DATA / "bokeh_MSFT_1d.csv")["close"].to_numpy()
        returns = np.diff(np.log(closes))[-2000:-1000].copy()
        returns[-8] = np.log(8.0)
        rv = returns**2
        highest_month = max(rv[i:i + 22].mean() for i in range(len(rv) - 21))
        forecast = volatility.har_variance(returns, 24)
        assert 0 < forecast <= highest_month * (1 + 1e-12)


class TestProbability:
    def test_numbers_and_scores_by_hand(self):
        paths = np.array([[101.0, 103.0], [100.0, 99.0], [100.0, 102.0], [100.0, 96.0]])
        out = probability.origin_numbers(paths, 100.0, 102.5, threshold=0.025)
        assert out["p_up"] == 0.5 and out["o_up"] == 1.0
        assert out["p_move"] == 0.5 and out["o_move"] == 0.0  # |ln 1.025| < 0.025: no move beyond
        frame = probability.scores(pd.DataFrame([out]), "up")
        assert frame["brier"].iloc[0] == pytest.approx(0.25)
        assert frame["log_score"].iloc[0] == pytest.approx(-np.log(2.5 / 5))

    def test_reliability_bins_and_a_calibrated_forecast(self):
        rng = np.random.default_rng(17)
        p = rng.uniform(0, 1, 20000)
        records = pd.DataFrame({"series": "s", "origin": np.arange(len(p)), "method": "m", "p_up": p,
                                "o_up": (rng.uniform(0, 1, len(p)) < p).astype(float), "p_move": p,
                                "o_move": (rng.uniform(0, 1, len(p)) < 0.5).astype(float), "k_up": p * 10,
                                "k_move": p * 10, "n_paths": 10.0})
        table = probability.reliability(records)
        up = table[table["event"] == "up"]
        assert len(up) == 10 and up["count"].sum() == len(p)
        np.testing.assert_allclose(up["frequency"], up["mean_prob"], atol=0.03)
        move = table[table["event"] == "move"]
        assert abs(move["frequency"].iloc[0] - move["mean_prob"].iloc[0]) > 0.3  # unreliable: always 0.5
