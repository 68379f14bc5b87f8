"""The command line and training against hostile conditions: unwritable outputs, absurd options, empty
inputs, mismatched checkpoints and the temp files of a killed run. Real console script, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kronos.forecasting.predictor import KronosPredictor
from kronos.model.network import Kronos
from kronos.model.tokenizer import KronosTokenizer

from .conftest import DATA, PARITY

FB = DATA / "bokeh_FB_1d.csv"
TINY_ARGS = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "256"]
KRONOS = [sys.executable, "-m", "kronos.cli"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*KRONOS, *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize("target, words", [
    ("/sys/kronos-forecast.csv", "cannot write in /sys"),  # a read-only file system, even for root
    ("/proc/kronos-forecast.csv", "cannot write in /proc"),
])
def test_an_unwritable_output_fails_before_the_forecast_in_one_line(target, words):
    err = one_line_error(run_cli("forecast", str(FB), "--pred-len", "2", "--samples", "2", *TINY_ARGS,
                                 "--out", target))
    assert f"--out {target}: {words}" in err and "read 196 bars" not in err  # before reading or forecasting


@pytest.mark.parametrize("command", ["evaluate", "backtest"])
def test_a_report_folder_that_is_an_existing_file_is_one_line(command, tmp_path):
    target = tmp_path / "report"
    target.write_text("keep me")
    err = one_line_error(run_cli(command, str(FB), *TINY_ARGS, "--out", str(target)))
    assert f"--out {target} is an existing file; give a folder" in err
    assert target.read_text() == "keep me"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_for_a_csv_output_is_one_line(tmp_path):
    out = tmp_path / "forecast.csv"
    os.symlink("/dev/full", out)
    err = one_line_error(run_cli("forecast", str(FB), "--pred-len", "2", "--samples", "2", *TINY_ARGS, "-q",
                                 "--out", str(out)))
    assert f"--out {out}: could not write: No space left on device" in err
    assert Path("/dev/full").exists() and not Path("/dev/full").is_file()  # the device was written, not replaced


@pytest.mark.parametrize("args, words", [
    (["-T", "1e-300"], "T (temperature) must be at least 0.001"),
    (["-T", "nan"], "T (temperature) must be at least 0.001"),
])
def test_a_tiny_temperature_is_one_line(args, words):
    assert words in one_line_error(run_cli("forecast", str(FB), "--pred-len", "2", *args, *TINY_ARGS))


def test_pred_len_has_a_documented_ceiling():
    result = run_cli("forecast", str(FB), "--pred-len", "100000", *TINY_ARGS)
    assert result.returncode == 2 and "expected at most 4096 bars, got 100000" in result.stderr
    assert "Traceback" not in result.stderr
    assert "1 to 4096" in run_cli("forecast", "--help").stdout


def test_a_header_only_file_says_it_has_no_data_rows(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamps,open,high,low,close,volume\n")
    err = one_line_error(run_cli("forecast", str(empty), *TINY_ARGS))
    assert f"{empty}: has no data rows" in err


def test_a_tokenizer_of_other_bit_widths_is_refused_naming_both():
    model = Kronos.from_pretrained(PARITY / "model")  # 6 + 6 bit tokens
    for change, words in (({"s1_bits": 10}, "model s1_bits=6, tokenizer s1_bits=10"),
                          ({"s2_bits": 10}, "model s2_bits=6, tokenizer s2_bits=10"),
                          ({"d_in": 5}, "tokenizer d_in=5")):
        config = {**KronosTokenizer.from_pretrained(PARITY / "tokenizer").config.to_dict(), **change}
        tokenizer = KronosTokenizer(**config)
        with pytest.raises(ValueError, match=words):
            KronosPredictor(model, tokenizer, device="cpu")


def train_command(out: Path) -> list[str]:
    return [*KRONOS, "train", "--data", str(DATA / "bokeh_MSFT_1d.csv"), "--tokenizer", str(PARITY / "tokenizer"),
            "--out", str(out), "--lookback", "32", "--horizon", "8", "--batch-size", "8", "--max-steps", "2",
            "--save-every", "1", "--eval-every", "2", "--val-windows", "8", "--device", "cpu", "--no-progress",
            "--model-config", "d_model=16", "--model-config", "n_heads=2", "--model-config", "ff_dim=32",
            "--model-config", "n_layers=1"]


def test_training_removes_the_temp_files_of_a_killed_run_at_start_and_on_resume(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    leftover = out / ".checkpoint.pt.x7q.tmp"
    leftover.write_bytes(b"\0" * 4096)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(train_command(out), capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not leftover.exists() and f"removed {leftover}" in first.stderr
    (out / ".final.tmp").mkdir()
    (out / ".final.tmp" / "model.safetensors").write_bytes(b"\0" * 4096)
    leftover.write_bytes(b"\0" * 4096)
    resumed = subprocess.run([*train_command(out), "--resume"], capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not leftover.exists() and not (out / ".final.tmp").exists()
    assert (out / "checkpoint.pt").is_file()
