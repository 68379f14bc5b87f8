"""Forecasts at scale against a baseline source tree, in one run: ``kronos evaluate`` wall time and
forecast quality, and the cost of one default ``forecast()``.

The baseline is another checkout's ``src`` folder (e.g. ``git archive <commit> src | tar -x -C /tmp/base``);
each side runs in its own subprocess with ``PYTHONPATH`` pointing at its sources, one after the other,
with the same files and options. Prints seconds, origins/s and the ratio, the load average around each
run, pooled CRPS (fraction of the last close) and 50%/80% coverage of the model and the baselines from
each side's records, and per-series model CRPS before and after.

    python benchmarks/bench_scale.py evaluate --baseline /tmp/base/src ../shared/data/ohlcv \\
        --samples 100 --origins 10
    python benchmarks/bench_scale.py forecast --baseline /tmp/base/src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("kronos", "gaussian_rw", "bootstrap", "garch_t")

FORECAST_SNIPPET = r"""
import inspect, json, sys, time
import pandas as pd
import torch
from kronos import KronosPredictor
try:
    from kronos.data.calendar import future_timestamps
    from kronos.data.tables import read_series
except ImportError:  # a tree from before the package layout
    from kronos.calendar import future_timestamps
    from kronos.tables import read_series
torch.set_num_threads(int(sys.argv[3]))
series = read_series(sys.argv[1])[0]
predictor = KronosPredictor.from_pretrained("default", device="cpu")
rows = int(sys.argv[2])
paths = {} if sys.argv[4] == "default" else {"sample_count": int(sys.argv[4])}
if len(series.bars) < rows + 6:
    raise SystemExit(f"{sys.argv[1]} has {len(series.bars)} bars; --rows {rows} needs {rows + 6}")
times = {"calibrated": [], "uncalibrated": []}
for k in range(7):  # histories ending 6, 5, ... 0 bars before the last: a series not seen before each time
    end = len(series.bars) - 6 + k
    frame = series.frame().iloc[end - rows:end]
    stamps = series.timestamps[end - rows:end]
    future = future_timestamps(stamps, 24)[0]
    started = time.perf_counter()
    predictor.forecast(frame, stamps, future, 24, seed=0, calibrate=k < 4, **paths)
    times["calibrated" if k < 4 else "uncalibrated"].append(time.perf_counter() - started)
