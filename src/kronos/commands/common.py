"""What the commands share: the error for user mistakes, argument types, and the model options."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """A mistake in the user's input: printed as one line, exit status 2."""


def flag_names(message: str, names: Iterable[str]) -> str:
    """A library message with the Python arguments it names (``val_fraction=``, ``resume=True``) written as
    this command's flags (``--val-fraction``, ``--resume``); other text is left alone."""
    pattern = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    if not pattern:
        return message

    def flag(match: re.Match) -> str:
        name, value = match[1], match[2] or ""
        text = "--" + name.replace("_", "-")
        if value == "True":
            return text
        return text + (" " + value if value and value[0] not in ":/,;)" else value)

    return re.sub(rf"\b({pattern})=(True\b|\S)?", flag, message)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser, backend: bool = True) -> None:
    """--model, --tokenizer, --max-context, --device: the options every command that loads a model shares."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="default",
                       help="model folder, kronos train --out folder (its best/), hub id, or 'default' (the "
                            "bundled model; the default)")
    group.add_argument("--tokenizer", default=None,
                       help="tokenizer folder, hub id or 'default' (default: the one the model was trained with, "
                            "recorded in its folder by kronos train; needed for hub ids)")
    group.add_argument("--max-context", type=positive_int, default=None,
                       help="most tokens the model sees (default: what the model folder records; 512 for others)")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda, mps or cpu)")
    group.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "int8"],
                       help="how the network's weights are stored and run: float32 (default, exact), bfloat16, "
                            "or int8 (CPU only; faster, slightly different forecasts, see docs/performance.md)")
    if not backend:  # commands that describe or serve a PyTorch model (info, serve) run on PyTorch only
        return
    group.add_argument("--backend", choices=BACKENDS, default="torch",
                       help="torch: PyTorch (default); onnx: ONNX Runtime on a folder written by kronos export onnx "
                            "(--model DIR; --dtype float32 or int8; runs without PyTorch: pip install "
                            "'kronos-kline[onnx]')")


BACKENDS = ("torch", "onnx")
MODEL_ARGUMENTS = ("model", "tokenizer", "max_context", "lookback", "clip", "device")


class _FlagFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return "kronos: " + flag_names(record.getMessage(), MODEL_ARGUMENTS)


def add_sampling_overrides(parser: argparse.ArgumentParser) -> None:
    """Sampling flags that default to None: unset, the predictor's own default holds."""
    sampling = parser.add_argument_group("sampling (unset: the predictor's own defaults)")
    sampling.add_argument("--temperature", "-T", type=float, default=None,
                          help="sampling temperature, the model's T")
    sampling.add_argument("--top-k", type=int, default=None, help="keep the k likeliest tokens; 0 = off")
    sampling.add_argument("--top-p", type=float, default=None, help="nucleus mass in (0, 1]")
    sampling.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                          help="apply (or not) the predictor's calibration of the sample paths")
    sampling.add_argument("--dequantise", action=argparse.BooleanOptionalAction, default=None,
                          help="add (or not) the tokenizer's reconstruction residuals to the sample paths")
    sampling.add_argument("--combine", action=argparse.BooleanOptionalAction, default=None,
                          help="pool (or not) the model's paths with the baselines weighted on past origins "
                               "(--no-combine: the model's paths alone)")


def check_model_arguments(args: argparse.Namespace) -> None:
    """Before any data is read: a model without --tokenizer must record the tokenizer it was trained with
    (checked once per command: a second call returns at once)."""
    from ..model.checkpoint import read_predictor_info
    from ..model.default_model import resolve_source

    if getattr(args, "model_arguments_checked", False):
        return
    _check_model_arguments(args, read_predictor_info, resolve_source)
    args.model_arguments_checked = True


def _check_model_arguments(args: argparse.Namespace, read_predictor_info: Any, resolve_source: Any) -> None:

    if getattr(args, "backend", "torch") == "onnx":
        return _check_onnx_arguments(args)
    if args.tokenizer is not None or args.model == "default":
        return
    try:
        recorded = read_predictor_info(resolve_source(args.model, "model")).get("tokenizer")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if recorded is None:
        raise UsageError(f"--tokenizer is required: {args.model} records no tokenizer (no predictor.json written by "
                         "kronos train); give a folder, a hub id such as NeoQuasar/Kronos-Tokenizer-base, or "
                         "'default'")


