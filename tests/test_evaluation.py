"""Walk-forward evaluation end to end on real bar files with the tiny parity checkpoints, and its CLI."""

from __future__ import annotations

import inspect
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos.cli import build_parser, main
from kronos.evaluation import EvaluationConfig, collect_series, evaluate
from kronos.evaluation.origins import plan_walk_origins
from kronos.stats.garch import garch_available

from .conftest import DATA, PARITY, need

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "kronos" / "examples_data"
GARCH = {"garch_t"} if garch_available() else set()


def test_the_garch_baseline_can_run_here():
    """Without arch the garch_t assertions of this file are left out: say so (and fail under CI=true)."""
    need(garch_available(), "needs arch for the garch_t baseline (pip install 'kronos-kline[garch]'); its "
                            "assertions in this file are left out")


BASELINES = {"persistence", "rw_drift", "gaussian_rw", "bootstrap", "ewma"} | GARCH
# har_rv: bars of a day or longer (the baselines see up to 1,000 returns before an origin, whatever the lookback)

FILES = [DATA / "bokeh_AAPL_1d.csv", DATA / "freqtrade_ETH-BTC_5min.csv", DATA / "backtesting_BTCUSD_1mo.csv"]
SETTINGS = dict(lookback=64, pred_len=8, sample_count=8, max_origins=3, seed=0)
FREQTRADE = [DATA / f"freqtrade_{pair}-BTC_5min.csv" for pair in ("ADA", "DASH", "ETC", "ETH", "LTC", "NXT")]
TINY = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "256"]


@pytest.fixture(scope="module")
def evaluation(tiny_predictor):
    return evaluate(FILES, tiny_predictor, model_name="parity-tiny", **SETTINGS)