times["paths"] = paths.get("sample_count", inspect.signature(predictor.forecast).parameters["sample_count"].default)
print(json.dumps(times))
"""


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def _run(src: str, args: list[str], env_extra: dict[str, str] | None = None) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": src, **(env_extra or {})}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{src}: {' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def _quality(records_csv: Path):
    import pandas as pd

    records = pd.read_csv(records_csv)
    pooled = records.groupby("method")[["crps_rel", "coverage_50", "coverage_80"]].mean()
    per_series = records[records["method"] == "kronos"].groupby("series")[["crps_rel", "coverage_50",
                                                                           "coverage_80"]].mean()
    return pooled, per_series, int((records["method"] == "kronos").sum())


def evaluate(args: argparse.Namespace) -> None:
    options = ["--lookback", str(args.lookback), "--pred-len", str(args.pred_len), "--samples", str(args.samples),
               "--origins", str(args.origins), "--no-plots", "-q", *args.extra]
    files = [str(Path(f).resolve()) for f in args.files]
    if args.every > 1:
        chosen = sorted(p for f in files for p in (Path(f).glob("*.csv") if Path(f).is_dir() else [Path(f)]))
        files = [str(p) for p in chosen[::args.every]]
    sides = {"baseline": str(Path(args.baseline).resolve()), "current": str(Path(args.current).resolve())}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in sides.items():
            before = _load()
            out = Path(args.keep or tmp) / name
            seconds, _ = _run(src, ["-m", "kronos", "evaluate", *files, "--out", str(out), *options])
            results[name] = (seconds, _load(), before, *_quality(out / "records.csv"))
            print(f"{name}: {seconds:.1f} s, load before {before}, after {results[name][1]}", flush=True)
    (b_s, _, _, b_pool, b_series, n), (c_s, _, _, c_pool, c_series, n2) = results["baseline"], results["current"]
    print(f"\nkronos evaluate {len(files)} file(s) {' '.join(options)}; {n} origins (current {n2})")
    print(f"baseline {b_s:.1f} s ({n / b_s:.2f} origins/s), current {c_s:.1f} s ({n2 / c_s:.2f} origins/s): "
          f"{b_s / c_s:.2f}x faster")
    print("\n| method | side | CRPS (rel) | coverage 50 | coverage 80 |\n|---|---|---|---|---|")
    for method in METHODS:
        for side, pool in (("baseline", b_pool), ("current", c_pool)):
            if method in pool.index:
                row = pool.loc[method]
                print(f"| {method} | {side} | {row['crps_rel']:.5f} | {row['coverage_50']:.3f} | "
                      f"{row['coverage_80']:.3f} |")
    change = c_pool.loc["kronos", "crps_rel"] / b_pool.loc["kronos", "crps_rel"] - 1
    moved = {level: 100 * (c_pool.loc["kronos", f"coverage_{level}"] - b_pool.loc["kronos", f"coverage_{level}"])
             for level in (50, 80)}
    print(f"\nmodel CRPS {change:+.2%}; coverage 50 {moved[50]:+.1f} points, coverage 80 {moved[80]:+.1f} points")
    print("\nper series, model: CRPS (rel) baseline -> current (change), coverage 50 and 80 baseline -> current")
    for series in b_series.index:
        was, now = b_series.loc[series], c_series.reindex([series]).iloc[0]
        change = now["crps_rel"] / was["crps_rel"] - 1
        print(f"  {series}: {was['crps_rel']:.5f} -> {now['crps_rel']:.5f} ({change:+.1%}),"
              f" {was['coverage_50']:.2f} -> {now['coverage_50']:.2f}, {was['coverage_80']:.2f} -> "
              f"{now['coverage_80']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline_s": b_s, "current_s": c_s, "origins": n,
                                               "load": {k: v[1:3] for k, v in results.items()}}))


def forecast(args: argparse.Namespace) -> None:
    file = str(Path(args.file).resolve())
    times = {}
    for name, src in (("baseline", str(Path(args.baseline).resolve())), ("current", str(Path(args.current).resolve()))):
        before = _load()
        _, out = _run(src, ["-c", FORECAST_SNIPPET, file, str(args.rows), str(args.threads), args.samples])
        times[name] = json.loads(out.strip().splitlines()[-1])
        print(f"{name}: forecast() calibrated {' '.join(f'{t:.3f}' for t in times[name]['calibrated'])} s (the first "
              f"call warms up), calibrate=False {' '.join(f'{t:.3f}' for t in times[name]['uncalibrated'])} s; "
              f"{times[name]['paths']} paths; load before {before}, after {_load()}", flush=True)
    cost = {k: (min(times[k]["calibrated"][1:]), min(times[k]["uncalibrated"])) for k in times}
    print(f"\nforecast(), {args.rows} bars of {Path(file).name} not seen before, pred_len 24, {args.threads} "
          f"thread(s), best of 3:")
    for name, (calibrated, plain) in cost.items():
        print(f"  {name} ({times[name]['paths']} paths): {calibrated:.3f} s per series, of which the forecast "
              f"itself {plain:.3f} s and calibration {calibrated - plain:.3f} s")
    print(f"  current / baseline: {cost['baseline'][0] / cost['current'][0]:.2f}x faster per calibrated series")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ev = sub.add_parser("evaluate")
    ev.add_argument("files", nargs="+")
    ev.add_argument("--baseline", required=True, help="the baseline's src folder")
    ev.add_argument("--lookback", type=int, default=512)
    ev.add_argument("--pred-len", type=int, default=24)
    ev.add_argument("--samples", type=int, default=100)
    ev.add_argument("--origins", type=int, default=10)
    ev.add_argument("--every", type=int, default=1, help="only every N-th file of the folders (sorted by name)")
    ev.add_argument("--json", help="also write the timings here")
    ev.add_argument("--keep", help="write each side's report folder under this folder (default: a temporary one)")
    ev.add_argument("--extra", default="", help="more kronos evaluate options, in one string")
    fc = sub.add_parser("forecast")
    fc.add_argument("--baseline", required=True)
    fc.add_argument("--file", default=str(ROOT / "tests" / "data" / "bokeh_MSFT_1d.csv"),
                    help="a series longer than --rows + 3 bars")
    fc.add_argument("--rows", type=int, default=2000, help="history bars given to forecast()")
    fc.add_argument("--threads", type=int, default=2)
    fc.add_argument("--samples", default="default", help="sample paths (default: each side's own default)")
    for sub_parser in (ev, fc):
        sub_parser.add_argument("--current", default=str(ROOT / "src"), help="the src folder measured (default: ours)")
    args = parser.parse_args()
    if args.what == "evaluate":
        args.extra = args.extra.split()
        evaluate(args)
    else:
        forecast(args)


if __name__ == "__main__":
    main()
