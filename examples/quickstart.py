"""Quick start: a probabilistic forecast of a real daily series with the bundled default model.

Run with:  python examples/quickstart.py
"""

from importlib.resources import files

import pandas as pd

from kronos import KronosPredictor

# Real daily bars of AAPL (2000-2013) shipped with the package (see kronos/examples_data/SOURCES.md).
bars = pd.read_csv(files("kronos") / "examples_data" / "AAPL_1d.csv", parse_dates=["timestamps"])

predictor = KronosPredictor.from_pretrained()  # bundled default model, offline; or hub ids / folders
pred_len = 10
history = bars.iloc[:-pred_len]  # all of it: the network sees the last 256 bars, earlier ones calibrate
future = bars["timestamps"].iloc[-pred_len:]  # we hold the last 10 days out to compare

forecast = predictor.forecast(history, history["timestamps"], future, pred_len, sample_count=30, seed=0)
print(forecast.samples.shape)  # (30 paths, 10 bars, 6 columns)
c = forecast.calibration
print(f"calibrated on {c.origins} past origins: drift shrink {c.shrink:.2f}, "
      f"spread x{c.scale.min():.2f}-x{c.scale.max():.2f}")
summary = pd.DataFrame({
    "actual": bars["close"].iloc[-pred_len:].to_numpy(),
    "median": forecast.median["close"].to_numpy(),
    "p10": forecast.quantile(0.1)["close"].to_numpy(),
    "p90": forecast.quantile(0.9)["close"].to_numpy(),
}, index=future)
print(summary.astype(float).round(2))

# The original API works unchanged: the mean of sample_count paths as a DataFrame.
recent = history.iloc[-200:]
mean = predictor.predict(recent, recent["timestamps"], future, pred_len, T=1.0, top_p=0.9, sample_count=5)
print(mean[["open", "high", "low", "close"]].astype(float).round(2).head())
