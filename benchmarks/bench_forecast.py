"""Time per series of ``forecast()`` with its defaults, against a baseline model and history.

Measures, in one run on the same real series: the bundled default model's ``forecast()`` with its
defaults (``--history`` bars given, calibration on) for a series not seen before (every past origin
forecast) and for one seen before (past forecasts found in the predictor's store), the same without
calibration, and a baseline
predictor (``--baseline-model``/``--baseline-tokenizer``, e.g. an earlier bundled model extracted with
``git archive``) on ``--baseline-history`` bars without calibration (what ``forecast()`` did before it
calibrated). Prints seconds per series (median of ``--repeats`` after one warm-up) and the ratios.

    python benchmarks/bench_forecast.py --baseline-model OLD/model --baseline-tokenizer OLD/tokenizer
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from machine_info import machine

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "tests" / "data" / "bokeh_MSFT_1d.csv"


def seconds_per_series(predictor, frame, history: int, pred_len: int, samples: int, repeats: int,
                       seen: bool = False, **settings) -> float:
    """Median seconds of ``forecast()`` on the last ``history`` bars before the last ``pred_len``. Unless
    ``seen``, the predictor's store of past forecasts is emptied before each call, so calibration forecasts
    every past origin (a series not seen before); with ``seen`` they are all found there."""
    import pandas as pd

    bars = frame.iloc[-history - pred_len:-pred_len]
    future = pd.DatetimeIndex(frame["timestamps"].iloc[-pred_len:])
    run = lambda: predictor.forecast(bars, bars["timestamps"], future, pred_len, sample_count=samples,  # noqa: E731
                                     seed=0, **settings)
    run()
    times = []
    for _ in range(repeats):
        if not seen:
            predictor.past_forecasts.clear()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, default=SERIES, help="a CSV of bars with a timestamps column")
    parser.add_argument("--history", type=int, default=512)
    parser.add_argument("--baseline-history", type=int, default=192)
    parser.add_argument("--pred-len", type=int, default=24)
    parser.add_argument("--samples", type=int, default=50, help="sample paths (default: forecast()'s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline-model")
    parser.add_argument("--baseline-tokenizer")
    parser.add_argument("--baseline-max-context", type=int, default=192)
    args = parser.parse_args()

    import pandas as pd
    import torch

    from kronos import KronosPredictor

    torch.set_num_threads(args.threads)
    print(machine())
    frame = pd.read_csv(args.series, parse_dates=["timestamps"])
    if len(frame) < args.history + args.pred_len:
        raise SystemExit(f"{args.series.name} has {len(frame)} bars; --history + --pred-len needs more")
    common = dict(pred_len=args.pred_len, samples=args.samples, repeats=args.repeats)
    predictor = KronosPredictor.from_pretrained(device="cpu")
    rows = {
        f"default model, forecast() defaults, {args.history} bars not seen before": seconds_per_series(
            predictor, frame, args.history, **common),
        f"default model, forecast() defaults, {args.history} bars seen before": seconds_per_series(
            predictor, frame, args.history, seen=True, **common),
        f"default model, calibrate=False, {args.history} bars": seconds_per_series(
            predictor, frame, args.history, calibrate=False, **common),
    }
    if args.baseline_model:
        baseline = KronosPredictor.from_pretrained(args.baseline_model, args.baseline_tokenizer, device="cpu",
                                                   max_context=args.baseline_max_context)
        rows[f"baseline model, calibrate=False, top_p=0.9, {args.baseline_history} bars"] = seconds_per_series(
            baseline, frame, args.baseline_history, calibrate=False, top_p=0.9, **common)
    reference = list(rows.values())[-1]
    print(f"{args.samples} paths, {args.pred_len} bars ahead, {args.threads} threads, {args.series.name}")
    for name, seconds in rows.items():
        print(f"{name:<70s} {seconds:7.3f} s/series   ×{seconds / reference:5.2f} of the last row")


if __name__ == "__main__":
    main()
