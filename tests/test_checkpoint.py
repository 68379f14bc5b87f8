"""Checkpoints in the published layout: key set, shapes, dtypes, counts, loading errors, hub cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kronos import Kronos, KronosTokenizer
from kronos.model.checkpoint import CheckpointError
from kronos.model.config import KRONOS_SIZES, TOKENIZER_SIZES

from .conftest import FIXTURES, PARITY


def _published_layouts() -> dict[str, dict[str, tuple[list[int], str]]]:
    layouts: dict[str, dict[str, tuple[list[int], str]]] = {}
    current = None
    for line in (FIXTURES / "checkpoint-keys.txt").read_text().splitlines():
        if line.startswith("#"):
            current = "tokenizer" if "Tokenizer" in line else "small"
            layouts[current] = {}
        elif line.strip():
            name, shape, dtype = line.split("\t")
            layouts[current][name] = (json.loads(shape), dtype)
    return layouts


@pytest.mark.parametrize("which, build, values", [
    ("small", lambda: Kronos(KRONOS_SIZES["small"]), 24_741_696),
    ("tokenizer", lambda: KronosTokenizer(TOKENIZER_SIZES["base"]), 3_958_258),
])
def test_saved_layout_matches_published_keys(tmp_path, which, build, values):
    expected = _published_layouts()[which]
    build().save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    assert set(tensors) == set(expected)
    for name, tensor in tensors.items():
        shape, dtype = expected[name]
        assert list(tensor.shape) == shape, name
        assert str(tensor.dtype).removeprefix("torch.") == dtype, name
    assert sum(t.numel() for t in tensors.values()) == values
    config = json.loads((tmp_path / "config.json").read_text())
    assert "dep_n_heads" not in config and "rope_base" not in config  # published keys only


def test_round_trip_restores_weights_and_eval_mode(tmp_path):
    model = Kronos(KRONOS_SIZES["mini"]).train()
    model.save_pretrained(tmp_path)
    loaded = Kronos.from_pretrained(tmp_path)
    assert not loaded.training
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_float16_storage_loads_back_as_float32(tmp_path):
    tokenizer = KronosTokenizer.from_pretrained(PARITY / "tokenizer")
    tokenizer.save_pretrained(tmp_path, dtype=torch.float16)
    stored = load_file(tmp_path / "model.safetensors")
    assert stored["embed.weight"].dtype == torch.float16
    assert stored["tokenizer.bsq.basis"].dtype == torch.int64
    loaded = KronosTokenizer.from_pretrained(tmp_path)
    assert loaded.embed.weight.dtype == torch.float32
    assert torch.allclose(loaded.embed.weight, tokenizer.embed.weight, atol=1e-3)


def _copy_parity(tmp_path: Path, which: str = "model") -> Path:
    folder = tmp_path / which
    shutil.copytree(PARITY / which, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def test_missing_config_names_the_file(tmp_path):
    folder = _copy_parity(tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        Kronos.from_pretrained(folder)


def test_pickled_weights_are_not_loaded(tmp_path):
    folder = _copy_parity(tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing \(pickled pytorch_model\.bin is not"):
        Kronos.from_pretrained(folder)


def test_truncated_safetensors_names_the_file(tmp_path):
    folder = _copy_parity(tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a valid safetensors file"):
        Kronos.from_pretrained(folder)


def test_garbage_safetensors_names_the_file(tmp_path):
    folder = _copy_parity(tmp_path, "tokenizer")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a valid safetensors file"):
        KronosTokenizer.from_pretrained(folder)


def test_missing_tensor_is_named(tmp_path):
    folder = _copy_parity(tmp_path)
    tensors = load_file(folder / "model.safetensors")
    del tensors["dep_layer.norm.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\) dep_layer\.norm\.weight"):
        Kronos.from_pretrained(folder)


def test_unexpected_tensor_is_named(tmp_path):
    folder = _copy_parity(tmp_path)
    tensors = load_file(folder / "model.safetensors")
    tensors["extra.bias"] = torch.zeros(3)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected tensor\(s\) extra\.bias"):
        Kronos.from_pretrained(folder)


@pytest.mark.parametrize("key, value, message", [
    ("ff_dim", 96, r"tensor transformer\.0\.ffn\.w1\.weight has shape \[128, 64\], but the config implies \[96, 64\]"),
    ("n_experts", 4, r"config\.json: unknown KronosConfig keys: n_experts"),
], ids=["shape-contradicts-config", "unknown-key"])
def test_config_problems_are_named(tmp_path, key, value, message):
    folder = _copy_parity(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        Kronos.from_pretrained(folder)


def test_not_a_folder_nor_hub_id(tmp_path):
    with pytest.raises(CheckpointError, match="no such folder, and not a hub id"):
        Kronos.from_pretrained(tmp_path / "nowhere" / "deep" / "path")


def _fill_hub_cache(cache: Path, repo_id: str, source: Path, commit: str = "0" * 40) -> None:
    """Lay out a huggingface_hub cache entry (refs/main -> snapshot folder) for ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(source / name, snapshot / name)


def test_hub_id_loads_from_offline_cache(tmp_path):
    cache = tmp_path / "hub"
    _fill_hub_cache(cache, "NeoQuasar/Kronos-small", PARITY / "model")
    _fill_hub_cache(cache, "NeoQuasar/Kronos-Tokenizer-base", PARITY / "tokenizer")
    script = (
        "from kronos import KronosPredictor\n"
        "p = KronosPredictor.from_pretrained('NeoQuasar/Kronos-small', 'NeoQuasar/Kronos-Tokenizer-base', "
        "device='cpu')\n"
        "print(p.model.config.d_model, p.tokenizer.config.d_model, p.model.training)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["64", "64", "False"]


def test_hub_id_missing_from_offline_cache_is_a_clear_error(tmp_path):
    script = "from kronos import Kronos\nKronos.from_pretrained('NeoQuasar/Kronos-base')\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "HF_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "NeoQuasar/Kronos-base: could not get config.json/model.safetensors from the hub or its cache" in (
        result.stderr)


def test_saved_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        Kronos.from_pretrained(PARITY / "model").save_pretrained(tmp_path / "out")
    finally:
        os.umask(umask)
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o644
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temporary files left behind
