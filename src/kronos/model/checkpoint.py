"""Checkpoints in the published layout: a folder (or hub repo) with ``config.json`` and ``model.safetensors``.

Only safetensors are read; pickled weights are never loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # torch is imported where weights are loaded: the readers and the ONNX backend run without it
    import torch
    from torch import nn

from ..bars import NORM_EPS
from ..io import atomic_write_bytes

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREDICTOR_INFO_NAME = "predictor.json"  # optional, beside a predictor's config.json: how it was trained to be used

M = TypeVar("M", bound="PretrainedMixin")

# the bundled default model (kronos.model.default_model), in the package folder
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "default"

BUNDLED_PARTS = ("model", "tokenizer")


def bundled_folder(part: str) -> Path:
    """The bundled ``model`` or ``tokenizer`` folder."""
    if part not in BUNDLED_PARTS:
        raise ValueError(f"part must be 'model' or 'tokenizer', got {part!r}")
    return WEIGHTS_DIR / part


def resolve_source(source: str | os.PathLike, part: str | None = None) -> str | Path:
    """Where a ``from_pretrained`` source really is.

    ``"default"`` is the bundled ``part`` folder (``"model"`` or ``"tokenizer"``); a training run's folder
    (``kronos train --out``: no ``config.json`` but ``best/config.json``) stands for its ``best/``; other
    sources (checkpoint folders, hub ids) pass through unchanged.
    """
    if str(source) == "default" and part is not None:
        folder = bundled_folder(part)
        if not (folder / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"the bundled default {part} is missing from {folder}; reinstall kronos-kline "
                                    "or pass a folder or hub id")
        return folder
    path = Path(source).expanduser()
    if path.is_dir() and not (path / CONFIG_NAME).is_file() and (path / "best" / CONFIG_NAME).is_file():
        return path / "best"
    return source


class CheckpointError(ValueError):
    """A checkpoint folder or file that cannot be loaded; the message names the file and tensor."""


def resolve_checkpoint(source: str | os.PathLike, revision: str | None = None, cache_dir: str | None = None,
                       local_files_only: bool = False, token: str | bool | None = None) -> tuple[Path, Path]:
    """Return local paths of ``config.json`` and ``model.safetensors`` for a folder or a hub id.

    A hub id (``owner/name``) goes through huggingface_hub, which honours ``HF_HUB_OFFLINE`` and
    ``HF_HUB_CACHE``/``HF_HOME``.
    """
    folder = Path(source).expanduser()
    if folder.is_dir():
        config, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not config.is_file():
            raise CheckpointError(f"{config}: missing; a checkpoint folder needs {CONFIG_NAME} and {WEIGHTS_NAME}")
        if not weights.is_file():
            hint = " (pickled pytorch_model.bin is not loaded; convert it to safetensors)" if (
                folder / "pytorch_model.bin").exists() else ""
            raise CheckpointError(f"{weights}: missing{hint}")
        return config, weights
    repo_id = str(source)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise CheckpointError(f"{repo_id}: no such folder, and not a hub id of the form 'owner/name'")
    from huggingface_hub import hf_hub_download

    kwargs: dict[str, Any] = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir,
                                  local_files_only=local_files_only, token=token)
    try:
        config = hf_hub_download(filename=CONFIG_NAME, **kwargs)
        weights = hf_hub_download(filename=WEIGHTS_NAME, **kwargs)
    except Exception as exc:  # huggingface_hub raises many types; keep its message, name the repo
        raise CheckpointError(f"{repo_id}: could not get {CONFIG_NAME}/{WEIGHTS_NAME} from the hub or its "
                              f"cache ({type(exc).__name__}: {exc})") from exc
    return Path(config), Path(weights)


def write_predictor_info(directory: str | os.PathLike, lookback: int, max_context: int, *,
                         horizon: int | None = None, tokenizer: str | None = None, clip: float | None = None) -> None:
    """Record in a predictor folder how it was trained to be used: the history length (``lookback`` bars,
    which also fix the normalisation statistics), the longest window it saw (``max_context`` tokens), the
    training ``horizon``, the ``tokenizer`` it was trained with (a folder, a hub id or ``"default"``) and the
    normalisation rules (z-scores from the lookback bars, clipped at ±``clip``)."""

    info: dict[str, Any] = {"lookback": int(lookback), "max_context": int(max_context)}
    if horizon is not None:
        info["horizon"] = int(horizon)
    if tokenizer is not None:
        info["tokenizer"] = str(tokenizer)
    if clip is not None:
        info["normalisation"] = {"method": "zscore", "statistics": "lookback bars, per column",
                                 "clip": float(clip), "eps": NORM_EPS}
    atomic_write_bytes(Path(directory) / PREDICTOR_INFO_NAME, (json.dumps(info, indent=2) + "\n").encode())


def read_predictor_info(source: str | os.PathLike) -> dict[str, Any]:
    """What a local predictor folder's ``predictor.json`` records: ``lookback``, ``max_context`` and, when
    written by ``kronos train``, ``horizon``, ``tokenizer`` and ``clip``; {} when absent (hub ids and
    folders written by other tools). A relative tokenizer path is taken relative to the folder."""
    folder = Path(source).expanduser()
    path = folder / PREDICTOR_INFO_NAME
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(info).__name__}")
    out: dict[str, Any] = {}
    for key in ("lookback", "max_context", "horizon"):
        value = info.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(f"{path}: {key} must be a positive integer, got {value!r}")
            out[key] = value
    tokenizer = info.get("tokenizer")
    if tokenizer is not None:
        if not isinstance(tokenizer, str) or not tokenizer:
            raise CheckpointError(f"{path}: tokenizer must be a folder, a hub id or 'default', got {tokenizer!r}")
        relative = folder / tokenizer
        if tokenizer != "default" and not Path(tokenizer).is_absolute() and relative.is_dir():
            tokenizer = str(relative)
        out["tokenizer"] = tokenizer
    clip = (info.get("normalisation") or {}).get("clip") if isinstance(info.get("normalisation"), dict) else None
    if clip is not None:
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
            raise CheckpointError(f"{path}: normalisation.clip must be a positive number, got {clip!r}")
        out["clip"] = float(clip)
    return out


def read_config(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON config ({exc})") from exc
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc


def load_weights_into(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``tensors`` into ``model``; every tensor must exist with the same shape (dtype is converted)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"{path}: missing tensor(s) {', '.join(missing[:5])}"
                              + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensor(s) {', '.join(unexpected[:5])}"
                              + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
    for name, target in expected.items():
        if tuple(tensors[name].shape) != tuple(target.shape):
            raise CheckpointError(f"{path}: tensor {name} has shape {list(tensors[name].shape)}, "
                                  f"but the config implies {list(target.shape)}")
    import torch

    with torch.no_grad():
        for name, target in expected.items():
            target.copy_(tensors[name].to(target.dtype))


class PretrainedMixin:
    """``save_pretrained``/``from_pretrained`` for a module built as ``cls(config)``."""

    config_class: type
    config: Any
    bundled_part: str | None = None  # "model" or "tokenizer": what from_pretrained("default") loads

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed).

        ``dtype`` (e.g. ``torch.float16``) stores floating tensors in that type; loading restores
        the model's own dtype.
        """
        from safetensors.torch import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for name, tensor in self.state_dict().items():  # type: ignore[attr-defined]
            tensor = tensor.detach().cpu()
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            tensors[name] = tensor.contiguous()
        atomic_write_bytes(directory / WEIGHTS_NAME, save(tensors, metadata={"format": "pt"}))
        config_text = json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(directory / CONFIG_NAME, config_text.encode())
        return directory

    @classmethod
    def from_pretrained(cls: type[M], source: str | os.PathLike, revision: str | None = None,
                        cache_dir: str | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, device: str | torch.device | None = None,
                        **config_overrides: Any) -> M:
        """Load a local folder, a training run's folder (its ``best/``), a hub id (``NeoQuasar/Kronos-small``)
        or ``"default"`` (the bundled weights) and return the model in eval mode."""
        source = resolve_source(source, cls.bundled_part)
        config_path, weights_path = resolve_checkpoint(source, revision, cache_dir, local_files_only, token)
        values = read_config(config_path)
        values.update(config_overrides)
        try:
            config = cls.config_class.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{config_path}: {exc}") from exc
        model = cls(config)  # type: ignore[call-arg]
        load_weights_into(model, read_weights(weights_path), weights_path)  # type: ignore[arg-type]
        if device is not None:
            model.to(device)  # type: ignore[attr-defined]
        model.eval()  # type: ignore[attr-defined]
        return model
