"""``kronos backtest``: trade the model's forecasts (and baseline signals) walk-forward over a universe."""

from __future__ import annotations

import argparse
import sys

from .common import (
    UsageError,
    add_engine_arguments,
    add_model_arguments,
    add_sampling_overrides,
    add_table_arguments,
    check_out_folder,
    engine_of,
    flag_names,
    load_predictor,
    origin_progress,
    positive_int,
    progress,
    read_options,
)

EXAMPLES = """\
examples:
  kronos backtest tests/data/*_1d.csv --out bt-daily
  kronos backtest panel.csv --id-column ticker --k 10 --n-drop 2 --commission-bps 5 --out bt
  kronos backtest prices/ --strategy long-short --k 3 --pred-len 5 --dates 50 --out bt-ls
  kronos backtest AAPL.csv --strategy long-flat --out bt-aapl
  kronos backtest data/ --baselines-only --out bt-baselines

Each FILE (or every .csv/.parquet/.json in a folder; a long table with a symbol column gives one series
per symbol) is read as by kronos forecast. Rebalance dates lie in the last --tail-fraction of the series
(as in kronos evaluate): at each, every series with a bar then is forecast from the bars before it, the
signals rank the series, and the strategy trades at that bar's open, holding to the next date. Signals:
expected_return, median_return, prob_up, return_to_vol (from the model's sample paths), and the baselines
momentum, reversal and random, with an equal-weight buy-and-hold beside them. --out receives report.md,
metrics.json, equity.csv, ic.csv, chart.png and chart.html.
"""

