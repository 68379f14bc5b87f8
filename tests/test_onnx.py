"""The ONNX export and the ONNX Runtime backend against the PyTorch path, on the bundled trained weights and
the Kronos-small layout; and the backend's run without PyTorch (a subprocess in which ``import torch`` fails)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from .conftest import import_or_need  # noqa: E402

import_or_need("onnxruntime", module_level=True)
import_or_need("onnx", module_level=True)

from kronos import Kronos, KronosPredictor, KronosTokenizer  # noqa: E402
from kronos.data.features import Normalizer, bar_features, time_features  # noqa: E402
from kronos.forecasting.generation import SamplingConfig, generate_tokens  # noqa: E402
from kronos.model.config import KRONOS_SIZES  # noqa: E402
from kronos.onnx import OnnxPredictor  # noqa: E402
from kronos.onnx.export import export_onnx, export_predictor  # noqa: E402
from kronos.onnx.runtime import OnnxKronos  # noqa: E402
from kronos.onnx.sampling import Sampling  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "tests" / "data" / "kronos_XSHG-600977_5min.csv"
BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name="torch")
    sys.meta_path.insert(0, _NoTorch())
""")


@pytest.fixture(scope="module")
def bundled() -> KronosPredictor:
    return KronosPredictor.from_pretrained("default", device="cpu")


@pytest.fixture(scope="module")
def exported(bundled, tmp_path_factory) -> Path:
    return export_predictor(bundled, tmp_path_factory.mktemp("onnx") / "bundled")


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return pd.read_csv(CSV, parse_dates=["timestamps"])


def _tokens(tokenizer: KronosTokenizer, bars: pd.DataFrame, history: int, pred_len: int):
    window = bars.iloc[-(history + pred_len):]
    x = Normalizer.fit(bar_features(window.iloc[:history]), 5).transform(bar_features(window.iloc[:history]))
    s1, s2 = tokenizer.encode(torch.from_numpy(x)[None], half=True)
    return s1, s2, time_features(pd.DatetimeIndex(window["timestamps"]))


def _greedy_both(model: Kronos, net: OnnxKronos, s1, s2, stamp, pred_len: int, max_context: int):
    torch_s1, torch_s2 = generate_tokens(model, [s1[0]], [s2[0]], [torch.from_numpy(stamp)], [pred_len], max_context,
                                         SamplingConfig(top_k=1))
    net.max_context = max_context
    ort_s1, ort_s2 = net.generate(s1.numpy(), s2.numpy(), stamp[None], pred_len, Sampling(top_k=1))
    return (torch_s1.numpy(), torch_s2.numpy()), (ort_s1, ort_s2)


def test_export_writes_graphs_and_metadata(exported, bundled):
    meta = json.loads((exported / "kronos_onnx.json").read_text())
    assert meta["max_context"] == bundled.max_context and meta["lookback"] == bundled.lookback
    assert meta["model_config"] == bundled.model.config.to_dict()
    for name in ("tokenizer_encode", "tokenizer_decode", "prefill", "step", "s2", "prefill.int8", "step.int8",
                 "s2.int8"):
        assert (exported / f"{name}.onnx").is_file()


