"""kronos.backtest on real series: no look-ahead, hand-computed costs, perfect foresight, seeded random signal,
the top-k-dropout turnover limit, the report files and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kronos import backtest
from kronos.backtest import BacktestConfig, Strategy
from kronos.backtest.signals import RISK_SIGNALS
from kronos.data.tables import Series, load_series
from kronos.stats.garch import garch_available

from .conftest import DATA, PARITY

STOCKS = [DATA / f"bokeh_{name}_1d.csv" for name in ("AAPL", "GOOG", "IBM", "MSFT")]
CRYPTO = sorted(DATA.glob("freqtrade_*-BTC_5min.csv"))
SMALL = dict(lookback=96, pred_len=5, stride=5, sample_count=4, max_dates=6, k=2, n_drop=1)
RISK = [name for name in RISK_SIGNALS if name != "garch_scaled" or garch_available()]


@pytest.fixture(scope="module")
def stocks() -> list[Series]:
    return load_series(STOCKS)


def _perturbed(series: list[Series], after: pd.Timestamp, seed: int = 1) -> list[Series]:
    """The series with every bar strictly after ``after`` scaled by a random factor (prices and volume)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in series:
        bars = s.bars.copy()
        later = s.timestamps > after
        bars[later, :4] *= rng.uniform(0.5, 1.5, (later.sum(), 1)).astype(bars.dtype)
        bars[later, 4:] *= rng.uniform(0.5, 2.0, (later.sum(), 1)).astype(bars.dtype)
        out.append(Series(s.name, bars, s.timestamps, s.stamps, s.id_column, s.source))
    return out


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return bool(np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True))


@pytest.mark.parametrize("strategy,max_dates", [
    ("topk_dropout", 4), pytest.param("long_short", 8, marks=pytest.mark.slow)])
def test_no_look_ahead(stocks, tiny_predictor, one_thread, strategy, max_dates):
    """Changing every bar after a rebalance date changes no score and no position on or before it."""
    config = BacktestConfig(**{**SMALL, "strategy": strategy, "max_dates": max_dates})
    first = backtest.run(stocks, tiny_predictor, config)
    dates = first.plan.dates
    cut = dates[len(dates) // 2]
    second = backtest.run(_perturbed(stocks, cut), tiny_predictor, config)
    assert list(second.plan.dates) == list(dates)
    changed_later = False
    for name in first.scores:
        assert _same(first.scores[name].loc[:cut], second.scores[name].loc[:cut]), name
        assert _same(first.weights[name].loc[:cut], second.weights[name].loc[:cut]), name
        changed_later |= not _same(first.scores[name].loc[cut:].iloc[1:], second.scores[name].loc[cut:].iloc[1:])
    assert set(backtest.MODEL_SIGNALS) <= set(first.scores)
    assert changed_later  # the perturbation did reach the later dates


def test_costs_two_assets_three_dates_by_hand(stocks):
    """Long both, then only the first, then only the second, at 10 + 5 bps: equity computed here from the
    files' open prices with the formulas written out."""
    two = stocks[:2]
    chosen = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])
    config = BacktestConfig(strategy="long_flat", max_dates=3, commission_bps=10, slippage_bps=5)
    result = backtest.run(two, config=config, extra_signals={"chosen": lambda plan: chosen})
    plan = result.plan
    assert plan.eligible.all()
    opens = [pd.read_csv(path, parse_dates=["timestamps"]).set_index("timestamps")["open"] for path in STOCKS[:2]]
    times = list(plan.dates) + [plan.end]
    r = np.array([[o[times[d + 1]] / o[times[d]] - 1 for o in opens] for d in range(3)])  # (date, asset)
    c = 15e-4
    e1 = (1 - c * 1.0) * (1 + 0.5 * r[0, 0] + 0.5 * r[0, 1])
    grow = 1 + 0.5 * r[0, 0] + 0.5 * r[0, 1]
    a_drift, b_drift = 0.5 * (1 + r[0, 0]) / grow, 0.5 * (1 + r[0, 1]) / grow
    turnover1 = abs(0.5 - a_drift) + b_drift
    e2 = e1 * (1 - c * turnover1) * (1 + 0.5 * r[1, 0])
    a_drift2 = 0.5 * (1 + r[1, 0]) / (1 + 0.5 * r[1, 0])
    turnover2 = a_drift2 + 0.5
    e3 = e2 * (1 - c * turnover2) * (1 + 0.5 * r[2, 1])
    np.testing.assert_allclose(result.equity["chosen"].to_numpy(), [1, e1, e2, e3], rtol=1e-6)  # float32 bars
    np.testing.assert_allclose(result.weights["chosen"].to_numpy(), [[0.5, 0.5], [0.5, 0], [0, 0.5]])
    row = result.metrics.loc["chosen"]
    assert row["turnover"] == pytest.approx((1 + turnover1 + turnover2) / 3, rel=1e-6)
    assert row["costs"] == pytest.approx(c * (1 + turnover1 + turnover2), rel=1e-6)
    without = backtest.run(two, config=BacktestConfig(strategy="long_flat", max_dates=3, commission_bps=0),
                           extra_signals={"chosen": lambda plan: chosen})
    gross = (1 + 0.5 * r[0, 0] + 0.5 * r[0, 1]) * (1 + 0.5 * r[1, 0]) * (1 + 0.5 * r[2, 1])
    assert without.equity["chosen"].iloc[-1] == pytest.approx(gross, rel=1e-6)


