"""Calibration's cost against its quality: paths per past origin and past origins per forecast, chosen on
the validation part of real series (never on the held-out tail that ``kronos evaluate`` scores).

Each series is cut before its held-out tail (the last ``--tail-fraction`` of its rows); the walk-forward
evaluation then scores origins in the last ``--tail-fraction`` of what is left, the validation rows.
Every setting forecasts the same origins with the same seeds (the model's own paths are identical), so
the differences are calibration's alone. Prints one row per setting: pooled CRPS (fraction of the last
close), 50%/80% coverage, past forecasts made, network rows they cost (past forecasts x paths) and model
seconds, next to the uncalibrated forecast.

    python benchmarks/bench_calibration_choice.py ../shared/data/ohlcv --every 5 --origins 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SETTINGS = ((16, 12), (8, 12), (4, 12), (8, 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--every", type=int, default=5, help="every N-th file of the folder")
    parser.add_argument("--origins", type=int, default=4)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--lookback", type=int, default=512)
    parser.add_argument("--pred-len", type=int, default=24)
    parser.add_argument("--tail-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from kronos import KronosPredictor
    from kronos.data.tables import Series
    from kronos.evaluation.walkforward import EvaluationConfig, collect_series, run_walkforward

    torch.set_num_threads(args.threads)
    files = sorted(Path(args.folder).glob("*.csv"))[::args.every]
    series = []
    for s in collect_series([str(f) for f in files]):
        keep = len(s.bars) - int(round(len(s.bars) * args.tail_fraction))  # drop the held-out tail
        series.append(Series(s.name, s.bars[:keep], s.timestamps[:keep], s.stamps[:keep] if s.stamps is not None
                             else None, s.id_column, s.source))
    predictor = KronosPredictor.from_pretrained("default", device="cpu")
    print(f"{len(series)} series, validation rows, {args.origins} origins each, {args.samples} paths, "
          f"lookback {args.lookback}, pred_len {args.pred_len}")
    print("| paths per past origin | past origins | CRPS (rel) | coverage 50 | coverage 80 | past forecasts | "
          "network rows | model s |\n|---|---|---|---|---|---|---|---|")
    for paths, origins in ((0, 0), *SETTINGS):
        predictor.calibration_paths, predictor.calibration_origins = max(paths, 1), max(origins, 4)
        predictor.past_forecasts.clear()
        config = EvaluationConfig(lookback=args.lookback, pred_len=args.pred_len, sample_count=args.samples,
                                  max_origins=args.origins, tail_fraction=args.tail_fraction,
                                  calibrate=paths > 0)
        started = time.perf_counter()
        records = run_walkforward(series, config, predictor).records
        seconds = time.perf_counter() - started
        model = records[records["method"] == "kronos"]
        made = predictor.past_forecasts.misses if paths else 0
        label = ("none", "-") if not paths else (str(paths), str(origins))
        print(f"| {label[0]} | {label[1]} | {model['crps_rel'].mean():.5f} | {model['coverage_50'].mean():.3f} | "
              f"{model['coverage_80'].mean():.3f} | {made} | {made * paths} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