def load_predictor(args: argparse.Namespace):
    """A KronosPredictor from --model/--tokenizer/--max-context/--device/--dtype ('default' = the bundled weights; a
    trained model's folder supplies the tokenizer and context it records). Mismatches are reported on stderr."""
    check_model_arguments(args)
    if getattr(args, "backend", "torch") == "onnx":
        return _load_onnx_predictor(args)
    from ..forecasting.predictor import KronosPredictor

    dtype = getattr(args, "dtype", None)
    logger = logging.getLogger("kronos.forecasting.predictor")
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(_FlagFormatter())
        logger.addHandler(handler)
    try:
        return KronosPredictor.from_pretrained(args.model, args.tokenizer, device=args.device,
                                               max_context=args.max_context, dtype=dtype)
    except ValueError as exc:
        if str(exc).startswith("dtype="):  # checked before any weight is read; here it is --dtype int8
            raise UsageError(flag_names(str(exc), ("dtype", "device")).replace("'", "")) from None
        raise UsageError(flag_names(str(exc), MODEL_ARGUMENTS)) from exc
    except RuntimeError as exc:  # e.g. an unavailable device
        raise UsageError(f"could not load the model on device {args.device!r}: {str(exc).splitlines()[0]}") from exc


def _check_onnx_arguments(args: argparse.Namespace) -> None:
    """--backend onnx: --model is an exported folder, --dtype float32 or int8, no --tokenizer."""
    from ..onnx.runtime import read_meta

    if args.model == "default":
        raise UsageError("--backend onnx needs --model DIR, a folder written by: kronos export onnx MODEL --out DIR")
    if args.tokenizer is not None:
        raise UsageError("--backend onnx: the exported folder holds its tokenizer; leave --tokenizer out")
    if getattr(args, "dtype", "float32") not in ("float32", "int8"):
        raise UsageError(f"--backend onnx runs --dtype float32 or int8, not {args.dtype}")
    try:
        read_meta(args.model)
    except ValueError as exc:
        raise UsageError(f"--model {exc}") from exc


def _load_onnx_predictor(args: argparse.Namespace):
    from ..onnx.predictor import OnnxPredictor

    device = args.device or "cpu"
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise UsageError(f"--backend onnx runs on --device cpu or cuda, not {device}")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else None
    try:
        return OnnxPredictor(args.model, dtype=getattr(args, "dtype", "float32"), providers=providers,
                             max_context=args.max_context)
    except ValueError as exc:
        raise UsageError(flag_names(str(exc), MODEL_ARGUMENTS)) from exc


def model_summary(predictor: Any, source: str, tokenizer_source: str) -> dict[str, Any]:
    """Configuration, parameter counts, precision and size in memory (MiB) of a loaded predictor."""
    from ..model.precision import describe, stored_bytes

    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    def config(module: Any) -> dict[str, Any]:
        cfg = getattr(module, "config", None)
        if cfg is None:
            return {}
        return {k: v for k, v in vars(cfg).items() if not k.startswith("_")}

    model_params, tokenizer_params = count(predictor.model), count(predictor.tokenizer)
    sources = getattr(predictor, "sources", None) or {}
    return {
        "model": sources.get("model", source), "tokenizer": sources.get("tokenizer", tokenizer_source),
        "device": str(predictor.device),
        "max_context": predictor.max_context, "lookback": predictor.lookback, "model_parameters": model_params,
        "tokenizer_parameters": tokenizer_params,
        **describe(predictor.model),
        "size_mib": round((stored_bytes(predictor.model) + stored_bytes(predictor.tokenizer)) / 2**20, 2),
        "model_config": config(predictor.model), "tokenizer_config": config(predictor.tokenizer),
    }


def check_out_folder(out: str) -> None:
    """``--out`` of a command that writes a folder of reports: refuse an existing file before any work."""
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is an existing file; give a folder")


def progress(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"kronos: {message}", file=sys.stderr, flush=True)


def key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW, got {text!r}")
    key, value = text.split("=", 1)
    if not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected OLD=NEW with both names, got {text!r}")
    return key.strip(), value.strip()