@pytest.mark.parametrize("strategy,k,n_drop,model", [
    ("long_short", 1, 1, False), ("topk_dropout", 2, 2, False),
    pytest.param("long_short", 1, 1, True, marks=pytest.mark.slow),
    pytest.param("topk_dropout", 2, 2, True, marks=pytest.mark.slow)])
def test_perfect_foresight_beats_every_signal(stocks, tiny_predictor, one_thread, strategy, k, n_drop, model):
    """A signal that knows each period's return beats the model's signals, the baselines and buy-and-hold."""
    config = BacktestConfig(**{**SMALL, "strategy": strategy, "k": k, "n_drop": n_drop,
                               "max_dates": 8 if model else 40})
    result = backtest.run(stocks, tiny_predictor if model else None, config,
                          extra_signals={"oracle": lambda plan: plan.realised})
    table = result.metrics
    others = table.drop(index="oracle")
    signals = (len(backtest.MODEL_SIGNALS) if model else 0) + len(backtest.BASELINE_SIGNALS) + len(RISK)
    assert len(others) == signals + 1
    assert (table.loc["oracle", "total_return"] > others["total_return"]).all()
    assert (table.loc["oracle", "sharpe"] > others["sharpe"]).all()
    assert table.loc["oracle", "rank_ic"] == pytest.approx(1.0)


def test_random_signal_is_repeatable_with_its_seed(stocks):
    one = backtest.run(stocks, seed=3, max_dates=10, k=2)
    two = backtest.run(stocks, seed=3, max_dates=10, k=2)
    other = backtest.run(stocks, seed=4, max_dates=10, k=2)
    assert _same(one.scores["random"], two.scores["random"])
    assert _same(one.equity, two.equity)
    assert not _same(one.scores["random"], other.scores["random"])


