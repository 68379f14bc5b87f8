"""``kronos forecast``: read the bars, forecast them through the door, write the tidy frame (and a chart)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..data.calendar import MAX_PRED_LEN
from ..forecasting.result import DEFAULT_PATHS, DEFAULT_QUANTILES, DEFAULT_SEED
from .common import (
    UsageError,
    add_model_arguments,
    add_table_arguments,
    check_model_arguments,
    load_predictor,
    positive_int,
    progress,
    read_options,
)

OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}
PLOT_FORMATS = (".png", ".svg", ".html")
UNIVERSE_FAILED = 3  # exit status when some series of a universe failed (the others were written)

FORECAST_EXAMPLES = """\
examples:
  kronos forecast prices.csv --pred-len 20
  kronos forecast prices.csv --pred-len 48 --samples 50 --seed 0 --out forecast.parquet --plot chart.png
  kronos forecast prices.parquet --model runs/my-finetune
  kronos forecast prices.parquet --model ./my-model --tokenizer ./my-tokenizer --max-context 256
  kronos forecast prices.csv --model NeoQuasar/Kronos-small --tokenizer NeoQuasar/Kronos-Tokenizer-base
  cat prices.csv | kronos forecast - --freq 5min --quantiles 0.05,0.5,0.95 --plot chart.html

  kronos forecast panel.csv --id-column symbol --pred-len 10 --out panel-forecast.csv
  kronos forecast prices.csv --holdout 20 --plot check.png

--holdout N forecasts the last N bars of the file from the bars before them and adds the realised
values, the CRPS and the 50%/80% interval hits to the table (forecast vs actual).

  kronos forecast data/ --pred-len 10 --out forecasts/                  # a universe: one dataset folder
  kronos forecast 'data/*.parquet' --out forecasts/ --engine ray --workers 4
  kronos forecast universe.parquet --out forecasts/ --engine ray --address auto --gpus-per-worker 1

