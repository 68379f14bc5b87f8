"""``kronos evaluate``: walk-forward evaluation of a model against baselines on the tails of bar files."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .common import (
    UsageError,
    add_engine_arguments,
    add_model_arguments,
    add_sampling_overrides,
    add_table_arguments,
    check_model_arguments,
    check_out_folder,
    engine_of,
    load_predictor,
    origin_progress,
    positive_int,
    progress,
    read_options,
)

if TYPE_CHECKING:
    from ..evaluation import Evaluation

EXAMPLES = """\
examples:
  kronos evaluate tests/data/ --out eval-default
  kronos evaluate AAPL.csv MSFT.csv --lookback 512 --pred-len 24 --samples 20 --origins 30 --out eval
  kronos evaluate data/ --model ./my-model --tokenizer ./my-tokenizer --max-context 256 --device cuda --out eval
  kronos evaluate data/ --baselines-only --out eval-baselines
  kronos evaluate test-part.csv --model runs/ft --tail-fraction 1.0 --out eval-test
  kronos evaluate AAPL.csv --model runs/ft --from 2023-01-01 --out eval-2023
  kronos evaluate panel.csv --id-column ticker --nan drop --out eval-panel

Each FILE (or every .csv/.parquet/.json in a folder) needs a timestamp column and open, high, low,
close (volume optional; read as by kronos forecast); a long table with a symbol column gives one
series per symbol. Forecast horizons lie in the last --tail-fraction of each series; origins step by
--stride bars (default --pred-len), at most --origins per series. The folder --out receives summary.md,
summary.csv, records.csv (one row per origin and method), metrics.json and PNG plots.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="walk-forward evaluation against baselines", epilog=EXAMPLES,
        description="Forecast many origins over the held-out tail of each series and score the model against "
                    "persistence, random walk with drift, a Gaussian random walk, a historical-simulation "
                    "bootstrap, GARCH(1,1)-t (with the optional arch package) and seasonal-naive volume.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", metavar="FILE", nargs="+", help="CSV/Parquet/JSON bar files or folders of them")
    parser.add_argument("--out", "-o", required=True, help="folder for the report files (created if missing)")
    walk = parser.add_argument_group("walk-forward")
    walk.add_argument("--lookback", type=positive_int, default=512,
                      help="most history bars the network sees per origin (default 512; never more than the "
                           "model's own lookback); the earlier bars serve its calibration")
    walk.add_argument("--pred-len", type=positive_int, default=24, help="horizon bars (default 24)")
    walk.add_argument("--samples", type=positive_int, default=20,
                      help="sample paths per origin, EvaluationConfig.sample_count (default 20)")
    walk.add_argument("--origins", type=positive_int, default=20,
                      help="most origins per series, spread evenly over the tail (default 20)")
    walk.add_argument("--all-origins", action="store_true", help="every origin on the stride grid (no cap)")
    walk.add_argument("--stride", type=positive_int, default=None, help="bars between origins (default --pred-len)")
    walk.add_argument("--tail-fraction", type=float, default=0.2,
                      help="held-out share at the end of each series (default 0.2; 1.0: the whole file, from its "
                           "first origin with --min-history bars of history taken from the file)")
    walk.add_argument("--from", dest="start", metavar="DATE", default=None,
                      help="score horizons starting at or after DATE (instead of --tail-fraction); history comes "
                           "from the same file")
    walk.add_argument("--min-history", type=positive_int, default=None,
                      help="fewest history bars an origin may have (default min(64, lookback))")
    walk.add_argument("--vol-window", type=positive_int, default=None,
                      help="recent log returns for the drift, volatility, bootstrap and GARCH baselines "
                           "(default: all those the baselines see)")
    walk.add_argument("--baseline-returns", type=int, default=1000,
                      help="log returns before each origin the baselines are fitted on, read from the file "
                           "whatever --lookback (default 1000; 0: only the model's history window)")
    walk.add_argument("--batch-size", type=positive_int, default=32, help="origins per model call (default 32)")
    walk.add_argument("--seed", type=int, default=0, help="random seed of model and baselines (default 0)")
    add_sampling_overrides(parser)
    add_model_arguments(parser)
    add_table_arguments(parser)
    parser.add_argument("--baselines-only", action="store_true", help="score only the baselines (no model)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import EvaluationConfig, collect_series, evaluate

    check_out_folder(args.out)
    try:
        config = _config(args, EvaluationConfig)
    except ValueError as exc:
        raise UsageError(str(exc).replace("start must", "--from must")) from exc

    if not args.baselines_only:
        check_model_arguments(args)  # before reading the data
    series = collect_series(args.files, read_options(args))
    predictor, model_name = None, None
    if not args.baselines_only:
        predictor = load_predictor(args)
        model_name = predictor.sources.get("model", args.model) if args.model != "default" else "default (bundled)"
        progress(args, f"loaded model {model_name} on {predictor.device}")
    report, close_bar = origin_progress(args) if predictor is not None else (None, lambda: None)
    try:
        evaluation = evaluate(series, predictor, config, model_name=model_name, progress=report,
                              engine=engine_of(args))
    finally:
        close_bar()
    progress(args, f"evaluated {len(series)} series")
    for name, why in evaluation.run.skipped.items():
        progress(args, f"skipped {name}: {why}")
    written = evaluation.write(args.out, plots=not args.no_plots)
    timing = evaluation.run.timing
    speed = f", {timing['origins_per_second']:.2f} origins/s" if "origins_per_second" in timing else ""
    progress(args, f"{int(timing['origins'])} origins in {timing['seconds_total']:.1f}s{speed}; "
                   f"wrote {', '.join(p.name for p in written)} to {args.out}")
    sys.stdout.write(console_report(evaluation))
    return 0


def _config(args: argparse.Namespace, config_class):
    return config_class(
        lookback=args.lookback, pred_len=args.pred_len, sample_count=args.samples, stride=args.stride,
        max_origins=None if args.all_origins else args.origins, tail_fraction=args.tail_fraction,
        min_history=args.min_history, vol_window=args.vol_window, batch_size=args.batch_size, seed=args.seed,
        T=args.temperature, top_k=args.top_k, top_p=args.top_p, calibrate=args.calibrate,
        dequantise=args.dequantise, start=args.start, combine=args.combine,
        baseline_returns=args.baseline_returns or None)


def console_report(evaluation: Evaluation) -> str:
    """The pooled table, then (with a model) the model against each baseline and the targets, then CRPS
    by horizon step and the notes (baselines not run, GARCH fallbacks), as Markdown."""
    from ..evaluation.report import markdown_table, notes_lines, versus_frame

    parts = [markdown_table(evaluation.pooled, "metric")]
    if not evaluation.versus.empty:
        parts.append("model against each baseline (crps_rel, paired over origins):\n"
                     + markdown_table(versus_frame(evaluation), "baseline"))
    targets = evaluation.targets()
    if not targets.empty:
        parts.append("targets:\n" + markdown_table(targets.set_index("target"), "target"))
    if not evaluation.crps_steps.empty:
        parts.append("crps_rel by horizon step:\n" + markdown_table(evaluation.crps_steps, "step"))
    parts += notes_lines(evaluation)
    return "\n\n".join(parts) + "\n"
