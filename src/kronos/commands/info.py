"""``kronos info``: versions, the device, and the loaded model's configuration and size."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

from .common import add_model_arguments, load_predictor, model_summary

INFO_EXAMPLES = """\
examples:
  kronos info
  kronos info --model ./my-model --tokenizer ./my-tokenizer --json
"""


# -- kronos info ---------------------------------------------------------------------------------------

def register_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="versions, device, and the model's configuration and size", epilog=INFO_EXAMPLES,
        description="Print library versions, the device that would be used, and the loaded model's "
                    "configuration, parameter counts and size.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, backend=False)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_info)


def _versions() -> dict[str, str]:
    import numpy
    import pandas
    import torch

    from .. import __version__

    return {"kronos-kline": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "pandas": pandas.__version__, "platform": platform.platform()}


def run_info(args: argparse.Namespace) -> int:
    from ..forecasting.predictor import auto_device
    from ..model.default_model import bundled_folder

    info: dict[str, Any] = {"versions": _versions(), "device": str(args.device or auto_device()),
                            "bundled": {part: str(bundled_folder(part)) for part in ("model", "tokenizer")}}
    if not args.json:
        for key, value in info["versions"].items():
            print(f"{key:<24}{value}")
        print(f"{'device':<24}{info['device']}")
        for part, folder in info["bundled"].items():
            print(f"{'bundled ' + part:<24}{folder}")
        sys.stdout.flush()
    info["model"] = model_summary(load_predictor(args), args.model, args.tokenizer)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    for key, value in info["model"].items():
        if key == "device" and str(value) == info["device"]:  # printed above
            continue
        if isinstance(value, dict):
            print(key)
            for k, v in value.items():
                print(f"  {k:<22}{v}")
        else:
            print(f"{key:<24}{value}")
    return 0