input: a CSV (, ; or tab separated), Parquet or JSON table with a timestamp column (timestamps,
timestamp, date, datetime, time, ts; or --time-column) and open, high, low, close (volume and amount
optional; names case-insensitive). Yahoo and MetaTrader exports and epoch numbers are understood; a
symbol column (symbol, ticker, item_id, id; or --id-column) holds many series.
output: one row per (timestamp, column) with the mean and one column per quantile level (first the
symbol column for a long table).
universe: with several inputs, a folder, a glob, --engine, or an --out folder (no file extension),
every series is forecast into one dataset folder, one partition per series (id=<series>/part-0.parquet),
in batches; series already there are skipped (rerun a killed job to resume); failures go to
_errors.csv there and the exit status is 3 (0 when every series was forecast).
"""



def pred_len_int(text: str) -> int:
    value = positive_int(text)
    if value > MAX_PRED_LEN:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_PRED_LEN} bars, got {value}")
    return value


def parse_quantiles(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--quantiles must be comma-separated numbers in [0, 1], got {text!r}") from None
    if not levels or any(not 0 <= q <= 1 for q in levels):
        raise UsageError(f"--quantiles must be comma-separated numbers in [0, 1], got {text!r}")
    return levels


# -- kronos forecast -----------------------------------------------------------------------------------

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forecast", help="forecast the next bars of a CSV/Parquet file", epilog=FORECAST_EXAMPLES,
        description="Forecast the next --pred-len bars after the last bar of FILE, with quantile bands.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", metavar="FILE", nargs="+",
                        help="CSV, Parquet or JSON file of bars, or - for standard input; several files, folders or "
                             "globs forecast a universe into an --out folder")
    parser.add_argument("--pred-len", type=pred_len_int, default=None,
                        help=f"bars to forecast, 1 to {MAX_PRED_LEN} (default 20; with --holdout N: N)")
    parser.add_argument("--holdout", type=positive_int, default=None, metavar="N",
                        help="forecast the last N bars from the bars before them and compare: the table gains "
                             "realised, crps, in_50 and in_80; the chart draws the realised bars")
    parser.add_argument("--lookback", type=positive_int, default=None,
                        help="history bars to use, the last ones (default: all; the network sees the model's "
                             "lookback, earlier bars serve calibration)")
    parser.add_argument("--freq", default=None,
                        help="pandas frequency of the future bars (5min, h, D, B, W-FRI, ME); "
                             "default: inferred from the history's spacing and trading calendar")
    parser.add_argument("--calendar", default=None, metavar="EXCHANGE",
                        help="exchange whose holidays and early closes the future bars skip, e.g. XNYS, XLON, "
                             "XETR, XTKS (any exchange_calendars name); default: the exchange whose holidays "
                             "explain the weekdays missing from the history; none: no exchange calendar")
    parser.add_argument("--symbol", default=None, metavar="NAME",
                        help="forecast only this series of a long table (its symbol column); needed by --plot "
                             "for a file holding many series")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--samples", type=positive_int, default=DEFAULT_PATHS,
                          help=f"sample paths, forecast()'s sample_count (default {DEFAULT_PATHS})")
    sampling.add_argument("--temperature", "-T", type=float, default=1.0,
                          help="sampling temperature, forecast()'s T (default 1)")
    sampling.add_argument("--top-k", type=int, default=0, help="keep the k likeliest tokens; 0 = off, 1 = greedy")
    sampling.add_argument("--top-p", type=float, default=1.0, help="nucleus mass in (0, 1] (default 1: off)")
    sampling.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True,
                          help="rescale the paths' spread from forecasts at past origins of the history "
                               "(default: on)")
    sampling.add_argument("--dequantise", action=argparse.BooleanOptionalAction, default=True,
                          help="add the tokenizer's reconstruction residuals, drawn from the history, to the "
                               "paths (default: on)")
    sampling.add_argument("--combine", action=argparse.BooleanOptionalAction, default=True,
                          help="move the calibrated paths' spread toward GARCH(1,1)-t's and pool them with "
                               "GARCH-t paths, weighted by their CRPS at past origins of the history (default: on; "
                               "--no-combine: the model's paths alone)")
    sampling.add_argument("--seed", type=int, default=DEFAULT_SEED,
                          help=f"random seed of the sample paths (default {DEFAULT_SEED}: the same input gives the "
                               "same forecast; another seed draws other paths; in a universe each series draws from "
                               "a seed derived from this one and its id)")
    sampling.add_argument("--quantiles", default=",".join(map(str, DEFAULT_QUANTILES)),
                          help="comma-separated quantile levels (default %(default)s)")
    add_model_arguments(parser)
    add_table_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--out", "-o", default=None,
                        help="write the forecast to this .csv, .parquet or .json file (default: CSV on stdout), "
                             "with any engine; a path without extension is a universe's dataset folder")
    output.add_argument("--plot", default=None, help="draw the chart to this .png, .svg or .html file")
    output.add_argument("--history-bars", type=positive_int, default=120,
                        help="history bars shown in the chart (default 120)")
    output.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    universe = parser.add_argument_group("universe (many series into one dataset folder)")
    universe.add_argument("--engine", choices=("local", "ray"), default=None,
                          help="local: this process (default); ray: Ray Data actors (pip install 'kronos-kline[ray]')")
    universe.add_argument("--batch-size", type=positive_int, default=32,
                          help="series per forecast batch, of similar length (default 32)")
    universe.add_argument("--format", choices=("parquet", "csv"), default="parquet",
                          help="files of the dataset (default parquet)")
    universe.add_argument("--partition", choices=("series", "run"), default="series",
                          help="series: one file per series (default); run: one file per batch under run=--run")
    universe.add_argument("--run", default=None, help="run label: partitions go under run=LABEL/ (e.g. the date)")
    universe.add_argument("--paths", action="store_true", help="also write the sample paths (path_0, path_1 ...)")
    universe.add_argument("--overwrite", action="store_true",
                          help="forecast every series again (default: skip the series already in --out)")
    universe.add_argument("--address", default=None,
                          help="Ray cluster to join (auto, ray://head:10001); default: start Ray on this machine")
    universe.add_argument("--workers", type=positive_int, default=2, help="Ray actors, each with a model (default 2)")
    universe.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per Ray actor (default 1)")
    universe.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per Ray actor (default 0)")
    parser.set_defaults(func=run)
    from .info import register_info

    register_info(subparsers)


def _check_calendar(args: argparse.Namespace) -> None:
    from ..data.calendar import check_calendar

    try:
        args.calendar = check_calendar(args.calendar)
    except ValueError as exc:
        raise UsageError(str(exc).replace("calendar ", "--calendar ", 1).replace("'none'", "none")) from None


def _check_table_out(args: argparse.Namespace) -> None:
    """An --out table file: a known extension, and pyarrow for Parquet (checked before any forecast)."""
    if args.out is None:
        return
    suffix = Path(args.out).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UsageError(f"--out {args.out}: unknown extension; use .csv, .parquet or .json")
    if OUTPUT_FORMATS[suffix] == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UsageError(f"--out {args.out}: writing Parquet needs pyarrow: pip install 'kronos-kline[parquet]' "
                         "(or give a .csv or .json file)")


def _check_outputs(args: argparse.Namespace) -> None:
    _check_table_out(args)
    if args.plot is not None and Path(args.plot).suffix.lower() not in PLOT_FORMATS:
        raise UsageError(f"--plot {args.plot}: unknown extension; use .png, .svg or .html")
    if args.plot is not None:
        needed = "plotly" if Path(args.plot).suffix.lower() == ".html" else "matplotlib"
        if importlib.util.find_spec(needed) is None:  # checked before the forecast, not after it
            raise UsageError(f"--plot {args.plot} needs {needed}: pip install 'kronos-kline[plot]'")
    for option, path in (("--out", args.out), ("--plot", args.plot)):
        if path is not None:
            _check_writable(option, Path(path))


def _check_writable(option: str, path: Path) -> None:
    """Fail before the forecast, in one line naming the path, when ``path`` cannot be written."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: folder {folder} does not exist")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder")
    if path.exists() and not path.is_file():  # a device or pipe (/dev/stdout) is written in place
        if not os.access(path, os.W_OK):
            raise UsageError(f"{option} {path}: not writable")
        return
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write in {folder}: {exc.strerror or exc}") from None