@pytest.mark.parametrize("k,n_drop", [(3, 1), (3, 2), (2, 0)])
def test_topk_dropout_turnover_within_its_limit(k, n_drop):
    """Real 5-minute pairs on one calendar: after the first date at most n_drop names change per rebalance,
    kept names keep their drifted weight, so turnover is what the swaps trade."""
    series = load_series(CRYPTO)
    result = backtest.run(series, pred_len=6, stride=6, max_dates=30, k=k, n_drop=n_drop, min_names=len(series))
    plan = result.plan
    for name in backtest.BASELINE_SIGNALS:
        w = result.weights[name].to_numpy()
        assert (np.count_nonzero(w, axis=1) == k).all()
        assert np.allclose(w.sum(axis=1), 1)
        for d in range(1, len(w)):
            before, after = set(np.flatnonzero(w[d - 1])), set(np.flatnonzero(w[d]))
            assert len(after - before) <= n_drop and len(before - after) <= n_drop
            grown = w[d - 1] * (1 + plan.realised[d - 1])
            drifted = grown / grown.sum()
            kept = sorted(before & after)
            np.testing.assert_allclose(w[d, kept], drifted[kept], rtol=1e-12)
            sold = sorted(before - after)
            assert result.metrics is not None
            swap = drifted[sold].sum() + w[d, sorted(after - before)].sum()
            assert np.abs(w[d] - drifted).sum() == pytest.approx(swap, abs=1e-12)
            assert swap <= 2 * n_drop * drifted.max() + 1e-12


def test_strategy_settings_are_checked():
    with pytest.raises(ValueError, match="strategy must be one of"):
        Strategy("momentum")
    with pytest.raises(ValueError, match="n_drop must be an integer >= 0"):
        BacktestConfig(n_drop=-1)
    with pytest.raises(ValueError, match="commission_bps"):
        BacktestConfig(commission_bps=-1)
    with pytest.raises(ValueError, match="series is empty"):
        backtest.run([])


def test_single_series_threshold_strategies(stocks):
    aapl = stocks[:1]
    for kind in ("long_flat", "long_short_threshold"):
        result = backtest.run(aapl, strategy=kind, max_dates=12)
        w = result.weights["momentum"].to_numpy()[:, 0]
        momentum = result.scores["momentum"].to_numpy()[:, 0]
        expected = np.where(momentum > 0, 1.0, 0.0 if kind == "long_flat" else -1.0)
        np.testing.assert_array_equal(w, expected)
        hold = result.weights[backtest.BENCHMARK].to_numpy()[:, 0]
        assert (hold == 1).all()
        bars = pd.read_csv(STOCKS[0], parse_dates=["timestamps"]).set_index("timestamps")["open"]
        growth = bars[result.equity.index[-1]] / bars[result.equity.index[0]]
        assert result.equity[backtest.BENCHMARK].iloc[-1] == pytest.approx(growth * (1 - 5e-4), rel=1e-6)


