"""``kronos train-tokenizer`` and ``kronos train``: train or fine-tune from CSV/Parquet files.

Every option can also come from a YAML or TOML file (``--config``) whose keys are the option names
(``batch_size`` or ``batch-size``); flags given on the command line override the file, and the file
overrides the defaults. The same commands run under ``torchrun --nproc_per_node=N``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from .common import StderrHandler, UsageError, flag_names

# (flag, type, help, applies to: "both" / "tokenizer" / "predictor"); defaults come from TrainOptions.
OPTIONS: tuple[tuple[str, Any, str, str], ...] = (
    ("--lookback", int, "history bars per window; normalisation statistics come from these bars only (default: "
     "the --init model's, else 90)", "both"),
    ("--horizon", int, "bars after the history in each window (default: the --init model's, else 10)", "both"),
    ("--clip", float, "clip normalised values to ±CLIP", "both"),
    ("--batch-size", int, "windows per micro-batch and process", "both"),
    ("--accumulation-steps", int, "micro-batches per optimizer step (gradient accumulation)", "both"),
    ("--lr", float, "peak learning rate of the one-cycle schedule (0: only validate the starting weights)", "both"),
    ("--adam-beta1", float, "AdamW beta1", "both"),
    ("--adam-beta2", float, "AdamW beta2", "both"),
    ("--weight-decay", float, "AdamW weight decay", "both"),
    ("--grad-clip", float, "clip the global gradient norm to this value", "both"),
    ("--pct-start", float, "fraction of the steps spent warming up (one-cycle schedule)", "both"),
    ("--div-factor", float, "the schedule starts at lr / DIV_FACTOR", "both"),
    ("--epochs", int, "epochs of --steps-per-epoch steps each", "both"),
    ("--steps-per-epoch", int, "optimizer steps per epoch (windows are redrawn every epoch)", "both"),
    ("--max-steps", int, "total optimizer steps; overrides epochs × steps-per-epoch (sets the schedule length)",
     "both"),
    ("--max-minutes", float, "wall-clock budget: the speed of the first steps sizes the schedule (warm-up and "
     "decay) to the steps that fit; stops, validates and saves when the time is up (--resume continues)", "both"),
    ("--stop-after", int, "stop this invocation after N steps, saving a checkpoint (the schedule still spans all "
     "steps; --resume continues)", "both"),
    ("--val-fraction", float, "last fraction of every series (before the test part) held out for validation", "both"),
    ("--test-fraction", float, "last fraction of every series held out entirely (never read in training)", "both"),
    ("--val-windows", int, "size of the fixed validation set of windows", "both"),
    ("--select-by", str, "which validated checkpoint becomes best/: crps (forecast CRPS on the validation tails; "
     "the predictor's default) or loss (validation loss)", "predictor"),
    ("--val-forecast-origins", int, "forecast origins scored on the validation tails at every validation "
     "(0: none, select by loss)", "predictor"),
    ("--val-forecast-samples", int, "sample paths per scored forecast origin", "predictor"),
    ("--val-forecast-calibrated", bool, "also score calibrated forecasts of the starting and the best trained "
     "weights for the report (slower: calibration forecasts past origins too)", "predictor"),
    ("--eval-every", int, "validate every N steps (default: once per epoch) and at the end", "both"),
    ("--save-every", int, "write checkpoint.pt every N steps (and at the end)", "both"),
    ("--log-every", int, "append a train row to metrics.jsonl every N steps", "both"),
    ("--seed", int, "seed of weights, windows and dropout", "both"),
    ("--device", str, "auto, cpu, cuda, or a torch device name", "both"),
    ("--precision", str, "auto (bf16 autocast on CUDA, fp32 elsewhere), fp32 or bf16", "both"),
    ("--size", str, "train from scratch with a published size: base or 2k (tokenizer), mini, small or base "
     "(predictor); default base / small", "both"),
    ("--init", str, "fine-tune from this checkpoint: a folder, a train --out folder (its best/), a hub id such as "
     "NeoQuasar/Kronos-small, or default (the bundled model)", "both"),
)
EXAMPLES = {
    "tokenizer": """examples:
  kronos train-tokenizer --data tests/data --out runs/tok --max-steps 2000 --val-fraction 0.1
  kronos train-tokenizer --data prices.parquet --out runs/tok-ft --init NeoQuasar/Kronos-Tokenizer-base
  kronos train-tokenizer --config examples/train-tokenizer-tiny.yaml --out runs/tiny --model-config d_model=64
  torchrun --nproc_per_node=2 -m kronos.cli train-tokenizer --data DIR --out runs/tok""",
    "predictor": """examples:
  kronos train --data tests/data --tokenizer runs/tok --out runs/model --size mini --max-minutes 60
  kronos train --data prices.csv --init default --tokenizer default --out runs/ft --max-minutes 10
  kronos train --data prices.csv --tokenizer NeoQuasar/Kronos-Tokenizer-base --init NeoQuasar/Kronos-small \\
      --out runs/small-ft
  kronos train --config examples/train-predictor-tiny.yaml --out runs/model --resume""",
}
OUTPUTS = """outputs in --out: best/ and final/ (from_pretrained folders{records}), metrics.jsonl (train and
validation loss, {extra}, learning rate, bars/s), report.json (the starting weights, validated before the
first step, against best/), checkpoint.pt (for --resume), options.json, splits.json."""


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _add_parser(subparsers, name: str, kind: str, help_text: str) -> None:
    from ..training.trainer import TrainOptions
    from .common import add_table_arguments

    defaults = TrainOptions.__dataclass_fields__
    extra = "reconstruction MSE" if kind == "tokenizer" else "s1/s2 accuracy, forecast CRPS and coverage"
    records = "" if kind == "tokenizer" else "; predictor.json records the tokenizer, window and normalisation, " \
        "so kronos forecast --model RUN needs nothing else"
    parser = subparsers.add_parser(
        name, help=help_text, description=f"{help_text}.\n\n{OUTPUTS.format(extra=extra, records=records)}",
        epilog=EXAMPLES[kind], formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS)
    parser.add_argument("--data", nargs="+", metavar="PATH",
                        help="CSV/Parquet/JSON files or folders of them (a timestamp column and open, high, low, "
                             "close, optional volume and amount; a long table gives one series per symbol)")
    parser.add_argument("--out", metavar="DIR", help="output folder")
    if kind == "predictor":
        parser.add_argument("--tokenizer", metavar="SOURCE",
                            help="frozen tokenizer: a checkpoint folder, a train-tokenizer --out folder (its best/), "
                                 "a hub id, or default (the bundled tokenizer)")
    parser.add_argument("--config", metavar="FILE", help="YAML or TOML file of options; flags override it")
    for flag, type_, text, applies in OPTIONS:
        if applies not in ("both", kind):
            continue
        dest = flag[2:].replace("-", "_")
        default = defaults[dest].default
        if dest == "lr":
            default = 2e-4 if kind == "tokenizer" else 4e-5
        elif dest == "grad_clip":
            default = 2.0 if kind == "tokenizer" else 3.0
        shown = "" if default is None or "(default" in text else f" (default: {default})"
        if type_ is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text + shown)
        else:
            parser.add_argument(flag, type=type_, metavar=dest.upper(), help=text + shown)
    parser.add_argument("--model-config", action="append", type=_key_value, metavar="KEY=VALUE",
                        help="set a model config field, e.g. d_model=64 n_layers=2 (repeatable; with --init it "
                             "overrides the loaded config)")
    add_table_arguments(parser, nan_default="drop", defaults=False)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint.pt")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run, train_kind=kind)


def register(subparsers) -> None:
    _add_parser(subparsers, "train-tokenizer", "tokenizer", "Train or fine-tune a Kronos tokenizer")
    _add_parser(subparsers, "train", "predictor", "Train or fine-tune a Kronos predictor over a frozen tokenizer")


def read_config_file(path: str) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) mapping of option names to values."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"--config: {file} does not exist")
    text = file.read_text()
    if file.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"--config: {file} is not valid TOML ({exc})") from exc
    elif file.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"--config: {file} is not valid YAML ({str(exc).splitlines()[0]})") from exc
    else:
        raise UsageError(f"--config: {file} must end in .yaml, .yml or .toml")
    if not isinstance(values, dict):
        raise UsageError(f"--config: {file} must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def _parse_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_options(args: argparse.Namespace):
    """Merge defaults < config file < flags into :class:`TrainOptions`; unknown file keys raise."""
    from ..training.trainer import TrainOptions

    kind = args.train_kind
    given = {k: v for k, v in vars(args).items() if k not in ("func", "train_kind", "command", "config")}
    values = read_config_file(args.config) if getattr(args, "config", None) else {}
    allowed = {f for f in TrainOptions.__dataclass_fields__ if f != "kind"}
    if kind == "tokenizer":
        allowed.discard("tokenizer")
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise UsageError(f"--config: unknown option(s) {', '.join(unknown)}")
    for name in ("model_config", "rename"):
        if name in values and not isinstance(values[name], dict):
            raise UsageError(f"--config: {name} must be a mapping, got {type(values[name]).__name__}")
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    model_config = dict(values.pop("model_config", {}) or {})
    model_config.update({k: _parse_scalar(v) for k, v in given.pop("model_config", [])})
    rename = dict(values.pop("rename", {}) or {})
    rename.update(dict(given.pop("rename", None) or []))
    _coerce_file_values(values)
    values.update(given)
    for required in ("data", "out"):
        if not values.get(required):
            raise UsageError(f"--{required} is required (on the command line or in --config)")
    return TrainOptions(kind=kind, model_config=model_config, rename=rename, **values)


def _coerce_file_values(values: dict[str, Any]) -> None:
    """Config-file values as the option types (YAML reads ``4e-5`` as a string)."""
    types = {flag[2:].replace("-", "_"): type_ for flag, type_, _, _ in OPTIONS}
    for name, value in values.items():
        type_ = types.get(name)
        if type_ is bool:
            if not isinstance(value, bool):
                raise UsageError(f"--config: {name} must be true or false, got {value!r}")
            continue
        if type_ is None or value is None or isinstance(value, type_) and not isinstance(value, bool):
            continue
        if type_ is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
            continue
        try:
            if isinstance(value, (bool, list, dict)) or (type_ is int and isinstance(value, float)):
                raise ValueError
            values[name] = type_(value)
        except ValueError:
            raise UsageError(f"--config: {name} must be {type_.__name__}, got {value!r}") from None


class _FlagFormatter(logging.Formatter):
    """Log lines that name this command's flags where the library names its arguments."""

    def format(self, record: logging.LogRecord) -> str:
        return flag_names(super().format(record), _option_names())


def _option_names() -> list[str]:
    from ..training.trainer import TrainOptions

    return list(TrainOptions.__dataclass_fields__)


def _setup_logging() -> None:
    logger = logging.getLogger("kronos.training")
    if logger.handlers:
        return
    handler = StderrHandler()
    handler.setFormatter(_FlagFormatter("kronos: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    # Under torchrun only rank 0 reports; the others stay quiet unless something fails.
    logger.setLevel(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.ERROR)


def run(args: argparse.Namespace) -> int:
    from ..model.checkpoint import CheckpointError
    from ..training.trainer import train

    try:
        opts = build_options(args)
        _setup_logging()
        result = train(opts)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from exc
    except (ValueError, FileNotFoundError) as exc:  # the library names its arguments; say the flags
        raise UsageError(flag_names(str(exc), _option_names())) from exc
    if os.environ.get("RANK", "0") == "0":  # the report itself was logged by the trainer
        best = "" if result.best_value == float("inf") else f"; best validation value {result.best_value:.6g}"
        state = "stopped early" if result.stopped_early else "done"
        print(f"{state} at step {result.step}{best}; models in {result.out / 'best'} and {result.out / 'final'}")
    return 0
