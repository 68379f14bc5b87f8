"""The command line's smaller promises, each with a real process on real files: one-line errors before any
model time (a wrong --time-unit, year 9999, a 1e308 price, Parquet without pyarrow), --symbol for --plot, one
--out rule for every engine, `kronos info` printing the device once, and a universe's progress and failures
counted once. Also the README: no counts that drift, and its first command leaves the checkout clean."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import DATA, PARITY, TESTS, read_bars

TINY_ARGS = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "256"]
FAST = ["--pred-len", "2", "--samples", "2", "--seed", "0", "--no-calibrate", *TINY_ARGS]
ROOT = TESTS.parent


def run_cli(*args: str, prelude: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    """``kronos ARGS`` in a fresh interpreter; ``prelude`` runs first (e.g. to make a package unimportable)."""
    code = f"{prelude}\nimport sys\nfrom kronos.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The one error line of a refused command (progress lines about reading may come before it)."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("kronos forecast: error: ")]
    assert len(errors) == 1 and result.stderr.rstrip("\n").endswith(errors[0]), result.stderr
    assert "loaded model" not in result.stderr  # refused before any model time
    return errors[0]


@pytest.fixture(scope="module")
def aapl() -> pd.DataFrame:
    return read_bars("bokeh_AAPL_1d.csv").tail(120)


def test_millisecond_epochs_read_as_seconds_name_the_column_and_the_unit(tmp_path, aapl):
    path = tmp_path / "ms.csv"
    aapl.assign(timestamps=[int(t.timestamp() * 1000) for t in aapl.timestamps]).to_csv(path, index=False)
    error = one_line(run_cli("forecast", str(path), "--time-unit", "s", *FAST))
    assert f"{path}: column 'timestamps' row 0" in error and "read as s" in error
    assert "their size says ms" in error and "--time-unit" in error and "Out of bounds" not in error


def test_timestamps_in_year_9999_are_one_line_naming_the_row(tmp_path, aapl):
    path = tmp_path / "far.csv"
    stamps = list(aapl.timestamps.dt.strftime("%Y-%m-%d"))
    stamps[-1] = "9999-12-31"
    aapl.assign(timestamps=stamps).to_csv(path, index=False)
    error = one_line(run_cli("forecast", str(path), *FAST))
    assert f"column 'timestamps' row {len(aapl) - 1}: '9999-12-31' is outside the years" in error


def test_a_price_of_1e308_names_the_real_column(tmp_path, aapl):
    path = tmp_path / "huge.csv"
    frame = aapl.copy()
    frame.loc[frame.index[7], "high"] = 1e308
    frame.to_csv(path, index=False)
    error = one_line(run_cli("forecast", str(path), *FAST))
    assert "column 'high' has value 1e+308 at row(s) 7" in error and "amount" not in error


NO_PYARROW = "import sys\nsys.modules['pyarrow'] = None\nsys.modules['fastparquet'] = None"


def test_parquet_output_without_pyarrow_fails_before_the_forecast(tmp_path):
    out = tmp_path / "forecast.parquet"
    error = one_line(run_cli("forecast", str(DATA / "bokeh_FB_1d.csv"), "--out", str(out), *FAST,
                             prelude=NO_PYARROW))
    assert f"--out {out}: writing Parquet needs pyarrow" in error and not out.exists()
    # The same rule for a universe written to one file.
    error = one_line(run_cli("forecast", str(DATA / "bokeh_FB_1d.csv"), "--engine", "local", "--out", str(out),
                             *FAST, prelude=NO_PYARROW))
    assert "writing Parquet needs pyarrow" in error


def long_file(tmp_path: Path) -> Path:
    path = tmp_path / "panel.csv"
    frames = [read_bars(f"bokeh_{s}_1d.csv").tail(80).assign(symbol=s) for s in ("AAPL", "MSFT", "IBM")]
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_plot_of_a_long_file_offers_symbol_and_symbol_picks_one(tmp_path):
    path = long_file(tmp_path)
    error = one_line(run_cli("forecast", str(path), "--plot", str(tmp_path / "chart.svg"), *FAST))
    assert "pick one with --symbol AAPL (symbol values AAPL, MSFT, IBM)" in error
    done = run_cli("forecast", str(path), "--symbol", "MSFT", "--plot", str(tmp_path / "chart.svg"), *FAST)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "chart.svg").stat().st_size > 1000
    assert set(done.stdout.splitlines()[1:]) and all(line.startswith("MSFT,") for line in done.stdout.splitlines()[1:])
    error = one_line(run_cli("forecast", str(path), "--symbol", "TSLA", *FAST))
    assert "--symbol TSLA" in error and "AAPL, MSFT, IBM" in error


def test_the_out_rule_is_the_same_for_every_engine(tmp_path):
    single = tmp_path / "single.csv"
    done = run_cli("forecast", str(DATA / "bokeh_FB_1d.csv"), "--out", str(single), *FAST)
    assert done.returncode == 0, done.stderr
    engine = tmp_path / "engine.csv"
    done = run_cli("forecast", str(DATA / "bokeh_FB_1d.csv"), "--engine", "local", "--out", str(engine), *FAST)
    assert done.returncode == 0, done.stderr
    a, b = pd.read_csv(single), pd.read_csv(engine)
    assert list(b.columns) == ["id", *a.columns] and set(b["id"]) == {"bokeh_FB_1d"}
    assert b["timestamp"].tolist() == a["timestamp"].tolist()
    assert [p.name for p in tmp_path.iterdir()] == sorted(["single.csv", "engine.csv"]) or \
        sorted(p.name for p in tmp_path.iterdir()) == ["engine.csv", "single.csv"]  # no leftover dataset folder
    for suffix in (".parquet", ".json"):
        done = run_cli("forecast", str(DATA / "bokeh_FB_1d.csv"), str(DATA / "bokeh_GOOG_1d.csv"), "--out",
                       str(tmp_path / f"both{suffix}"), *FAST)
        assert done.returncode == 0, done.stderr
    both = pd.read_parquet(tmp_path / "both.parquet")
    assert set(both["id"]) == {"bokeh_FB_1d", "bokeh_GOOG_1d"}


def test_info_prints_the_device_once():
    done = run_cli("info", *TINY_ARGS)
    assert done.returncode == 0, done.stderr
    assert sum(1 for line in done.stdout.splitlines() if line.split()[:1] == ["device"]) == 1


def test_a_universe_counts_every_input_and_reports_a_failure_once(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("AAPL", "FB", "GOOG", "IBM", "MSFT"):
        read_bars(f"bokeh_{name}_1d.csv").tail(60).to_csv(data / f"{name}.csv", index=False)
    (data / "broken.csv").write_text("timestamps,open,high,low,close\n2024-01-02,1,2,0.5\n")
    done = run_cli("forecast", str(data), "--out", str(tmp_path / "out"), *FAST)
    assert done.returncode == 3, done.stderr
    assert "6/6" in done.stderr and "1 failed before forecasting" in done.stderr
    assert done.stderr.count("series failed") == 1, done.stderr


def test_the_readme_states_no_counts_that_drift_and_its_first_command_leaves_the_checkout_clean():
    readme = (ROOT / "README.md").read_text()
    assert not re.search(r"\(\d+ tests?\)|\d+ tests (pass|took)|tests \(\d+\)", readme)
    first = next(line for line in readme.splitlines() if line.startswith("pip install") and "kronos forecast" in line)
    chart = re.search(r"--plot (\S+)", first)[1]
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", chart], capture_output=True)
    if ignored.returncode == 128:  # not a git checkout (an unpacked source tree): read the rule itself
        assert f"/{chart}" in (ROOT / ".gitignore").read_text().splitlines()
    else:
        assert ignored.returncode == 0, f"{chart} would be left untracked in the checkout"