class TestWalkForward:
    def test_every_origin_has_model_and_baselines(self, evaluation):
        records = evaluation.run.records
        methods = records.groupby(["series", "origin"])["method"].apply(frozenset)
        for (series, _), found in methods.items():
            assert found == {"kronos"} | BASELINES | ({"seasonal_naive"} if "5min" in series else {"har_rv"})
        assert records.groupby("series")["origin"].nunique().to_dict() == {
            "bokeh_AAPL_1d": 3, "freqtrade_ETH-BTC_5min": 3, "backtesting_BTCUSD_1mo": 3}

    def test_horizons_lie_in_the_held_out_tail(self, evaluation):
        for path in FILES:
            frame = pd.read_csv(path, parse_dates=["timestamps"])
            tail_start = frame["timestamps"].iloc[len(frame) - round(len(frame) * 0.2)]
            rows = evaluation.run.records[evaluation.run.records["series"] == path.stem]
            assert (rows["origin"] >= tail_start).all()
            assert (rows["history"] <= 64).all() and (rows["history"] >= 64).all()
            last_origin = frame.index[frame["timestamps"] == rows["origin"].max()][0]
            assert last_origin + 8 <= len(frame)

    def test_no_scored_bar_is_in_the_training_split(self, evaluation):
        from kronos.training import load_training_series, split_by_time

        splits = split_by_time(load_training_series(FILES, min_rows=2), val_fraction=0.0, test_fraction=0.2)
        records = evaluation.run.records
        for train in splits.train:
            first_scored = records.loc[records["series"] == train.name, "origin"].min()
            assert first_scored > pd.Timestamp(train.timestamps[-1])

    def test_model_numbers_are_in_range(self, evaluation):
        pooled = evaluation.pooled["kronos"]
        for metric in ("close_mae_rel", "logret_mae", "crps_rel", "vol_mae", "volume_mae_rel"):
            assert math.isfinite(pooled[metric]) and pooled[metric] >= 0
        for metric in ("direction_acc", "coverage_50", "coverage_80", "ohlc_break", "ohlc_break_mean"):
            assert 0 <= pooled[metric] <= 1
        assert pooled["n_origins"] == 9
        assert evaluation.pooled.loc["crps_rel", "gaussian_rw"] > 0
        assert math.isnan(evaluation.pooled.loc["coverage_80", "persistence"])  # a point forecast has no interval
        assert evaluation.run.timing["origins_per_second"] > 0

    def test_metric_lookup(self, evaluation):
        assert evaluation.metric("crps_rel", "gaussian_rw") == evaluation.pooled.loc["crps_rel", "gaussian_rw"]
        assert evaluation.metric("close_mae", series="bokeh_AAPL_1d") > 0
        with pytest.raises(KeyError, match="no 'crps_rel' for method 'arima'"):
            evaluation.metric("crps_rel", "arima")

    def test_targets_compare_with_the_best_baseline(self, evaluation):
        targets = evaluation.targets().set_index("target")
        scores = {b: evaluation.metric("crps_rel", b) for b in ("gaussian_rw", "bootstrap", *GARCH)}
        best = min(scores, key=scores.get)
        assert evaluation.best_baseline() == best
        crps = targets.loc[f"crps_rel at most best baseline ({best})"]
        assert crps["value"] == evaluation.metric("crps_rel") and crps["reference"] == scores[best]
        assert crps["met"] == (crps["value"] <= crps["reference"])
        ratio = targets.loc[f"crps_rel ratio to {best} at most 0.95"]
        assert ratio["value"] == pytest.approx(crps["value"] / crps["reference"])
        geo = targets.loc[f"geometric mean of per-series crps ratios to {best} below 1", "value"]
        assert geo == pytest.approx(evaluation.versus.loc[best, "geo_mean_ratio"])
        volume = targets.loc["volume_mae_rel below persistence"]
        assert volume["reference"] == evaluation.metric("volume_mae_rel", "persistence")
        assert targets.loc["coverage_80 within [0.75, 0.85]", "value"] == evaluation.metric("coverage_80")
        assert targets.loc["coverage_50 within [0.45, 0.55]", "value"] == evaluation.metric("coverage_50")
        assert evaluation.targets("arima").empty

    def test_paired_numbers_agree_with_the_records(self, evaluation):
        records = evaluation.run.records
        for baseline in ("gaussian_rw", "bootstrap", *GARCH):
            scores = records.pivot_table(index=["series", "origin"], columns="method", values="crps_rel")
            diff = scores["kronos"] - scores[baseline]
            row = evaluation.versus.loc[baseline]
            assert row["mean_diff"] == pytest.approx(diff.mean())
            assert row["two_se"] == pytest.approx(2 * diff.std(ddof=1) / math.sqrt(len(diff)))
            per_series = scores.groupby(level="series").mean()
            ratios = per_series["kronos"] / per_series[baseline]
            assert row["geo_mean_ratio"] == pytest.approx(math.exp(np.log(ratios).mean()))
        # the mean over horizon bars of the per-bar CRPS is the pooled CRPS
        steps = evaluation.crps_steps
        assert list(steps.index) == list(range(1, 9)) and list(steps.columns) == ["kronos", "gaussian_rw", "bootstrap",
                                                                                     *GARCH, "ewma", "har_rv"]
        np.testing.assert_allclose(steps.mean(), evaluation.pooled.loc["crps_rel", steps.columns])

    def test_same_inputs_and_seed_same_numbers(self, evaluation, tiny_predictor):
        again = evaluate(FILES, tiny_predictor, model_name="parity-tiny", **SETTINGS)
        pd.testing.assert_frame_equal(evaluation.run.records, again.run.records, check_exact=True)
        other = evaluate(FILES[:1], tiny_predictor, **dict(SETTINGS, seed=1, max_origins=1)).run.records
        first = evaluation.run.records.set_index(["origin", "method"]).loc[other.set_index(["origin", "method"]).index]
        assert not np.allclose(first["crps"], other["crps"].to_numpy(), equal_nan=True)

    def test_greedy_batched_equals_one_origin_at_a_time(self, tiny_predictor):
        # Greedy tokens do not depend on the batching; the dequantisation residuals are random draws, off here.
        settings = dict(SETTINGS, sample_count=1, top_k=1, max_origins=2, dequantise=False)
        batched = evaluate(FILES[:2], tiny_predictor, batch_size=8, **settings).run.records
        calls = []
        single = evaluate(FILES[:2], tiny_predictor, batch_size=1, progress=lambda *a: calls.append(a),
                          **settings).run.records
        assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
        model = [r[r["method"] == "kronos"].reset_index(drop=True) for r in (batched, single)]
        pd.testing.assert_frame_equal(model[0], model[1], rtol=1e-5)

    def test_one_path_runs_still_write_their_report(self, tiny_predictor, tmp_path):
        settings = dict(SETTINGS, sample_count=1, top_k=1, max_origins=1, dequantise=False)
        evaluate(FILES[:1], tiny_predictor, **settings).write(tmp_path, plots=False)
        markdown = (tmp_path / "summary.md").read_text()
        assert "1 sample paths" in markdown and "perfectly calibrated" not in markdown


