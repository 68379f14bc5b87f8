"""The ``kronos`` command line: one subcommand per job, each defined in the module that owns the job.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func=run`` on it. User mistakes raise :class:`~kronos.commands.common.UsageError` (or
``ValueError``/``FileNotFoundError`` from the library) and are printed as one line with exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .commands.common import StderrHandler, UsageError

# (module, what it provides); imported lazily so `kronos --help` stays fast.
COMMAND_MODULES = (
    "kronos.commands.forecast",  # kronos forecast, kronos info
    "kronos.commands.train",  # kronos train-tokenizer, kronos train
    "kronos.commands.evaluate",  # kronos evaluate
    "kronos.commands.serve",  # kronos serve
    "kronos.commands.backtest",  # kronos backtest
    "kronos.commands.export",  # kronos export onnx
)


def _report_reading(quiet: bool) -> None:
    """Log lines about how data files were read (sorted, rows dropped, ...), which calendar the forecast
    follows, and how a universe went, go to stderr (only warnings when ``quiet``)."""
    for name in ("kronos.data.tables", "kronos.data.calendar", "kronos.universe"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, StderrHandler) for h in logger.handlers):
            logger.addHandler(StderrHandler())
        logger.setLevel(logging.WARNING if quiet else logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kronos", description="Kronos: forecast, train and evaluate candlestick (K-line) models.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"kronos-kline {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command not part of this build
                continue
            raise
        try:
            module.register(subparsers)
        except ModuleNotFoundError as exc:
            if exc.name != "torch":
                raise
            # A command that needs PyTorch, in an install without it (e.g. only the onnx extra): left out.
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from .data.tables import command_line_option, option_style

    _report_reading(getattr(args, "quiet", False))
    with option_style(command_line_option):  # errors name --flags, not library keywords
        try:
            result = args.func(args)
        except (UsageError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError, TypeError,
                ImportError) as exc:
            print(f"kronos {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # read-only folder, full disk, ... : one line naming the file
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            print(f"kronos {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"kronos {args.command}: interrupted", file=sys.stderr)
            return 130
    return int(result or 0)


if __name__ == "__main__":  # python -m kronos.cli: run the package's module, whose UsageError the commands raise
    from kronos.cli import main as package_main

    sys.exit(package_main())