def add_table_arguments(parser: argparse.ArgumentParser, nan_default: str | None = "error",
                        defaults: bool = True) -> None:
    """--time-column, --sort, --nan, --rename, --id-column, --adjusted, --time-unit, --date-format, --dayfirst: how
    data files are read,
    the same in every command (kronos.data.tables.ReadOptions). Without ``defaults`` unset flags are left out."""
    from ..data.tables import NAN_POLICIES, TIME_UNITS

    def default(value: Any) -> dict[str, Any]:
        return {"default": value} if defaults else {}

    group = parser.add_argument_group("reading the data")
    group.add_argument("--time-column", metavar="NAME", **default(None),
                       help="the timestamp column (default: timestamps, timestamp, date, datetime, time or ts)")
    group.add_argument("--sort", action=argparse.BooleanOptionalAction, **default(None),
                       help="sort rows by time (default: newest-first files are reversed, other disorder is an "
                            "error; --no-sort refuses both)")
    shown = f" (default {nan_default})" if nan_default else ""
    group.add_argument("--nan", choices=NAN_POLICIES, **default(nan_default),
                       help=f"rows with missing values: drop, ffill (forward-fill) or error{shown}")
    group.add_argument("--rename", action="append", type=key_value, metavar="OLD=NEW", **default(None),
                       help="use file column OLD as NEW, e.g. Last=close (repeatable)")
    group.add_argument("--id-column", metavar="NAME", **default(None),
                       help="symbol column of a long table holding many series (default: symbol, ticker, item_id "
                            "or id when present)")
    group.add_argument("--adjusted", action="store_true", **default(False),
                       help="use the adjusted close (Adj Close) and scale open, high, low by the same factor")
    group.add_argument("--time-unit", choices=TIME_UNITS, **default(None),
                       help="unit of epoch-number timestamps (default: from their size)")
    group.add_argument("--date-format", metavar="FORMAT", **default(None),
                       help="strftime format of the timestamps, e.g. %%d.%%m.%%Y (a time of day after the date is "
                            "read too; default: found from the values)")
    group.add_argument("--dayfirst", action=argparse.BooleanOptionalAction, **default(None),
                       help="read dates such as 10.04.2015 day first (--dayfirst) or month first (--no-dayfirst); "
                            "default: from the file (a field above 12, or the reading in time order), refused "
                            "when the file cannot tell")


def read_options(args: argparse.Namespace):
    """The ReadOptions of the --time-column ... --dayfirst flags."""
    from ..data.tables import ReadOptions

    return ReadOptions(time_column=args.time_column, sort=args.sort, nan=args.nan, rename=args.rename,
                       id_column=args.id_column, adjusted=args.adjusted, time_unit=args.time_unit,
                       date_format=args.date_format, dayfirst=args.dayfirst)


class StderrHandler(logging.StreamHandler):
    """Writes ``kronos: message`` lines to whatever ``sys.stderr`` is at the time of the record."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("kronos: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine and the Ray actor pool's options, as ``kronos forecast`` has them."""
    group = parser.add_argument_group("engine (where the model's batches run; the same numbers on each)")
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process (default); ray: Ray Data actors (pip install 'kronos-kline[ray]')")
    group.add_argument("--address", default=None,
                       help="Ray cluster to join (auto, ray://head:10001); default: start Ray on this machine")
    group.add_argument("--workers", type=positive_int, default=2, help="Ray actors, each with a model (default 2)")
    group.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per Ray actor (default 1)")
    group.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per Ray actor (default 0)")


def engine_of(args: argparse.Namespace):
    """The :class:`kronos.evaluation.origins.Engine` the engine arguments ask for."""
    from ..evaluation.origins import Engine

    if not args.cpus_per_worker > 0 or args.gpus_per_worker < 0:
        raise UsageError(f"--cpus-per-worker must be > 0 and --gpus-per-worker >= 0, got {args.cpus_per_worker} "
                         f"and {args.gpus_per_worker}")
    return Engine(args.engine, args.address, args.workers, args.cpus_per_worker, args.gpus_per_worker)


def origin_progress(args: argparse.Namespace):
    """(callback(done, total), close()) for a progress bar over forecast origins on stderr (none with --quiet)."""
    if args.quiet:
        return None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(desc="forecast", unit="origin", file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update, bar.close