class TestOrigins:
    def test_series_on_one_calendar_share_origins_for_rank_ic(self):
        result = evaluate(FREQTRADE, None, lookback=64, pred_len=12, sample_count=50, max_origins=6)
        shared = result.run.records.groupby("origin")["series"].nunique()
        assert (shared >= 5).sum() >= 3
        table = result.rank_ic.set_index("method")
        assert table.loc["rw_drift", "timestamps"] == (shared >= 5).sum()
        assert -1 <= table.loc["rw_drift", "mean_ic"] <= 1
        assert math.isnan(table.loc["persistence", "mean_ic"])  # a zero forecast return has no ranking

    def test_stride_cap_and_tail(self):
        series = collect_series(FILES[:1])
        n = len(series[0].bars)
        config = EvaluationConfig(lookback=64, pred_len=10, stride=5, max_origins=None, tail_fraction=0.1)
        origins, skipped = plan_walk_origins(series, config)
        indices = [o.index for o in origins]
        assert not skipped and np.all(np.diff(indices) == 5)
        assert indices[0] >= n - round(n * 0.1) and indices[-1] == n - 10  # the anchor is the last possible origin
        capped, _ = plan_walk_origins(series, EvaluationConfig(lookback=64, pred_len=10, stride=5, max_origins=4,
                                                          tail_fraction=0.1))
        assert len(capped) == 4 and capped[-1].index == n - 10
        assert len(set(np.diff([o.index for o in capped]))) == 1  # evenly thinned

    def test_too_short_series_is_skipped_with_reason(self):
        result = evaluate(FILES[:1] + [DATA / "backtesting_BTCUSD_1mo.csv"], None, lookback=64, pred_len=40,
                          max_origins=2)
        assert "backtesting_BTCUSD_1mo" in result.run.skipped
        assert "no horizon of 40 bars" in result.run.skipped["backtesting_BTCUSD_1mo"]
        assert set(result.run.records["series"]) == {"bokeh_AAPL_1d"}

    def test_no_origin_anywhere_is_an_error(self):
        with pytest.raises(ValueError, match="no forecast origins in any series"):
            evaluate([DATA / "backtesting_BTCUSD_1mo.csv"], None, pred_len=100)

    @pytest.mark.parametrize(("settings", "message"), [
        ({"tail_fraction": 1.5}, r"tail_fraction must be in \(0, 1\], got 1.5"),
        ({"pred_len": 0}, "pred_len must be an integer >= 1, got 0"),
        ({"vol_window": 1}, "vol_window must be >= 2"),
        ({"calibrate": "yes"}, "calibrate must be True, False or None"),
    ])
    def test_bad_settings(self, settings, message):
        with pytest.raises(ValueError, match=message):
            EvaluationConfig(**settings)

    def test_unknown_setting_is_a_type_error(self):
        with pytest.raises(TypeError, match="unknown setting.*horizon"):
            evaluate(FILES[:1], None, horizon=5)

    def test_frames_need_timestamps(self):
        frame = pd.read_csv(FILES[0]).drop(columns="timestamps")
        with pytest.raises(ValueError, match=r"aapl: no timestamp column \(looked for timestamps, .*\); columns are "
                                             r"open, .*; name it with time_column="):
            evaluate({"aapl": frame}, None)


