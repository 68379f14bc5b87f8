"""The bundled default model: weights shipped inside the package, loadable offline."""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights" / "default"


def default_paths() -> tuple[Path, Path, int]:
    """(model folder, tokenizer folder, max_context) of the bundled default model."""
    model, tokenizer = WEIGHTS_DIR / "model", WEIGHTS_DIR / "tokenizer"
    if not (model / "model.safetensors").is_file() or not (tokenizer / "model.safetensors").is_file():
        raise FileNotFoundError(f"the bundled default model is missing from {WEIGHTS_DIR}; reinstall kronos-kline "
                                "or pass model and tokenizer folders / hub ids")
    info = WEIGHTS_DIR / "default.json"
    max_context = json.loads(info.read_text()).get("max_context", 512) if info.is_file() else 512
    return model, tokenizer, int(max_context)