def _write(option: str, path: str, data: bytes) -> None:
    """Write an output file (atomically when it is a regular file); an OSError becomes one line naming it."""
    from ..io import atomic_write_bytes as write_output

    target = Path(path)
    try:
        if target.exists() and not target.is_file():
            with open(target, "wb") as handle:
                handle.write(data)
        else:
            write_output(target, data)
    except OSError as exc:
        raise UsageError(f"{option} {path}: could not write: {exc.strerror or exc}") from None


def _frame_bytes(frame: Any, fmt: str) -> bytes:
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    if fmt == "json":
        return frame.to_json(orient="records", date_format="iso", indent=1).encode()
    return frame.to_csv(index=False).encode()


def _read(args: argparse.Namespace) -> tuple[list, str]:
    from ..data.tables import read_series

    name = "standard input" if args.file[0] == "-" else args.file[0]
    series = read_series(args.file[0], name, read_options(args))
    if series[0].id_column is None:
        s = series[0]
        progress(args, f"read {len(s)} bars from {name} ({s.timestamps[0]} to {s.timestamps[-1]})")
    else:
        progress(args, f"read {len(series)} series ({series[0].id_column} column), {sum(map(len, series))} bars "
                       f"from {name}")
    if args.symbol is not None:
        chosen = [s for s in series if s.name == args.symbol]
        if series[0].id_column is None or not chosen:
            raise UsageError(f"--symbol {args.symbol}: {name} has no such series ({_symbols_text(series)})")
        series = chosen
    elif args.plot is not None and len(series) > 1:
        raise UsageError(f"--plot draws one series; {name} holds {len(series)} ({series[0].id_column} column): pick "
                         f"one with --symbol {series[0].name} ({_symbols_text(series)})")
    return series, name


def _symbols_text(series: list, limit: int = 8) -> str:
    if series[0].id_column is None:
        return "it holds one series, without a symbol column"
    names = [s.name for s in series]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{series[0].id_column} values {', '.join(names[:limit])}{more}"


def _calibration_note(args: argparse.Namespace, forecasts: list) -> None:
    calibrations = [f.calibration for f in forecasts if f.calibration is not None]
    if not calibrations:
        return
    if len(forecasts) > 1:
        applied = sum(c.applied for c in calibrations)
        progress(args, f"calibrated {applied} of {len(forecasts)} series on past origins of their history")
        return
    progress(args, calibrations[0].summary)


def _universe_mode(args: argparse.Namespace) -> bool:
    files = args.file
    if len(files) > 1 or args.engine is not None:
        return True
    if files[0] != "-" and (Path(files[0]).is_dir() or any(c in files[0] for c in "*?[")):
        return True
    return args.out is not None and Path(args.out).suffix == "" and files[0] != "-"


