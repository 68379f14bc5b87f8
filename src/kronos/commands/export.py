"""kronos export onnx: write a predictor's networks as ONNX graphs for ONNX Runtime."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import UsageError, load_predictor, positive_int, progress

EXPORT_EXAMPLES = """examples:
  kronos export onnx default --out kronos-onnx/
  kronos export onnx NeoQuasar/Kronos-small --tokenizer NeoQuasar/Kronos-Tokenizer-base --out small-onnx/
  kronos export onnx runs/my-model --out my-model-onnx/ --no-int8
  kronos forecast prices.csv --backend onnx --model kronos-onnx/ --dtype int8
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model for another runtime (onnx)", epilog=EXPORT_EXAMPLES,
        description="Export MODEL (a model folder, kronos train --out folder, hub id, or 'default') and its "
                    "tokenizer as ONNX graphs into a new folder, for kronos forecast --backend onnx or "
                    "kronos.onnx.OnnxPredictor (ONNX Runtime, no PyTorch needed to run them).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=("onnx",), help="what to export to")
    parser.add_argument("source", metavar="MODEL", help="model folder, kronos train --out folder, hub id or 'default'")
    parser.add_argument("--out", "-o", required=True, help="new folder to write the graphs into")
    parser.add_argument("--no-int8", dest="int8", action="store_false",
                        help="skip the int8 (dynamically quantised) copies of the network graphs")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer folder, hub id or 'default' (default: the one the model records)")
    parser.add_argument("--max-context", type=positive_int, default=None,
                        help="most tokens the exported predictor sees (default: what the model records; 512)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if Path(args.out).exists():
        raise UsageError(f"--out {args.out} already exists; give a new folder")
    try:
        import onnx  # noqa: F401

        from ..onnx.export import export_predictor
    except ImportError as exc:
        raise UsageError(f"kronos export onnx needs the onnx and onnxruntime packages ({exc}); "
                         "pip install 'kronos-kline[onnx]' onnx") from exc
    args.model, args.device, args.dtype, args.backend = args.source, "cpu", "float32", "torch"
    started = time.perf_counter()
    predictor = load_predictor(args)
    written = export_predictor(predictor, args.out, int8=args.int8)
    progress(args, f"exported {args.source} (max_context {predictor.max_context}, lookback {predictor.lookback}) to "
                   f"{written} in {time.perf_counter() - started:.1f}s")
    return 0