def test_report_files(stocks, tmp_path):
    result = backtest.run(stocks, max_dates=8, k=2)
    written = {p.name for p in result.write(tmp_path / "out")}
    assert written == {"report.md", "metrics.json", "equity.csv", "ic.csv", "chart.png", "chart.html", "ic.png"}
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(data["metrics"]) == {*backtest.BASELINE_SIGNALS, *RISK, backtest.BENCHMARK}
    assert set(data["statistics"]) == {"ic", "sharpe", "ic_decay", "random", "random_band"}
    report = (tmp_path / "out" / "report.md").read_text()
    for section in ("## Information coefficients", "## RankIC decay", "## Sharpe ratios by book and cost",
                    "## Against random signals"):
        assert section in report
    assert (tmp_path / "out" / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert "| momentum |" in (tmp_path / "out" / "report.md").read_text()
    equity = pd.read_csv(tmp_path / "out" / "equity.csv", index_col=0)
    assert len(equity) == 9 and (equity.iloc[0] == 1).all()


def test_command_line_on_a_long_table(tmp_path, capsys):
    frames = [pd.read_csv(path).assign(symbol=path.stem) for path in STOCKS]
    long = tmp_path / "panel.csv"
    pd.concat(frames).to_csv(long, index=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "kronos.cli", "backtest", str(long), "--baselines-only", "--k", "2",
                           "--dates", "6", "--out", str(tmp_path / "bt"), "--no-chart"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| buy_and_hold |" in done.stdout
    assert (tmp_path / "bt" / "report.md").exists() and not (tmp_path / "bt" / "chart.png").exists()
    from kronos.cli import main

    argv = ["backtest", str(long), "--baselines-only", "--commission-bps", "-2", "--out", str(tmp_path / "b")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--commission-bps -2.0" in err and len(err.strip().splitlines()) == 1


def test_command_line_passes_sampling_settings_to_the_model(tmp_path, one_thread):
    import json

    from kronos.cli import main

    argv = ["backtest", *map(str, STOCKS[:3]), "--model", str(PARITY / "model"),
            "--tokenizer", str(PARITY / "tokenizer"),
            "--max-context", "256", "--lookback", "64", "--pred-len", "3", "--samples", "2", "--dates", "2", "--k", "1",
            "--top-p", "0.9", "--no-combine", "--no-chart", "-q", "--out", str(tmp_path / "bt")]
    assert main(argv) == 0
    config = json.loads((tmp_path / "bt" / "metrics.json").read_text())["config"]
    assert config["combine"] is False and config["top_p"] == 0.9 and config["calibrate"] is None


@pytest.fixture(scope="module")
def long_run(stocks):
    """Every rebalance date of the four stocks' tails (baselines, and a noisy oracle that sees the return)."""
    def oracle(plan):
        noise = np.random.default_rng(5).standard_normal(plan.realised.shape) * np.nanstd(plan.realised)
        return plan.realised + noise

    return backtest.run(stocks, max_dates=None, k=1, lookback=96, pred_len=5, stride=5,
                        extra_signals={"oracle": oracle})


def test_statistics_tell_an_informed_signal_from_luck(long_run):
    stats = long_run.statistics
    dates = len(long_run.plan.dates)
    assert dates > 100
    ic = stats["ic"]
    assert ic.loc["oracle", "rank_ic_t"] > 4 and ic.loc["oracle", "rank_ic_p"] < 1e-4
    assert ic.loc["oracle", "rank_ic_hit_rate"] > 0.55 and ic.loc["oracle", "rank_ic_dates"] == dates
    assert ic.loc["random", "rank_ic_p"] > 0.05
    sharpe = stats["sharpe"].set_index(["signal", "book", "cost_bps"])
    best = sharpe.loc[("oracle", "long_short", 5.0)]
    assert best["sharpe_lo"] > 0 and best["psr"] > 0.99 and 0.9 < best["dsr"] <= best["psr"]
    assert best["trials"] == len(long_run.scores)
    for signal in long_run.scores:  # costs only take away
        for book in ("long_short", "long_only"):
            values = [sharpe.loc[(signal, book, c), "sharpe"] for c in (0.0, 5.0, 10.0, 20.0)]
            assert values == sorted(values, reverse=True)
    random = stats["random"]
    assert random.loc["oracle", "random_p"] == 0 and random.attrs["seeds"] == 200
    assert random.attrs["random_sharpe_q5"] < random.attrs["random_sharpe_q95"]
    band = stats["random_band"]
    assert band.index.equals(long_run.equity.index) and (band["q5"] <= band["q95"]).all()
    decay = stats["ic_decay"].set_index(["signal", "horizon"])["rank_ic"]
    assert decay[("oracle", 5)] > decay[("oracle", 1)] > 0  # the oracle knows the 5-bar return best


def test_ic_is_the_shared_cross_sectional_one(long_run):
    from kronos.stats.significance import cross_sectional_ic

    scores = np.where(long_run.plan.eligible, long_run.scores["momentum"].to_numpy(), np.nan)
    ic, rank_ic = cross_sectional_ic(scores, long_run.plan.realised)
    np.testing.assert_array_equal(long_run.rank_ic["momentum"].to_numpy(), rank_ic)
    np.testing.assert_array_equal(long_run.ic["momentum"].to_numpy(), ic)