STRATEGY_FLAGS = {"topk-dropout": "topk_dropout", "long-short": "long_short", "long-flat": "long_flat",
                  "long-short-threshold": "long_short_threshold"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backtest", help="trade forecast signals walk-forward over a universe, after costs", epilog=EXAMPLES,
        description="Backtest signals from the model's probabilistic forecasts against momentum, short-term "
                    "reversal and random signals on the same dates, with commission and slippage.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", metavar="FILE", nargs="+", help="CSV/Parquet/JSON bar files or folders of them")
    parser.add_argument("--out", "-o", required=True, help="folder for the report files (created if missing)")
    walk = parser.add_argument_group("walk-forward")
    walk.add_argument("--lookback", type=positive_int, default=512,
                      help="most history bars the network sees per forecast (default 512; never more than the "
                           "model's own lookback); the earlier bars serve its calibration")
    walk.add_argument("--pred-len", type=positive_int, default=24, help="forecast horizon in bars (default 24)")
    walk.add_argument("--samples", type=positive_int, default=20, help="sample paths per forecast (default 20)")
    walk.add_argument("--stride", type=positive_int, default=None,
                      help="calendar steps between rebalance dates (default --pred-len)")
    walk.add_argument("--dates", type=positive_int, default=20, help="most recent rebalance dates kept (default 20)")
    walk.add_argument("--all-dates", action="store_true", help="every rebalance date of the tail (no cap)")
    walk.add_argument("--start", default=None, help="first allowed rebalance date, e.g. 2012-01-01 (default: none)")
    walk.add_argument("--end", default=None, help="last allowed rebalance date (default: none)")
    walk.add_argument("--tail-fraction", type=float, default=0.2,
                      help="held-out share at the end of each series (default 0.2)")
    walk.add_argument("--min-history", type=positive_int, default=None,
                      help="fewest history bars a forecast may have (default min(64, lookback))")
    walk.add_argument("--min-names", type=positive_int, default=None,
                      help="fewest series that must trade on a date (default 2; 1 for one series)")
    walk.add_argument("--seed", type=int, default=0, help="seed of the model and the random signal (default 0)")
    strategy = parser.add_argument_group("strategy and costs")
    strategy.add_argument("--strategy", choices=STRATEGY_FLAGS, default=None,
                          help="topk-dropout (default for several series), long-short, long-flat (default for "
                               "one series) or long-short-threshold")
    strategy.add_argument("--k", type=positive_int, default=5, help="names held long (and short) (default 5)")
    strategy.add_argument("--n-drop", type=int, default=1, help="most names replaced per rebalance (default 1)")
    strategy.add_argument("--threshold", type=float, default=0.0,
                          help="score above which the threshold strategies go long (default 0)")
    strategy.add_argument("--commission-bps", type=float, default=5.0, help="commission in bps of turnover (default 5)")
    strategy.add_argument("--slippage-bps", type=float, default=0.0, help="slippage in bps of turnover (default 0)")
    strategy.add_argument("--momentum-window", type=positive_int, default=20,
                          help="bars of past return for the momentum signal (default 20)")
    strategy.add_argument("--reversal-window", type=positive_int, default=5,
                          help="bars of past return for the reversal signal (default 5)")
    add_sampling_overrides(parser)
    add_model_arguments(parser)
    add_table_arguments(parser)
    parser.add_argument("--baselines-only", action="store_true", help="only the baseline signals (no model)")
    parser.add_argument("--no-chart", action="store_true", help="skip chart.png and chart.html")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backtest import BacktestConfig
    from ..backtest import run as run_backtest
    from ..backtest.report import SHOWN
    from ..evaluation import collect_series
    from ..evaluation.report import markdown_table

    check_out_folder(args.out)
    series = collect_series(args.files, read_options(args))
    kind = STRATEGY_FLAGS[args.strategy] if args.strategy else ("long_flat" if len(series) == 1 else "topk_dropout")
    try:
        config = BacktestConfig(
            lookback=args.lookback, pred_len=args.pred_len, sample_count=args.samples, stride=args.stride,
            max_dates=None if args.all_dates else args.dates, start=args.start, end=args.end,
            tail_fraction=args.tail_fraction, min_history=args.min_history, min_names=args.min_names,
            seed=args.seed, strategy=kind, k=args.k, n_drop=args.n_drop, threshold=args.threshold,
            commission_bps=args.commission_bps,
            slippage_bps=args.slippage_bps, momentum_window=args.momentum_window,
            reversal_window=args.reversal_window, T=args.temperature, top_k=args.top_k, top_p=args.top_p,
            calibrate=args.calibrate, dequantise=args.dequantise, combine=args.combine)
    except ValueError as exc:
        raise UsageError(flag_names(str(exc), ("lookback", "pred_len", "tail_fraction", "min_history", "k",
                                                "n_drop", "commission_bps", "slippage_bps", "start", "end"))) from exc
    predictor, model_name = None, None
    if not args.baselines_only:
        predictor = load_predictor(args)
        model_name = args.model if args.model != "default" else "default (bundled)"
        progress(args, f"loaded model {model_name} on {predictor.device}")

    report, close_bar = origin_progress(args) if predictor is not None else (None, lambda: None)
    try:
        result = run_backtest(series, predictor, config, model_name=model_name, progress=report,
                              engine=engine_of(args))
    except ValueError as exc:
        raise UsageError(flag_names(str(exc), ("lookback", "pred_len", "tail_fraction"))) from exc
    finally:
        close_bar()
    for note in result.notes:
        progress(args, note)
    written = result.write(args.out, chart=not args.no_chart)
    timing = result.timing
    forecasting = f"forecasting {timing['seconds_forecasting']:.1f}s, " if "seconds_forecasting" in timing else ""
    progress(args, f"{int(timing['dates'])} rebalance dates, {int(timing['positions'])} forecasts: {forecasting}"
                   f"accounting {timing['seconds_accounting']:.2f}s; wrote {', '.join(p.name for p in written)} "
                   f"to {args.out}")
    shown = result.metrics[[c for c in SHOWN if c in result.metrics.columns]]
    sys.stdout.write(markdown_table(shown, "signal") + "\n")
    return 0
