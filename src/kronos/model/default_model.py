"""The bundled default model: weights shipped inside the package, loadable offline.

The weights live in ``kronos/weights/default/{model,tokenizer}`` (published layout, float16 storage;
loading restores float32) with ``default.json`` (lookback, max_context and provenance); the model folder's
``predictor.json`` holds the same lookback and max_context. Rebuild them with
``python -m kronos.model.default_model MODEL_DIR TOKENIZER_DIR --max-context N --lookback L`` (see MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .checkpoint import BUNDLED_PARTS, WEIGHTS_DIR, bundled_folder, resolve_source

__all__ = ["BUNDLED_PARTS", "WEIGHTS_DIR", "bundled_folder", "default_paths", "describe_source", "package_default",
           "resolve_source", "same_source"]


def describe_source(source: str | os.PathLike, part: str) -> str:
    """How a source is recorded in a trained model's folder: ``"default"`` for the bundled ``part``, an
    absolute path for a local folder (a run folder as its ``best/``), a hub id as given."""
    resolved = resolve_source(source, part)
    path = Path(resolved).expanduser()
    if not path.is_dir():
        return str(source)
    path = path.resolve()
    if path == bundled_folder(part).resolve():
        return "default"
    return str(path)


def same_source(a: str | os.PathLike, b: str | os.PathLike, part: str) -> bool:
    """Whether two sources name the same checkpoint (after :func:`describe_source`)."""
    return describe_source(a, part) == describe_source(b, part)


def default_paths() -> tuple[Path, Path, int]:
    """(model folder, tokenizer folder, max_context) of the bundled default model."""
    model, tokenizer = WEIGHTS_DIR / "model", WEIGHTS_DIR / "tokenizer"
    if not (model / "model.safetensors").is_file() or not (tokenizer / "model.safetensors").is_file():
        raise FileNotFoundError(f"the bundled default model is missing from {WEIGHTS_DIR}; reinstall kronos-kline "
                                "or pass model and tokenizer folders / hub ids")
    info = WEIGHTS_DIR / "default.json"
    max_context = json.loads(info.read_text()).get("max_context", 512) if info.is_file() else 512
    return model, tokenizer, int(max_context)


def package_default(model_dir: str | Path, tokenizer_dir: str | Path, max_context: int, lookback: int,
                    out: Path = WEIGHTS_DIR, notes: str = "") -> Path:
    """Copy trained checkpoints into the package as float16 safetensors plus ``default.json``."""
    import torch

    from ..io import atomic_write_bytes
    from .checkpoint import write_predictor_info
    from .network import Kronos
    from .tokenizer import KronosTokenizer

    out = Path(out)
    Kronos.from_pretrained(model_dir).save_pretrained(out / "model", dtype=torch.float16)
    KronosTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out / "tokenizer", dtype=torch.float16)
    write_predictor_info(out / "model", lookback, max_context, horizon=max_context - lookback,
                         tokenizer="default")
    info = {"lookback": int(lookback), "max_context": int(max_context), "model_source": str(model_dir),
            "tokenizer_source": str(tokenizer_dir),
            "storage_dtype": "float16", "notes": notes}
    atomic_write_bytes(out / "default.json", (json.dumps(info, indent=2) + "\n").encode())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Package trained checkpoints as the bundled default model.")
    parser.add_argument("model_dir")
    parser.add_argument("tokenizer_dir")
    parser.add_argument("--max-context", type=int, required=True)
    parser.add_argument("--lookback", type=int, required=True, help="history bars the model was trained on")
    parser.add_argument("--notes", default="")
    args = parser.parse_args(argv)
    print(package_default(args.model_dir, args.tokenizer_dir, args.max_context, args.lookback, notes=args.notes))


if __name__ == "__main__":
    main()
