"""The dtype switch (kronos.model.precision): exact packed float32 projections, int8 and bfloat16 weights, and the
--dtype flag of the commands, on the tiny parity checkpoints and real bars."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from kronos import Kronos, KronosPredictor, KronosTokenizer
from kronos.cli import main
from kronos.model.modules import padded_causal_mask
from kronos.model.precision import PackedLinear, check_supported, dtype_name, prepare, stored_bytes

from .conftest import DATA, PARITY

TINY_ARGS = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "256"]
FB = DATA / "bokeh_FB_1d.csv"


def tiny(dtype=None) -> KronosPredictor:
    return KronosPredictor(Kronos.from_pretrained(PARITY / "model"),
                           KronosTokenizer.from_pretrained(PARITY / "tokenizer"), device="cpu", max_context=256,
                           dtype=dtype)


def greedy(predictor: KronosPredictor, df, pred_len: int = 12, **kwargs) -> np.ndarray:
    x = df["timestamps"].iloc[:-pred_len].reset_index(drop=True)
    y = df["timestamps"].iloc[-pred_len:].reset_index(drop=True)
    bars = df[["open", "high", "low", "close", "volume", "amount"]].iloc[:-pred_len].reset_index(drop=True)
    out = predictor.predict(bars, x, y, pred_len, T=1.0, top_k=1, top_p=1.0, **kwargs)
    return out.to_numpy()


@pytest.fixture(scope="module")
def bars(xshg):
    return xshg.iloc[-140:].reset_index(drop=True)


@pytest.mark.parametrize("given, name", [(None, "float32"), ("float32", "float32"), ("BF16", "bfloat16"),
                                         ("torch.bfloat16", "bfloat16"), ("int8", "int8"),
                                         (torch.float32, "float32"), (torch.bfloat16, "bfloat16"),
                                         (torch.int8, "int8")])
def test_dtype_names(given, name):
    assert dtype_name(given) == name


@pytest.mark.parametrize("bad", ["float16", "int4", "", torch.float16, 8])
def test_unknown_dtypes_are_one_clear_error(bad):
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, int8"):
        dtype_name(bad)


def test_int8_on_cuda_is_refused_before_anything_moves():
    with pytest.raises(ValueError, match=r"dtype='int8' runs on the CPU only"):
        check_supported("int8", "cuda")
    model = Kronos.from_pretrained(PARITY / "model")
    with pytest.raises(ValueError, match="CPU only"):
        KronosPredictor(model, KronosTokenizer.from_pretrained(PARITY / "tokenizer"), device="cuda", dtype="int8")
    assert model.norm.weight.device.type == "cpu"


def test_packed_projections_give_the_same_bits_as_separate_ones():
    torch.manual_seed(0)
    plain = Kronos.from_pretrained(PARITY / "model")
    packed = Kronos.from_pretrained(PARITY / "model")
    prepare(packed, "float32", "cpu")
    assert packed.transformer[0].self_attn.packed_qkv is not None
    s1, s2 = torch.randint(0, plain.s1_vocab_size, (3, 40)), torch.randint(0, plain.s2_vocab_size, (3, 40))
    stamp = torch.randint(0, 7, (3, 40, 5)).float()
    with torch.no_grad():
        for a, b in zip(plain(s1, s2, stamp), packed(s1, s2, stamp)):
            assert torch.equal(a, b)


def test_packing_keeps_the_checkpoint_layout_and_follows_weight_updates(tmp_path):
    model = Kronos.from_pretrained(PARITY / "model")
    keys = list(model.state_dict())
    prepare(model, "float32", "cpu")
    assert list(model.state_dict()) == keys  # the packed tensors are not registered
    model.save_pretrained(tmp_path)
    again = Kronos.from_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    # In-place writes (load_state_dict) reach the packed weights ...
    attn = model.transformer[0].self_attn
    with torch.no_grad():
        attn.k_proj.weight.mul_(2)
    x = torch.randn(2, 5, attn.q_proj.in_features)
    assert torch.equal(attn.packed_qkv(x)[..., attn.q_proj.out_features:2 * attn.q_proj.out_features],
                       attn.k_proj(x))
    # ... and a replaced parameter makes the layer fall back to the separate products.
    attn.v_proj.weight = torch.nn.Parameter(torch.zeros_like(attn.v_proj.weight))
    assert torch.equal(attn.packed_qkv(x)[..., -attn.v_proj.out_features:], attn.v_proj(x))


def test_packed_linear_needs_consistent_biases():
    with pytest.raises(ValueError, match="all layers with a bias or all without"):
        PackedLinear([torch.nn.Linear(4, 4), torch.nn.Linear(4, 4, bias=False)])


def test_float32_forecasts_match_the_unpacked_network_and_full_recompute(bars):
    packed = tiny()
    plain = tiny()
    for block in plain.model.transformer:  # back to one product per projection
        block.self_attn.packed_qkv = block.ffn.packed_gate_up = None
    plain.model.dep_layer.cross_attn.packed_kv = None
    expected = greedy(plain, bars)
    np.testing.assert_array_equal(greedy(packed, bars), expected)
    np.testing.assert_array_equal(greedy(packed, bars, use_cache=False), expected)


def test_int8_runs_smaller_and_stays_close_to_float32(bars):
    reference, quantized = tiny(), tiny("int8")
    assert quantized.dtype == "int8" and reference.dtype == "float32"
    assert stored_bytes(quantized.model) < 0.8 * stored_bytes(reference.model)
    assert quantized.model.transformer[1].self_attn.q_proj is None  # float trunk weights are freed
    assert quantized.model.head.proj_s1.weight.dtype == torch.float32  # heads stay float
    low, ref = greedy(quantized, bars), greedy(reference, bars)
    assert np.isfinite(low).all()
    scale = bars["close"].std()
    assert abs(low[0, 3] - ref[0, 3]) < 0.5 * scale  # the first forecast close moves little


def test_int8_teacher_forced_choices_mostly_agree_with_float32(bars):
    reference, quantized = tiny(), tiny("int8")
    s1 = torch.randint(0, reference.model.s1_vocab_size, (4, 64), generator=torch.Generator().manual_seed(1))
    s2 = torch.randint(0, reference.model.s2_vocab_size, (4, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, _ = reference.model.decode_s1(s1, s2)
        b, _ = quantized.model.decode_s1(s1, s2)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9


def test_bfloat16_runs_on_cpu(bars):
    predictor = tiny(torch.bfloat16)
    assert predictor.dtype == "bfloat16" and predictor.model.norm.weight.dtype == torch.bfloat16
    assert np.isfinite(greedy(predictor, bars)).all()


def test_from_pretrained_takes_the_dtype():
    predictor = KronosPredictor.from_pretrained(PARITY / "model", PARITY / "tokenizer", device="cpu", dtype="int8")
    assert predictor.dtype == "int8"


def test_info_shows_the_active_dtype(capsys):
    assert main(["info", "--json", "--dtype", "int8", *TINY_ARGS]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["dtype"] == "int8" and model["int8_engine"] in ("x86", "fbgemm", "onednn")
    assert main(["info", "--json", *TINY_ARGS]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["dtype"] == "float32" and model["packed_projections"] is True


def test_int8_on_cuda_from_the_command_line_is_one_line_naming_flags():
    done = subprocess.run([sys.executable, "-m", "kronos.cli", "forecast", str(FB), "--dtype", "int8", "--device",
                           "cuda", "-q", *TINY_ARGS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "kronos forecast: error: --dtype int8 runs on the CPU only (its int8 layers have no cuda kernels); "
        "use --dtype bfloat16 on cuda, or --device cpu"]


def test_forecast_command_with_int8(tmp_path):
    out = tmp_path / "f.csv"
    assert main(["forecast", str(FB), "--pred-len", "3", "--samples", "2", "--dtype", "int8", "--out", str(out),
                 "--no-calibrate", "-q", *TINY_ARGS]) == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("padded", [False, True])
def test_single_token_step_gives_the_bits_of_the_general_trunk(dtype, padded):
    """Kronos.next_hidden (the cached decoding step) against hidden_states on the same cache and token."""
    model = Kronos.from_pretrained(PARITY / "model").eval()
    prepare(model, dtype, "cpu")
    torch.manual_seed(0)
    rows, history = 3, 20
    s1 = torch.randint(0, model.s1_vocab_size, (rows, history + 1))
    s2 = torch.randint(0, model.s2_vocab_size, (rows, history + 1))
    stamp = torch.randint(0, 7, (rows, history + 1, 5)).float()
    valid = torch.ones(rows, history + 1, dtype=torch.bool)
    if padded:
        valid[0, :5] = valid[2, :2] = False
    positions = (valid.long().cumsum(-1) - 1).clamp_min(0)
    outputs = []
    with torch.no_grad():
        for method in ("hidden_states", "next_hidden"):
            cache = model.new_cache(rows, history + 1)
            mask = padded_causal_mask(valid[:, :history]) if padded else None
            model.hidden_states(s1[:, :history], s2[:, :history], stamp[:, :history],
                                positions[:, :history] if padded else torch.arange(history), mask, cache)
            step_pos = positions[:, history:] if padded else torch.tensor([history])
            step_mask = valid[:, None, None, :] if padded else None
            step = (s1[:, history:], s2[:, history:], stamp[:, history:], step_pos)
            if method == "hidden_states":
                outputs.append(model.hidden_states(*step, step_mask, cache))
            else:
                outputs.append(model.next_hidden(*step, cache, step_mask))
            assert cache.length == history + 1
    assert outputs[1].shape == (rows, 1, model.config.d_model)
    assert torch.equal(outputs[0], outputs[1])


def test_bfloat16_reordered_weights_follow_weight_changes_and_copies():
    """On CPUs with native bfloat16 the products run on oneDNN-reordered copies of the weights; a copy must
    never serve stale weights, and copying the network must keep it working."""
    import copy

    from kronos.model.precision import OneDNNProduct, describe

    model = Kronos.from_pretrained(PARITY / "model").eval()
    prepare(model, "bfloat16", "cpu")
    reordered = OneDNNProduct.available(torch.device("cpu"))
    assert describe(model)["onednn_weights"] is reordered
    head = model.head.proj_s1
    x = torch.randn(1, model.config.d_model).bfloat16()
    with torch.no_grad():
        plain = torch.nn.functional.linear(x, head.weight, head.bias)
        assert torch.equal(head(x), plain)  # one row: the same bits as the plain product
        assert torch.equal(copy.deepcopy(model).head.proj_s1(x), plain)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state["head.proj_s1.weight"].mul_(2)
        state["transformer.0.self_attn.q_proj.weight"].zero_()
        model.load_state_dict(state)  # in place: the reordered copies are now stale
        assert torch.equal(head(x), torch.nn.functional.linear(x, head.weight, head.bias))
        assert not torch.equal(head(x), plain)
        qkv, d = model.transformer[0].self_attn.packed_qkv, model.config.d_model
        q = qkv(torch.randn(1, d).bfloat16())[:, :d]
        assert torch.equal(q, qkv.bias[:d].expand(1, d))  # zero q weights: q is its bias
        other = Kronos.from_pretrained(PARITY / "model").eval()
        prepare(other, "bfloat16", "cpu")
        other.float()  # new data behind the same parameters, no in-place write
        x32, head = x.float(), other.head.proj_s1
        assert torch.equal(head(x32), torch.nn.functional.linear(x32, head.weight, head.bias))