def test_export_refuses_an_existing_folder(bundled, tmp_path):
    with pytest.raises(FileExistsError, match="already exists"):
        export_predictor(bundled, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_logits_and_tokenizer_match_pytorch_on_real_bars(exported, bundled, bars):
    net = OnnxKronos(exported)
    s1, s2, stamp = _tokens(bundled.tokenizer, bars, 200, 0)
    window = bars.iloc[-200:]
    x = Normalizer.fit(bar_features(window), 5).transform(bar_features(window))[None]
    e1, e2 = net.encode(x)
    assert (e1 == s1.numpy()).all() and (e2 == s2.numpy()).all()
    with torch.no_grad():
        logits, _ = bundled.model.decode_s1(s1, s2, torch.from_numpy(stamp)[None])
        recon = bundled.tokenizer.decode((s1, s2), half=True).numpy()
    got = net.prefill(s1.numpy(), s2.numpy(), stamp[None])[0]
    assert np.abs(got - logits[:, -1].numpy()).max() < 1e-4
    assert np.abs(net.decode(s1.numpy(), s2.numpy()) - recon).max() < 1e-4


@pytest.mark.parametrize("max_context", [512, 288])  # 256 + 64 cached throughout; and sliding after 32 steps
def test_greedy_tokens_identical_on_the_bundled_model(exported, bundled, bars, max_context):
    s1, s2, stamp = _tokens(bundled.tokenizer, bars, 256, 64)
    want, got = _greedy_both(bundled.model, OnnxKronos(exported), s1, s2, stamp, 64, max_context)
    assert (want[0] == got[0]).all() and (want[1] == got[1]).all()


def test_greedy_tokens_identical_on_the_kronos_small_layout(bundled, bars, tmp_path):
    torch.manual_seed(0)
    model = Kronos(KRONOS_SIZES["small"]).eval()
    folder = export_onnx(model, bundled.tokenizer, tmp_path / "small", max_context=512, int8=False)
    s1, s2, stamp = _tokens(bundled.tokenizer, bars, 256, 64)
    want, got = _greedy_both(model, OnnxKronos(folder), s1, s2, stamp, 64, 512)
    assert (want[0] == got[0]).all() and (want[1] == got[1]).all()


def test_predictor_greedy_forecast_matches_pytorch(exported, bundled, bars):
    history = bars.iloc[-300:-24]
    future = bars["timestamps"].iloc[-24:]
    kwargs = dict(top_k=1, sample_count=1, calibrate=False, dequantise=False)
    want = bundled.forecast(history, history["timestamps"], future, 24, **kwargs).samples
    got = KronosPredictor.from_onnx(exported).forecast(history, history["timestamps"], future, 24, **kwargs).samples
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4)


def test_sampled_paths_agree_in_distribution(exported, bundled, bars):
    """NumPy draws differ from torch's, so paths are compared by distribution: per horizon step, every close
    quantile of the ORT paths lies inside the Monte-Carlo band of the torch paths' quantile."""
    from scipy.stats import ks_2samp

    history = bars.iloc[-280:-6]
    future = bars["timestamps"].iloc[-6:]
    kwargs = dict(sample_count=300, calibrate=False, dequantise=True, seed=0)
    want = bundled.forecast(history, history["timestamps"], future, 6, **kwargs).samples[..., 3]
    got = OnnxPredictor(exported).forecast(history, history["timestamps"], future, 6, **kwargs).samples[..., 3]
    assert not np.allclose(want, got)  # different random streams
    for step in range(6):
        assert ks_2samp(want[:, step], got[:, step]).pvalue > 1e-3, step


def test_seeds_reproduce_and_series_keep_their_own_streams(exported, bars):
    predictor = OnnxPredictor(exported)
    a, b = bars.iloc[-400:-10], bars.iloc[-300:-10]
    future = bars["timestamps"].iloc[-10:]
    kwargs = dict(sample_count=4, calibrate=False)
    one = predictor.forecast(a, a["timestamps"], future, 10, seed=3, **kwargs).samples
    assert np.array_equal(one, predictor.forecast(a, a["timestamps"], future, 10, seed=3, **kwargs).samples)
    assert not np.array_equal(one, predictor.forecast(a, a["timestamps"], future, 10, seed=4, **kwargs).samples)
    alone = predictor.forecast_batch([a], [a["timestamps"]], [future], 10, seed=[7], **kwargs)[0].samples
    paired = predictor.forecast_batch([b, a], [b["timestamps"], a["timestamps"]], [future, future], 10, seed=[1, 7],
                                      **kwargs)[1].samples
    assert np.array_equal(alone, paired)