def run_universe(args: argparse.Namespace) -> int:
    if args.out is None:
        raise UsageError("a universe (several files, a folder or a glob) needs --out: a FOLDER for its dataset, or "
                         "a .csv, .parquet or .json file for one table")
    if args.symbol is not None:
        raise UsageError("--symbol picks one series of one FILE; leave it out when forecasting a universe")
    if Path(args.out).suffix:
        _check_table_out(args)
        _check_writable("--out", Path(args.out))
        return _universe_to_file(args)
    return _universe_to_folder(args, args.out)


def _universe_to_file(args: argparse.Namespace) -> int:
    """A universe into one table file (the same --out rule as one series): forecast into a dataset folder beside
    it, then write its rows (id first) to the file in one step and remove the folder."""
    import shutil

    from ..universe import read_universe

    target = Path(args.out)
    parts = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.resolve().parent))
    try:
        args.format = "parquet" if importlib.util.find_spec("pyarrow") is not None else "csv"
        args.partition, args.run, args.overwrite = "series", None, True
        batch_log = logging.getLogger("kronos.universe")
        level = batch_log.level
        batch_log.setLevel(logging.ERROR)  # its warning names the folder removed below; the failures are listed here
        try:
            status = _universe_to_folder(args, str(parts), shown=args.out)
        finally:
            batch_log.setLevel(level)
        try:
            frame = read_universe(parts)
        except FileNotFoundError:
            raise UsageError(f"--out {args.out}: no series could be forecast, nothing written") from None
        _write("--out", args.out, _frame_bytes(frame, OUTPUT_FORMATS[target.suffix.lower()]))
        progress(args, f"wrote {args.out}")
        return status
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def _universe_to_folder(args: argparse.Namespace, out: str, shown: str | None = None) -> int:
    from ..universe import forecast_universe

    shown = shown or out
    if "-" in args.file:
        raise UsageError("standard input (-) holds one table; give files, folders or globs for a universe")
    if args.plot is not None:
        raise UsageError("--plot draws one series; leave it out when forecasting a universe")
    check_model_arguments(args)
    if args.partition == "run" and args.run is None:
        raise UsageError("--partition run needs --run LABEL (e.g. the date of the run)")
    engine = args.engine or "local"
    seed = 0 if args.seed is None else args.seed
    progress(args, f"forecasting {args.pred_len} bars of every series in {' '.join(args.file)} into {shown} "
                   f"({engine} engine, seed {seed})")
    predictor = None
    if engine == "local":
        started = time.perf_counter()
        predictor = load_predictor(args)
        progress(args, f"loaded model {args.model} on {predictor.device} in {time.perf_counter() - started:.1f}s")
    result = forecast_universe(
        args.file, out, predictor=predictor, model=args.model,
        tokenizer=None if args.tokenizer == "default" else args.tokenizer, device=args.device,
        max_context=args.max_context, engine=engine, pred_len=args.pred_len, sample_count=args.samples,
        quantiles=parse_quantiles(args.quantiles), seed=seed, T=args.temperature, top_k=args.top_k, top_p=args.top_p,
        calibrate=args.calibrate, dequantise=args.dequantise, combine=args.combine, freq=args.freq,
        calendar=args.calendar, lookback=args.lookback,
        batch_size=args.batch_size, format=args.format, partition=args.partition, run=args.run, paths=args.paths,
        overwrite=args.overwrite, address=args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker, progress=not args.quiet, options=read_options(args))
    skipped = f", {len(result.skipped)} already there" if result.skipped else ""
    where = "forecast" if shown != out else f"written to {out}"
    progress(args, f"{len(result.written)} series {where}{skipped} in {result.seconds:.1f}s")
    if result.failed:  # the library's warning has said how many and where the reasons are
        if shown != out:
            print(f"kronos: {len(result.failed)} series failed:", file=sys.stderr)
            for series_id, reason in result.failed.items():
                print(f"kronos:   {series_id}: {reason}", file=sys.stderr)
        return UNIVERSE_FAILED
    return 0


