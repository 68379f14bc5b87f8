"""Does fine-tuning the bundled model on a series' own past help on that series' held-out tail?

For each series: fine-tune the bundled model (``init="default"``) on the first part of the series
(training, then validation: ``best/`` is chosen by validation CRPS), then forecast the held-out last
``--test-fraction`` of the series, never seen in training, from the starting weights and from ``best/``:
the same origins, the same seeds. Prints CRPS (share of the last close) and 80 % coverage, without and
with calibration, before and after, the ratio after / before, and the fine-tuning speed (optimizer steps
and bars per second, from metrics.jsonl).

``--tokenizer-too SERIES`` also fine-tunes the tokenizer on that series first (``train-tokenizer --init
default``) and then the predictor over it: the held-out scores of both ways, side by side.

    python benchmarks/bench_finetune.py tests/data/bokeh_AAPL_1d.csv tests/data/backtesting_EURUSD_1h.csv \
        --max-steps 60 --out /tmp/ft-bench
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np


def held_out_scores(model_dir, series, n_test: int, origins: int, samples: int, seed: int, device: str,
                    calibrated: bool = True) -> dict:
    from kronos.forecasting.predictor import KronosPredictor
    from kronos.training.quality import ValidationForecasts

    predictor = KronosPredictor.from_pretrained(model_dir, device=device)
    plan = ValidationForecasts.plan([series], {series.name: n_test}, predictor.lookback,
                                    predictor.max_context - predictor.lookback, samples, origins, seed)
    raw = plan.score(predictor, calibrate=False)
    calibrated = plan.score(predictor, calibrate=True) if calibrated else {"crps_rel": np.nan, "coverage_80": np.nan}
    return {"crps": raw["crps_rel"], "cov80": raw["coverage_80"], "crps_cal": calibrated["crps_rel"],
            "cov80_cal": calibrated["coverage_80"], "origins": int(raw["origins"])}


def speed(run: Path) -> float:
    """Median training bars per second over the logged rows."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    bars = [r["bars_per_s"] for r in rows if r.get("split") == "train"]
    return float(np.median(bars)) if bars else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=4e-5)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--origins", type=int, default=16, help="held-out forecast origins per series")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--tokenizer-too", nargs="*", default=[], metavar="FILE",
                        help="also fine-tune the tokenizer first for these files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--calibrated", action=argparse.BooleanOptionalAction, default=True,
                        help="also score calibrated forecasts (slower: calibration forecasts past origins too)")
    parser.add_argument("--val-origins", type=int, default=16, help="validation forecast origins during training")
    args = parser.parse_args()

    import torch

    from kronos.data.tables import load_series
    from kronos.training.splits import split_by_time
    from kronos.training.trainer import TrainOptions, train

    logging.basicConfig(level=logging.WARNING)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"{args.device} ({where}); {args.max_steps} steps of batch {args.batch_size}, lr {args.lr}")
    out = Path(args.out)
    rows = []
    common = dict(batch_size=args.batch_size, max_steps=args.max_steps, val_fraction=args.val_fraction,
                  test_fraction=args.test_fraction, eval_every=max(1, args.max_steps // 3), val_windows=64,
                  val_forecast_origins=args.val_origins, val_forecast_samples=10, val_forecast_calibrated=False,
                  device=args.device, progress=False, seed=args.seed, lr=args.lr)
    for file in args.files:
        series = load_series([file])[0]
        n_test = split_by_time([series], args.val_fraction, args.test_fraction).bounds[series.name][2]
        ways = [("predictor", None)] + ([("tokenizer+predictor", "tok")] if file in args.tokenizer_too else [])
        before = held_out_scores("default", series, n_test, args.origins, args.samples, args.seed, args.device,
                                 args.calibrated)
        for way, tok in ways:
            run = out / f"{series.name}-{way}"
            tokenizer = "default"
            started = time.perf_counter()
            if tok:
                tok_run = out / f"{series.name}-tokenizer"
                train(TrainOptions(kind="tokenizer", data=[file], out=str(tok_run), init="default",
                                   **{**common, "lr": 2e-4, "val_forecast_origins": 0}))
                tokenizer = str(tok_run)
            result = train(TrainOptions(kind="predictor", data=[file], out=str(run), init="default",
                                        tokenizer=tokenizer, **common))
            seconds = time.perf_counter() - started
            best_step = result.report["best"]["step"] if result.report else -1
            final = held_out_scores(run / "final", series, n_test, args.origins, args.samples, args.seed, args.device,
                                 args.calibrated)
            best = before if best_step == 0 else held_out_scores(run, series, n_test, args.origins, args.samples,
                                                                 args.seed, args.device, args.calibrated)
            bars_s = speed(run)
            rows.append((series.name, way, before, final, best, best_step, result.report, bars_s, seconds))
            b = before
            for label, a in (("final/", final), (f"best/ (step {best_step})", best)):
                print(f"{series.name:<32}{way:<20}{label:<16}"
                      f"CRPS {b['crps']:.5f} -> {a['crps']:.5f} (x{a['crps'] / b['crps']:.3f})  "
                      f"cov80 {b['cov80']:.3f} -> {a['cov80']:.3f}  calibrated: CRPS "
                      f"{b['crps_cal']:.5f} -> {a['crps_cal']:.5f} (x{a['crps_cal'] / b['crps_cal']:.3f}) "
                      f"cov80 {b['cov80_cal']:.3f} -> {a['cov80_cal']:.3f}  "
                      f"[{a['origins']} origins; {bars_s:.0f} bars/s; {seconds:.0f}s]", flush=True)
    summary = [{"series": name, "way": way, "before": b, "final": f, "best": a, "best_step": step,
                "validation_verdict": r["verdict"] if r else None, "bars_per_s": s, "seconds": t}
               for name, way, b, f, a, step, r, s, t in rows]
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for label, index in (("final/", 3), ("best/", 4)):
        ratios = [row[index]["crps"] / row[2]["crps"] for row in rows if row[1] == "predictor"]
        print(f"geometric mean held-out CRPS ratio {label} / start over {len(ratios)} series: "
              f"{float(np.exp(np.mean(np.log(ratios)))):.3f}")


if __name__ == "__main__":
    main()
