"""Every published checkpoint name in the README, built from its published config on the meta device (no
weights, no download), against the documented layout: tensor names, shapes and parameter counts.

The documented layout is ``tests/fixtures/checkpoint-keys.txt`` (the Kronos-small and Kronos-Tokenizer-base
files, tensor by tensor) and the published sizes table of the specification (the config.json values and
parameter counts of Kronos-mini, Kronos-small and Kronos-base; Tokenizer-2k differs from Tokenizer-base
in its entropy group size only). :func:`predictor_layout` writes the small file's pattern for any size;
it is first checked to reproduce that file exactly, then used for the other sizes.
"""

from __future__ import annotations

import json

import pytest
import torch

from kronos import Kronos, KronosTokenizer
from kronos.model.config import KRONOS_SIZES, TOKENIZER_SIZES, KronosConfig, TokenizerConfig

from .conftest import FIXTURES

DROPOUTS = ("ffn_dropout_p", "attn_dropout_p", "resid_dropout_p", "token_dropout_p")
# hub id -> (config.json values, parameters as published, to the 0.1M the table gives; exact where the
# key list gives the exact count)
PREDICTORS = {
    "NeoQuasar/Kronos-mini": (dict(d_model=256, n_layers=4, n_heads=4, ff_dim=512, s1_bits=10, s2_bits=10,
                                   **dict(zip(DROPOUTS, (0.2, 0.0, 0.2, 0.0))), learn_te=True), 4.1e6, "mini"),
    "NeoQuasar/Kronos-small": (dict(d_model=512, n_layers=8, n_heads=8, ff_dim=1024, s1_bits=10, s2_bits=10,
                                    **dict(zip(DROPOUTS, (0.25, 0.1, 0.25, 0.1))), learn_te=True), 24_741_696,
                               "small"),
    "NeoQuasar/Kronos-base": (dict(d_model=832, n_layers=12, n_heads=16, ff_dim=2048, s1_bits=10, s2_bits=10,
                                   **dict(zip(DROPOUTS, (0.2, 0.0, 0.2, 0.0))), learn_te=True), 102.3e6, "base"),
}
TOKENIZERS = {"NeoQuasar/Kronos-Tokenizer-base": ("base", 4), "NeoQuasar/Kronos-Tokenizer-2k": ("2k", 5)}
DEP_HEADS = 4  # the dependency layer's heads: not in config.json, the same in every published size


def documented() -> dict[str, dict[str, list[int]]]:
    """checkpoint-keys.txt: {"small"|"tokenizer": {tensor name: shape}}."""
    layouts: dict[str, dict[str, list[int]]] = {}
    current = None
    for line in (FIXTURES / "checkpoint-keys.txt").read_text().splitlines():
        if line.startswith("#"):
            current = "tokenizer" if "Tokenizer" in line else "small"
            layouts[current] = {}
        elif line.strip():
            name, shape, _ = line.split("\t")
            layouts[current][name] = json.loads(shape)
    return layouts


def predictor_layout(c: dict) -> dict[str, list[int]]:
    """The predictor's tensors for config.json values ``c``, in the pattern of the documented small layout."""
    d, f, v1, v2 = c["d_model"], c["ff_dim"], 2 ** c["s1_bits"], 2 ** c["s2_bits"]

    def attention(prefix: str, heads: int) -> dict[str, list[int]]:
        out = {}
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out |= {f"{prefix}.{proj}.weight": [d, d], f"{prefix}.{proj}.bias": [d]}
        return out | {f"{prefix}.rotary.inv_freq": [d // heads // 2]}

    layout = {"embedding.emb_s1.weight": [v1, d], "embedding.emb_s2.weight": [v2, d],
              "embedding.fusion_proj.weight": [d, 2 * d], "embedding.fusion_proj.bias": [d]}
    if c["learn_te"]:
        layout |= {f"time_emb.{unit}_embed.weight": [size, d]
                   for unit, size in (("minute", 60), ("hour", 24), ("weekday", 7), ("day", 32), ("month", 13))}
    for i in range(c["n_layers"]):
        block = f"transformer.{i}"
        layout |= {f"{block}.norm1.weight": [d], **attention(f"{block}.self_attn", c["n_heads"]),
                   f"{block}.norm2.weight": [d], f"{block}.ffn.w1.weight": [f, d], f"{block}.ffn.w3.weight": [f, d],
                   f"{block}.ffn.w2.weight": [d, f]}
    layout |= {"norm.weight": [d], **attention("dep_layer.cross_attn", DEP_HEADS), "dep_layer.norm.weight": [d],
               "head.proj_s1.weight": [v1, d], "head.proj_s1.bias": [v1],
               "head.proj_s2.weight": [v2, d], "head.proj_s2.bias": [v2]}
    return layout


def on_meta(build) -> dict[str, list[int]]:
    with torch.device("meta"):
        module = build()
    state = module.state_dict()
    assert all(t.device.type == "meta" for t in state.values())  # nothing was allocated or downloaded
    return {name: list(t.shape) for name, t in state.items()}


def test_the_layout_pattern_reproduces_the_documented_small_file():
    small = PREDICTORS["NeoQuasar/Kronos-small"][0]
    assert predictor_layout(small) == documented()["small"]
    assert list(predictor_layout(small)) == list(documented()["small"])  # and its order


@pytest.mark.parametrize("hub_id", list(PREDICTORS))
def test_each_published_predictor_builds_to_its_layout_from_its_config(hub_id):
    values, params, size = PREDICTORS[hub_id]
    config = KronosConfig.from_dict(values)
    assert config == KRONOS_SIZES[size]  # the library's preset is the published config
    built = on_meta(lambda: Kronos(config))
    assert built == predictor_layout(values)
    count = sum(torch.Size(shape).numel() for shape in built.values())
    if isinstance(params, int):
        assert count == params
    else:
        assert round(count / 1e5) == round(params / 1e5), count
    assert {k: v for k, v in config.to_dict().items() if k in values} == values  # saves the published keys


@pytest.mark.parametrize("hub_id", list(TOKENIZERS))
def test_each_published_tokenizer_builds_to_the_documented_layout(hub_id):
    size, group_size = TOKENIZERS[hub_id]
    config = TOKENIZER_SIZES[size]
    assert config.group_size == group_size and config == TokenizerConfig(group_size=group_size)
    expected = dict(documented()["tokenizer"])
    expected["tokenizer.bsq.group_basis"] = [group_size]
    built = on_meta(lambda: KronosTokenizer(config))
    assert built == expected
    tensors = sum(torch.Size(s).numel() for n, s in built.items() if "basis" not in n)
    assert round(tensors / 1e4) == 396  # "about 3.96M parameters"
