"""Valid candles: every sample bar a forecast hands out obeys low <= min(open, close) <= max(open, close) <= high."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kronos.data.calendar import future_timestamps
from kronos.data.candles import invalid_share, valid_candles
from kronos.forecasting.forecast import forecast_series
from kronos.forecasting.inputs import from_frames
from kronos.forecasting.options import ForecastOptions
from tests.conftest import read_bars

DAILY, INTRADAY = "bokeh_AAPL_1d.csv", "pyalgotrade_SPY-2011-01_1min.csv"


def assert_valid(samples: np.ndarray) -> None:
    o, h, lo, c, v, a = np.moveaxis(np.asarray(samples), -1, 0)
    assert np.all(lo <= np.minimum(o, c)) and np.all(np.maximum(o, c) <= h)
    assert np.all(v >= 0) and np.all(a >= 0)


def test_valid_candles_keeps_open_and_close_and_extends_the_wicks():
    bars = np.array([[10.0, 9.0, 11.0, 10.5, -1.0, 5.0],  # high below the body, low above it, volume < 0
                     [10.0, 12.0, 9.0, 11.0, 3.0, -2.0],  # already valid prices
                     [10.0, 10.2, 9.9, 9.95, 0.0, 0.0]], dtype=np.float32)
    out = valid_candles(bars)
    assert out.dtype == np.float32 and out is not bars
    np.testing.assert_array_equal(out[:, [0, 3]], bars[:, [0, 3]])
    np.testing.assert_array_equal(out[0], [10.0, 10.5, 10.0, 10.5, 0.0, 5.0])
    np.testing.assert_array_equal(out[1], [10.0, 12.0, 9.0, 11.0, 3.0, 0.0])
    np.testing.assert_array_equal(out[2], bars[2])
    assert invalid_share(bars) == pytest.approx(2 / 3) and invalid_share(out) == 0.0
    with pytest.raises(ValueError, match="6 columns"):
        valid_candles(bars[:, :4])


def _history(name: str, bars: int = 600) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    df = read_bars(name).tail(bars).reset_index(drop=True)
    return df, pd.DatetimeIndex(df["timestamps"])


@pytest.fixture(scope="module")
def default_predictor():
    from kronos import KronosPredictor

    return KronosPredictor.from_pretrained(device="cpu")


@pytest.mark.parametrize("name", [DAILY, INTRADAY])
def test_forecast_paths_of_real_series_are_valid_candles(default_predictor, name, one_thread):
    """The bundled model on the last 600 bars of real daily and 1-minute bars: every bar of every path is valid,
    with calibration and without, while the decoded bars (what predict() keeps) break the rule."""
    df, ts = _history(name)
    future = future_timestamps(ts, 20, None)[0]
    raw = forecast_series(default_predictor, from_frames([df], [ts], [future], 20),
                          ForecastOptions(sample_count=50, quantiles=(), seed=0, calibrate=False, valid=False))[0]
    assert invalid_share(raw.samples) > 0.01  # the decoded bars do break it: the repair is not idle
    for calibrate in (False, True):
        forecast = default_predictor.forecast(df, ts, future, 20, sample_count=50, seed=0, calibrate=calibrate)
        assert_valid(forecast.samples)
        if not calibrate:  # the repair leaves open and close as sampled
            np.testing.assert_array_equal(forecast.samples[..., [0, 3]], raw.samples[..., [0, 3]])


def test_forecast_batch_and_forecast_df_give_valid_candles(default_predictor, one_thread):
    frames = [_history(name, 400) for name in (DAILY, INTRADAY)]
    futures = [future_timestamps(ts, 12, None)[0] for _, ts in frames]
    forecasts = default_predictor.forecast_batch([df for df, _ in frames], [ts for _, ts in frames], futures, 12,
                                                 sample_count=30, seed=[1, 2])
    for forecast in forecasts:
        assert_valid(forecast.samples)
    tidy = default_predictor.forecast_df(frames[1][0], pred_len=12, sample_count=30, seed=0)
    wide = {column: part.drop(columns=["timestamp", "column"]).to_numpy() for column, part in tidy.groupby("column")}
    # the quantiles of valid paths keep the order too: each level's high >= its close, its low <= its close
    assert np.all(wide["high"] >= wide["close"] - 1e-9) and np.all(wide["low"] <= wide["close"] + 1e-9)


def test_predict_keeps_the_decoded_bars(default_predictor, one_thread):
    """predict() is the original's verb: its mean bar is the mean of the decoded paths, not repaired."""
    df, ts = _history(INTRADAY, 300)
    future = future_timestamps(ts, 20, None)[0]
    mean = default_predictor.predict(df, ts, future, 20, sample_count=5, seed=0)
    paths = forecast_series(default_predictor, from_frames([df], [ts], [future], 20),
                            ForecastOptions.original(sample_count=5, seed=0))[0]
    np.testing.assert_allclose(mean.to_numpy(), paths.samples.mean(axis=0), rtol=1e-6)
