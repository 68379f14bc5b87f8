"""What the commands share: the error for user mistakes, argument types, and the model options."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
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


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --tokenizer, --max-context, --device: the options every command that loads a model shares."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="default",
                       help="model folder or hub id (default: the bundled model, 'default')")
    group.add_argument("--tokenizer", default="default",
                       help="tokenizer folder or hub id (default: the bundled tokenizer, 'default')")
    group.add_argument("--max-context", type=positive_int, default=None,
                       help="most tokens the model sees (default: the bundled model's own; 512 for others)")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda, mps or cpu)")


def check_model_arguments(args: argparse.Namespace) -> None:
    if (args.model == "default") != (args.tokenizer == "default"):
        raise UsageError("--model and --tokenizer go together: give both folders/hub ids, or neither for the "
                         "bundled default model")


def load_predictor(args: argparse.Namespace):
    """A KronosPredictor from --model/--tokenizer/--max-context/--device ('default' = the bundled weights)."""
    from ..predictor import KronosPredictor

    check_model_arguments(args)
    model, tokenizer = args.model, args.tokenizer
    try:
        return KronosPredictor.from_pretrained(model, None if tokenizer == "default" else tokenizer,
                                               device=args.device, max_context=args.max_context)
    except RuntimeError as exc:  # e.g. an unavailable device
        raise UsageError(f"could not load the model on device {args.device!r}: {str(exc).splitlines()[0]}") from exc


def model_summary(predictor: Any, source: str, tokenizer_source: str) -> dict[str, Any]:
    """Configuration, parameter counts and size (float32 MiB) of a loaded predictor."""
    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    def config(module: Any) -> dict[str, Any]:
        cfg = getattr(module, "config", None)
        if cfg is None:
            return {}
        return {k: v for k, v in vars(cfg).items() if not k.startswith("_")}

    model_params, tokenizer_params = count(predictor.model), count(predictor.tokenizer)
    return {
        "model": source, "tokenizer": tokenizer_source, "device": str(predictor.device),
        "max_context": predictor.max_context, "lookback": predictor.lookback, "model_parameters": model_params,
        "tokenizer_parameters": tokenizer_params,
        "size_mib": round((model_params + tokenizer_params) * 4 / 2**20, 2),
        "model_config": config(predictor.model), "tokenizer_config": config(predictor.tokenizer),
    }


def progress(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"kronos: {message}", file=sys.stderr, flush=True)