@pytest.mark.slow
class TestBaselinesOnExamples:
    """The quant baselines end to end on the bundled example series (real daily closes)."""

    FILES = [EXAMPLES / "AAPL_1d.csv", EXAMPLES / "MSFT_1d.csv", EXAMPLES / "FB_1d.csv"]

    def test_model_against_every_baseline(self, tiny_predictor):
        result = evaluate(self.FILES, tiny_predictor, lookback=64, pred_len=6, sample_count=16, max_origins=2)
        # daily series: HAR-RV runs too (the baselines see up to 1,000 returns before an origin)
        assert set(result.run.records["method"]) == {"kronos", "har_rv"} | BASELINES
        assert set(result.versus.index) == BASELINES | {"har_rv"} and (result.versus["n_series"] == 3).all()
        pooled = result.pooled
        for method in ("kronos", "gaussian_rw", "bootstrap", *GARCH):
            assert pooled.loc["crps_rel", method] > 0 and pooled.loc["pinball_rel", method] > 0
            assert 0 <= pooled.loc["coverage_50", method] <= pooled.loc["coverage_80", method] <= 1
        assert len(result.crps_steps) == 6 and (result.paired["n_origins"] > 0).all()
        if GARCH:
            assert result.run.timing["garch_t_fallbacks"] == 0 and result.run.timing["seconds_garch_t"] > 0

    def test_without_arch_garch_is_skipped_with_one_message(self, tiny_predictor, monkeypatch, caplog, tmp_path):
        monkeypatch.setitem(sys.modules, "arch", None)  # what an environment without the package looks like
        with caplog.at_level(logging.WARNING, logger="kronos.evaluation"):
            result = evaluate(self.FILES[:2], tiny_predictor, lookback=64, pred_len=6, sample_count=8, max_origins=2)
        messages = [r.getMessage() for r in caplog.records if r.name == "kronos.evaluation"]
        assert len(messages) == 1 and "garch_t baseline not run" in messages[0] and "arch" in messages[0]
        assert "garch_t" not in set(result.run.records["method"]) and "garch_t" in result.run.notes
        assert "garch_t_fallbacks" not in result.run.timing
        assert result.best_baseline() in set(result.run.records["method"]) - {"garch_t", "kronos"}
        result.write(tmp_path, plots=False)
        assert "`garch_t` not run" in (tmp_path / "summary.md").read_text()
        assert "not run" in json.loads((tmp_path / "metrics.json").read_text())["notes"]["garch_t"]


class TestSamplingSettings:
    def test_unset_settings_are_not_passed(self):
        assert EvaluationConfig().sampling == {}
        assert EvaluationConfig(T=0.5, top_k=0, calibrate=False).sampling == {"T": 0.5, "top_k": 0, "calibrate": False}

    @pytest.mark.slow
    def test_unset_means_the_predictors_defaults(self, tiny_predictor):
        defaults = {name: p.default for name, p in inspect.signature(tiny_predictor.forecast_batch).parameters.items()
                    if name in ("T", "top_k", "top_p")}
        settings = dict(SETTINGS, max_origins=1)
        unset = evaluate(FILES[:2], tiny_predictor, **settings).run.records
        explicit = evaluate(FILES[:2], tiny_predictor, **settings, **defaults).run.records
        pd.testing.assert_frame_equal(unset, explicit, check_exact=True)
        other = evaluate(FILES[:2], tiny_predictor, **dict(settings, T=0.3)).run.records
        assert not np.allclose(unset.loc[unset["method"] == "kronos", "crps"],
                               other.loc[other["method"] == "kronos", "crps"])

    def test_command_line_flags_default_to_unset(self):
        parser = build_parser()
        args = parser.parse_args(["evaluate", "a.csv", "--out", "ev"])
        assert (args.temperature, args.top_k, args.top_p, args.calibrate) == (None, None, None, None)
        assert parser.parse_args(["evaluate", "a.csv", "--out", "ev", "--calibrate"]).calibrate is True
        assert parser.parse_args(["evaluate", "a.csv", "--out", "ev", "--no-calibrate", "-T", "0.7"]).calibrate is False