def run(args: argparse.Namespace) -> int:
    _check_calendar(args)
    if _universe_mode(args):
        if args.backend == "onnx":
            raise UsageError("--backend onnx forecasts files one run at a time; give one FILE (no --engine)")
        if args.holdout is not None:
            raise UsageError("--holdout compares one series with its last bars; give one FILE")
        args.pred_len = args.pred_len or 20
        return run_universe(args)

    from ..bars import CLOSE
    from ..data.calendar import parse_freq
    from ..forecasting.forecast import forecast_series
    from ..forecasting.inputs import future_of, tidy_frame
    from ..forecasting.options import ForecastOptions

    _check_outputs(args)
    check_model_arguments(args)
    options = ForecastOptions(sample_count=args.samples, T=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              quantiles=parse_quantiles(args.quantiles), seed=args.seed, calibrate=args.calibrate,
                              dequantise=args.dequantise, combine=args.combine,
                              verbose=not args.quiet and sys.stderr.isatty())
    if args.freq:
        parse_freq(args.freq)
    if args.holdout is not None and args.pred_len not in (None, args.holdout):
        raise UsageError(f"--holdout {args.holdout} forecasts the last {args.holdout} bars; leave --pred-len out or "
                         f"give the same number (got --pred-len {args.pred_len})")
    args.pred_len = args.pred_len or args.holdout or 20
    series, name = _read(args)
    realised = _hold_out(args, series)
    series = [s.slice(None, len(s) - args.holdout) for s in series] if realised else series
    started = time.perf_counter()
    predictor = load_predictor(args)
    progress(args, f"loaded model {args.model} on {predictor.device} in {time.perf_counter() - started:.1f}s")
    if args.lookback:
        series = [s.slice(-args.lookback, None) for s in series]
    futures = _futures(args, series, realised, future_of)
    _say_what(args, series, futures, predictor.lookback)
    started = time.perf_counter()
    forecasts = forecast_series(predictor, series, options, [future for future, _ in futures])
    progress(args, f"done in {time.perf_counter() - started:.1f}s")
    _calibration_note(args, forecasts)
    frames = None
    if realised:
        from ..forecasting.holdout import holdout_frame, summary

        frames = [holdout_frame(f, realised[s.name].frame()) for f, s in zip(forecasts, series)]
        for f, s in zip(forecasts, series):
            got = summary(f, realised[s.name].frame(), float(s.bars[-1, CLOSE]))
            progress(args, f"{s.name}: held-out {got['bars']} bars from {realised[s.name].timestamps[0]}: close CRPS "
                           f"{got['crps_close']:.4g} ({got['crps_close_rel']:.2%} of the last close), inside the 50% "
                           f"interval {got['coverage_50']:.0%}, the 80% interval {got['coverage_80']:.0%}")
    frame = tidy_frame(forecasts, [s.name for s in series], series[0].id_column, frames=frames, float32=True)
    if args.out is None:
        sys.stdout.write(frame.to_csv(index=False))
    else:
        _write("--out", args.out, _frame_bytes(frame, OUTPUT_FORMATS[Path(args.out).suffix.lower()]))
        progress(args, f"wrote {args.out}")
    if args.plot is not None:
        from ..charts import chart_bytes

        held = realised[series[0].name].frame() if realised else None
        title = Path(name).stem + (f": forecast vs the last {args.holdout} bars" if held is not None else "")
        _write("--plot", args.plot, chart_bytes(series[0].frame(), forecasts[0], Path(args.plot).suffix,
                                                args.history_bars, title, realised=held))
        progress(args, f"drew {args.plot}")
    return 0


def _hold_out(args: argparse.Namespace, series: list) -> dict:
    """With --holdout N: each series' last N bars, by name (checked to leave 2 bars before them)."""
    if args.holdout is None:
        return {}
    for s in series:
        if len(s) - args.holdout < 2:
            raise UsageError(f"--holdout {args.holdout}: {s.name} has {len(s)} bars; at least 2 must remain "
                             "before the held-out ones")
    return {s.name: s.slice(len(s) - args.holdout, None) for s in series}


def _futures(args: argparse.Namespace, series: list, realised: dict, future_of: Any) -> list:
    """Per series, (future timestamps, the rule that made them): the held-out bars' or the calendar's."""
    try:
        made = iter(future_of([s for s in series if s.name not in realised], args.pred_len, args.freq,
                              args.calendar))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return [(realised[s.name].timestamps, "the held-out bars' timestamps") if s.name in realised else next(made)
            for s in series]


def _say_what(args: argparse.Namespace, series: list, futures: list, lookback: int) -> None:
    longest = max(len(s) for s in series)
    seen = "" if longest <= lookback else f" (the model sees the last {lookback})"
    if len(series) == 1:
        what = f"{args.pred_len} bars ({futures[0][1]}) from {longest} history bars"
    else:
        what = f"{args.pred_len} bars of {len(series)} series from up to {longest} history bars"
    progress(args, f"forecasting {what}{seen}, {args.samples} sample paths")