def test_forecast_df_and_calibration(exported, bars):
    frame = OnnxPredictor(exported).forecast_df(bars.iloc[-400:], pred_len=5, sample_count=4, seed=0)
    assert list(frame.columns[:3]) == ["timestamp", "column", "mean"] and len(frame) == 5 * 6
    forecast = OnnxPredictor(exported).forecast(bars.iloc[-400:], bars["timestamps"].iloc[-400:],
                                                pd.date_range(bars["timestamps"].iloc[-1], periods=6, freq="5min")[1:],
                                                5, sample_count=4, seed=0)
    assert forecast.calibration is not None and forecast.calibration.applied


def test_the_pool_runs_on_onnx_reproducibly_and_per_series(exported, bars):
    predictor = OnnxPredictor(exported)
    a, b = bars.iloc[-400:-6], bars.iloc[-300:-6]
    future = bars["timestamps"].iloc[-6:]

    def paths(seed, **kwargs):
        return predictor.forecast(a, a["timestamps"], future, 6, sample_count=8, seed=seed, **kwargs)

    pure, pooled = paths(3, combine=False), paths(3)
    assert pure.calibration.weights == () and set(pooled.calibration.combination) == {"kronos", "garch_t"}
    np.testing.assert_array_equal(pooled.calibration.scale, pure.calibration.scale)
    assert not np.array_equal(pooled.samples, pure.samples)
    np.testing.assert_array_equal(paths(3).samples, pooled.samples)
    np.testing.assert_array_equal(paths(np.random.default_rng(11)).samples,
                                  paths(np.random.default_rng(11)).samples)
    alone = predictor.forecast_batch([a], [a["timestamps"]], [future], 6, sample_count=8, seed=[7])[0]
    paired = predictor.forecast_batch([b, a], [b["timestamps"], a["timestamps"]], [future, future], 6,
                                      sample_count=8, seed=[1, 7])[1]
    assert alone.calibration.weights and alone.calibration.weights == paired.calibration.weights
    np.testing.assert_array_equal(alone.samples, paired.samples)


def test_int8_runs_and_mostly_agrees(exported, bars, bundled):
    s1, s2, stamp = _tokens(bundled.tokenizer, bars, 256, 32)
    float_net, int8_net = OnnxKronos(exported), OnnxKronos(exported, dtype="int8")
    a = float_net.prefill(s1.numpy(), s2.numpy(), stamp[None, :256])[0]
    b = int8_net.prefill(s1.numpy(), s2.numpy(), stamp[None, :256])[0]
    assert a.argmax(-1) == b.argmax(-1)
    assert not np.array_equal(a, b)


def test_bad_folder_and_dtype_are_named(exported, tmp_path):
    with pytest.raises(ValueError, match="not an exported ONNX folder"):
        OnnxPredictor(tmp_path)
    with pytest.raises(ValueError, match="dtype must be one of float32, int8"):
        OnnxPredictor(exported, dtype="bfloat16")


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


def test_forecast_command_runs_without_pytorch(exported, tmp_path):
    out = tmp_path / "forecast.csv"
    done = _run_without_torch(f"""
        from kronos.cli import main
        rc = main(["forecast", {str(CSV)!r}, "--backend", "onnx", "--model", {str(exported)!r}, "--pred-len", "6",
                   "--samples", "4", "--seed", "0", "--out", {str(out)!r}, "--quiet"])
        import kronos, kronos.data.tables
        from kronos import Forecast
        assert "torch" not in sys.modules, "torch was imported"
        sys.exit(rc)
    """)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out)
    assert len(frame) == 6 * 6 and frame["mean"].notna().all()


def test_without_pytorch_the_error_is_one_line(exported):
    done = _run_without_torch("""
        from kronos.cli import main
        sys.exit(main(["forecast", "x.csv", "--backend", "onnx"]))
    """)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "kronos forecast: error: --backend onnx needs --model DIR, a folder written by: kronos export onnx MODEL "
        "--out DIR"]