class TestReport:
    def test_files_exist_and_parse(self, evaluation, tmp_path):
        written = evaluation.write(tmp_path / "out")
        names = {p.name for p in written}
        assert names == {"summary.md", "summary.csv", "records.csv", "metrics.json", "fan_charts.png",
                         "calibration.png", "metrics_by_series.png", "reliability.png"}
        numbers = json.loads((tmp_path / "out" / "metrics.json").read_text())
        assert numbers["pooled"]["kronos"]["crps_rel"] == pytest.approx(evaluation.metric("crps_rel"))
        assert numbers["per_series"]["bokeh_AAPL_1d"]["persistence"]["n_origins"] == 3
        assert numbers["config"]["lookback"] == 64 and numbers["model"] == "parity-tiny"
        assert numbers["pooled"]["persistence"]["coverage_80"] is None  # NaN written as null
        summary = pd.read_csv(tmp_path / "out" / "summary.csv")
        assert set(summary["method"]) == {"kronos", "seasonal_naive", "har_rv"} | BASELINES
        assert len(pd.read_csv(tmp_path / "out" / "records.csv")) == len(evaluation.run.records)
        markdown = (tmp_path / "out" / "summary.md").read_text()
        methods = " | ".join(["kronos", "persistence", "rw_drift", "gaussian_rw", "bootstrap", *GARCH, "ewma",
                              "har_rv", "seasonal_naive"])
        assert f"| metric | {methods} | unit |" in markdown
        assert "break high >= max(open, close)" in markdown and "## Targets (pooled)" in markdown
        paths = evaluation.run.config.sample_count
        assert (f"From {paths} paths even a perfectly calibrated forecast's intervals cover about "
                f"{0.8 * (paths - 1) / (paths + 1):.1%} (80%)") in markdown
        for section in ("## The model against each baseline", "## CRPS by horizon step", "## Paired CRPS per series"):
            assert section in markdown
        assert [t["target"] for t in numbers["targets"]][0].startswith("crps_rel at most best baseline")
        assert numbers["versus"]["bootstrap"]["mean_diff"] == pytest.approx(evaluation.versus.loc["bootstrap",
                                                                                                  "mean_diff"])
        assert set(numbers["paired"]["gaussian_rw"]) == {"bokeh_AAPL_1d", "freqtrade_ETH-BTC_5min",
                                                         "backtesting_BTCUSD_1mo", "ALL"}
        assert len(numbers["crps_by_step"]["bootstrap"]) == 8 and numbers["notes"] == {}
        for name in ("fan_charts.png", "calibration.png", "metrics_by_series.png", "reliability.png"):
            assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not list((tmp_path / "out").glob(".*.tmp"))

    def test_volatility_and_probability_numbers_are_carried(self, evaluation, tmp_path):
        evaluation.write(tmp_path / "out", plots=False)
        numbers = json.loads((tmp_path / "out" / "metrics.json").read_text())
        with_paths = {"kronos", "gaussian_rw", "bootstrap", "ewma", "har_rv"} | GARCH
        assert {row["method"] for row in numbers["volatility"]} == with_paths
        assert {row["proxy"] for row in numbers["volatility"]} == {"rv_close", "rv_parkinson", "rv_gk"}
        tests = evaluation.volatility_tests
        assert set(tests["baseline"]) == with_paths - {"kronos"} and len(numbers["volatility_tests"]) == len(tests)
        assert tests["dates"].max() == evaluation.run.records["origin"].nunique()  # one difference per date
        assert {(r["method"], r["event"]) for r in numbers["probability"]} == {(m, e) for m in with_paths
                                                                               for e in ("up", "move")}
        for row in numbers["probability"]:
            assert 0 <= row["brier"] <= 1 and row["log_score"] > 0
        counts = evaluation.reliability.groupby(["method", "event"])["count"].sum()
        origins = evaluation.probability.set_index(["method", "event"])["origins"]
        assert counts.sort_index().to_dict() == origins.sort_index().to_dict()
        markdown = (tmp_path / "out" / "summary.md").read_text()
        for section in ("## Volatility forecasts", "## Probabilities", "Diebold–Mariano", "nw_t"):
            assert section in markdown

    def test_out_must_not_be_a_file(self, evaluation, tmp_path):
        (tmp_path / "taken").write_text("x")
        with pytest.raises(ValueError, match="is an existing file"):
            evaluation.write(tmp_path / "taken")


