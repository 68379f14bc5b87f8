"""Wall time of ``kronos.backtest.run`` over a universe with the bundled model, split into forecasting
(the model's batches) and accounting (strategies, costs, metrics of every signal), and the backtest's
metrics table. Saves the scores (npz) so the report and chart can be written from it.

    PYTHONPATH=src python3 benchmarks/bench_backtest.py --universe daily --out /tmp/bt-daily
    PYTHONPATH=src python3 benchmarks/bench_backtest.py --universe crypto5m --out /tmp/bt-crypto
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kronos import backtest
from kronos.data.tables import load_series
from kronos.forecasting.predictor import KronosPredictor

DATA = Path(os.environ.get("KRONOS_FULL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "ohlcv"))
UNIVERSES = {
    # every daily series of the collection, and the 5-minute crypto pairs
    "daily": ("*_1d.csv", dict(pred_len=20, stride=20, max_dates=8, end="2013-02-01", k=3, n_drop=1)),
    "crypto5m": ("freqtrade_*_5min.csv", dict(pred_len=12, stride=12, max_dates=8, k=3, n_drop=1)),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--universe", choices=UNIVERSES, default="daily")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--max-dates", type=int, default=None, help="0: every date of the tail")
    parser.add_argument("--out", default=None, help="folder for scores.npz and timing.json")
    parser.add_argument("--retrade", default=None, metavar="FOLDER",
                        help="no forecasting: re-trade the scores saved in FOLDER with each strategy and print the "
                             "tables (with --chart PATH: the top-k chart)")
    parser.add_argument("--chart", default=None, help="with --retrade: write the top-k dropout chart (PNG) here")
    args = parser.parse_args()
    if args.retrade:
        return retrade(Path(args.retrade), args.chart)
    pattern, settings = UNIVERSES[args.universe]
    files = sorted(glob.glob(str(Path(args.data) / pattern)))
    if not files:
        print(f"no files {pattern} in {args.data}", file=sys.stderr)
        return 2
    if args.max_dates is not None:
        settings = {**settings, "max_dates": args.max_dates or None}
    started = time.perf_counter()
    series = load_series(files)
    read = time.perf_counter() - started
    predictor = KronosPredictor.from_pretrained()
    config = backtest.BacktestConfig(sample_count=args.samples, commission_bps=5.0, **settings)

    def progress(done: int, total: int) -> None:
        print(f"  date {done}/{total} ({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)

    result = backtest.run(series, predictor, config, model_name="default (bundled)", progress=progress)
    t = result.timing
    print(f"universe {args.universe}: device {predictor.device}, {len(series)} series, {int(t['dates'])} "
          f"dates, {int(t['positions'])} forecasts x {args.samples} paths, torch threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"reading {read:.2f}s  forecasting {t['seconds_forecasting']:.1f}s  baseline signals "
          f"{t['seconds_signals']:.3f}s  accounting {t['seconds_accounting']:.3f}s  total {t['seconds_total']:.1f}s")
    share = t["seconds_forecasting"] / t["seconds_total"]
    print(f"forecasting / total = {share:.3f}; forecasting / accounting = "
          f"{t['seconds_forecasting'] / max(t['seconds_accounting'], 1e-9):.0f}x")
    print(result.metrics[["sharpe", "annual_return", "max_drawdown", "turnover", "hit_rate", "rank_ic"]]
          .round(3).to_string())
    if args.out:
        save(result, Path(args.out))
    return 0


def save(result: backtest.BacktestResult, out: Path) -> None:
    """scores.npz (every signal's scores, the plan) and timing.json, to re-trade the same forecasts with
    other strategies or write the report elsewhere (see ``load``)."""
    out.mkdir(parents=True, exist_ok=True)
    plan = result.plan
    np.savez(out / "scores.npz", dates=plan.dates.asi8, end=np.int64(plan.end.value), names=np.array(plan.names),
             origins=plan.origins, realised=plan.realised,
             **{f"score_{k}": v.to_numpy() for k, v in result.scores.items()})
    (out / "timing.json").write_text(json.dumps({"timing": result.timing, "config": result.config_dict()}, default=str))


def retrade(folder: Path, chart: str | None) -> int:
    """The saved scores traded with top-k dropout (the saved settings) and long-short (k=1), after the saved
    costs: Markdown tables of Sharpe, annual return, max drawdown, turnover, hit rate and RankIC."""
    from kronos.backtest.report import png_bytes
    from kronos.evaluation.report import markdown_table

    plan, scores, saved = load(folder)
    config = backtest.BacktestConfig(**{k: v for k, v in saved["config"].items() if k not in ("start", "end")})
    t = saved["timing"]
    print(f"{len(plan.dates)} dates {plan.dates[0]} .. {plan.dates[-1]} (valued to {plan.end}), "
          f"{int(plan.eligible.sum())} forecasts; forecasting {t.get('seconds_forecasting', 0):.1f}s, accounting "
          f"{t['seconds_accounting']:.3f}s, total {t['seconds_total']:.1f}s")
    for strategy, k, n_drop in (("topk_dropout", config.k, config.n_drop), ("long_short", 1, 1)):
        varied = backtest.BacktestConfig(**{**{f: getattr(config, f) for f in config.__dataclass_fields__},
                                            "strategy": strategy, "k": k, "n_drop": n_drop})
        started = time.perf_counter()
        result = backtest.score_signals(scores, plan, varied)
        seconds = time.perf_counter() - started
        print(f"\n{strategy} k={k} n_drop={n_drop}, {config.cost_bps:g} bps (accounting of "
              f"{len(result.metrics)} signals: {seconds:.3f}s)\n")
        table = result.metrics[["sharpe", "total_return", "annual_return", "max_drawdown", "turnover", "hit_rate",
                                "rank_ic"]]
        print(markdown_table(table, "signal"))
        if chart and strategy == "topk_dropout":
            Path(chart).write_bytes(png_bytes(result, f"{folder.name}: top-{k} dropout, {config.cost_bps:g} bps"))
    return 0


def load(folder: Path) -> tuple[backtest.Plan, dict[str, np.ndarray], dict]:
    data = np.load(folder / "scores.npz")
    plan = backtest.Plan(pd.DatetimeIndex(data["dates"].astype("datetime64[ns]")),
                         pd.Timestamp(int(data["end"])), [str(n) for n in data["names"]], data["origins"],
                         data["realised"])
    scores = {k[len("score_"):]: data[k] for k in data.files if k.startswith("score_")}
    return plan, scores, json.loads((folder / "timing.json").read_text())


if __name__ == "__main__":
    sys.exit(main())