class TestCommandLine:
    def test_evaluate_writes_report_and_prints_table(self, tmp_path, capsys):
        rc = main(["evaluate", str(FILES[0]), str(FILES[1]), *TINY, "--lookback", "64", "--pred-len", "8",
                   "--samples", "4", "--origins", "2", "--out", str(tmp_path / "ev"), "--no-plots", "--quiet"])
        out = capsys.readouterr()
        assert rc == 0 and out.err == ""
        assert out.out.startswith("| metric | kronos | persistence")
        numbers = json.loads((tmp_path / "ev" / "metrics.json").read_text())
        assert numbers["config"]["max_origins"] == 2 and numbers["pooled"]["kronos"]["n_origins"] == 4
        assert not (tmp_path / "ev" / "fan_charts.png").exists()

    def test_folder_argument_and_subprocess(self, tmp_path):
        folder = tmp_path / "data"
        folder.mkdir()
        for path in FREQTRADE[:2]:
            (folder / path.name).write_bytes(path.read_bytes())
        done = subprocess.run([sys.executable, "-m", "kronos.cli", "evaluate", str(folder), "--baselines-only",
                               "--lookback", "64", "--pred-len", "6", "--origins", "3", "--out", str(tmp_path / "ev")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        numbers = json.loads((tmp_path / "ev" / "metrics.json").read_text())
        assert sorted(numbers["series"]) == ["freqtrade_ADA-BTC_5min", "freqtrade_DASH-BTC_5min"]
        assert "kronos" not in numbers["pooled"] and (tmp_path / "ev" / "calibration.png").is_file()

    @pytest.mark.parametrize(("extra", "message"), [
        (["missing.csv"], "missing.csv: no such file or folder"),
        ([str(FILES[0]), "--tail-fraction", "0"], "tail_fraction must be in (0, 1], got 0.0"),
        ([str(FILES[0]), "--model", str(PARITY / "model")], "--tokenizer is required"),
        ([str(FILES[0]), "--pred-len", "700", "--baselines-only"], "no forecast origins in any series"),
    ])
    def test_bad_input_exits_2_with_one_line(self, extra, message, tmp_path, capsys):
        rc = main(["evaluate", *extra, "--out", str(tmp_path / "ev"), "--lookback", "64"])
        err = capsys.readouterr().err
        assert rc == 2
        assert err.count("\n") == 1 and err.startswith("kronos evaluate: error: ")
        assert message in err
        assert not (tmp_path / "ev").exists()

    def test_file_without_timestamps(self, tmp_path, capsys):
        bad = tmp_path / "bars.csv"
        pd.read_csv(FILES[0]).rename(columns={"timestamps": "when"}).to_csv(bad, index=False)
        rc = main(["evaluate", str(bad), "--baselines-only", "--out", str(tmp_path / "ev")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1
        assert "bars.csv: no timestamp column (looked for timestamps" in err
        assert "columns are when, open" in err and err.endswith("; name it with --time-column\n")
        rc = main(["evaluate", str(bad), "--time-column", "when", "--baselines-only", "--lookback", "64",
                   "--out", str(tmp_path / "ev")])
        assert rc == 0, capsys.readouterr().err

    def test_out_is_a_file(self, tmp_path, capsys):
        (tmp_path / "taken").write_text("x")
        rc = main(["evaluate", str(FILES[0]), "--baselines-only", "--out", str(tmp_path / "taken")])
        assert rc == 2 and "--out" in capsys.readouterr().err
