"""The forecasting door: ForecastOptions (one set of defaults, checked once) and forecast_series, the one way from
series to forecasts, equal to the predictor's verbs for DataFrames, tables.Series and (bars, timestamps) pairs."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from kronos.data.calendar import future_timestamps
from kronos.data.tables import frame_to_series
from kronos.forecasting.forecast import forecast_frame, forecast_series
from kronos.forecasting.inputs import from_frames, tidy_frame
from kronos.forecasting.options import ForecastOptions
from kronos.forecasting.predictor import KronosPredictor
from kronos.forecasting.sampling import SamplingConfig

HISTORY, PRED = 300, 5


@pytest.fixture()
def history(xshg) -> pd.DataFrame:
    return xshg.iloc[:HISTORY].reset_index(drop=True)


def test_options_hold_the_forecast_defaults_and_predict_keeps_the_original_ones():
    options = ForecastOptions()
    forecast = inspect.signature(KronosPredictor.forecast_batch).parameters
    for name in ("sample_count", "T", "top_k", "top_p", "quantiles", "calibrate", "dequantise", "calibration_seed"):
        assert getattr(options, name) == forecast[name].default, name
    assert options.sampling == SamplingConfig(1.0, 0, 1.0) == SamplingConfig()
    original = ForecastOptions.original()
    predict = inspect.signature(KronosPredictor.predict_batch).parameters
    assert (original.top_p, original.sample_count) == (predict["top_p"].default, predict["sample_count"].default) \
        == (0.9, 1)
    assert not (original.calibrate or original.dequantise or original.truncate or original.valid)
    assert original.quantiles == ()


@pytest.mark.parametrize("changes, error, message", [
    (dict(sample_count=0), ValueError, r"sample_count must be an integer >= 1, got 0"),
    (dict(T=0.0), ValueError, r"T \(temperature\) must be at least 0.001"),
    (dict(top_p=1.5), ValueError, r"top_p must be in \(0, 1\], got 1.5"),
    (dict(top_k=True), ValueError, r"top_k must be None or an integer >= 0, got True"),
    (dict(quantiles=(0.5, 2)), ValueError, r"quantiles must be in \[0, 1\], got \[2.0\]"),
    (dict(seed=1.5), TypeError, r"seed must be an int, a list of ints \(one per series\) or a random generator"),
    (dict(seed=[1, -2]), TypeError, r"seed as a list takes one int >= 0 per series, got \[1, -2\]"),
    (dict(calibration_seed=-1), TypeError, r"calibration_seed must be an int >= 0, got -1"),
    (dict(calibration=["x"]), TypeError, r"calibration\[0\] must be a Calibration or None, got str"),
    (dict(lookback=0), ValueError, r"lookback must be an integer >= 1, got 0"),
])
def test_options_are_checked_on_construction_naming_the_value(changes, error, message):
    with pytest.raises(error, match=message):
        ForecastOptions(**changes)
    with pytest.raises(error, match=message):  # a copy with changes is checked again
        ForecastOptions().with_(**changes)


def test_options_are_frozen():
    with pytest.raises(AttributeError):
        ForecastOptions().sample_count = 3


def test_series_and_arrays_give_the_forecast_of_the_dataframe(tiny_predictor, history, one_thread):
    """A tables.Series and (bars, timestamps) go to the network as float arrays (no DataFrame is rebuilt) and
    give bit for bit the paths that forecast_batch gives for the DataFrame."""
    series = frame_to_series(history, "xshg")[0]
    future = future_timestamps(series.timestamps, PRED, None)[0]
    options = ForecastOptions(sample_count=4, seed=[3])
    by_frame = tiny_predictor.forecast_batch([history], [history["timestamps"]], [future], PRED, sample_count=4,
                                             seed=[3])[0]
    by_series = forecast_series(tiny_predictor, [series], options, [future])[0]
    by_arrays = forecast_series(tiny_predictor, [(series.bars.astype(np.float64), series.timestamps)], options,
                                [future])[0]
    for other in (by_series, by_arrays):
        np.testing.assert_array_equal(other.samples, by_frame.samples)
        np.testing.assert_array_equal(other.calibration.scale, by_frame.calibration.scale)


def test_predict_is_the_door_with_the_original_options(tiny_predictor, history, one_thread):
    future = future_timestamps(pd.DatetimeIndex(history["timestamps"]), PRED, None)[0]
    mean = tiny_predictor.predict(history, history["timestamps"], future, PRED, sample_count=3, seed=0)
    inputs = from_frames([history], [history["timestamps"]], [future], PRED)
    paths = forecast_series(tiny_predictor, inputs, ForecastOptions.original(sample_count=3, seed=0))[0]
    np.testing.assert_array_equal(mean.to_numpy(), paths.mean.to_numpy())


def test_forecast_frame_is_forecast_df(tiny_predictor, xshg, one_thread):
    """The tidy frame of a long table: future timestamps by each series' calendar, the id column first."""
    long = pd.concat([xshg.iloc[:200].assign(symbol="A"), xshg.iloc[200:420].assign(symbol="B")],
                     ignore_index=True)
    expected = tiny_predictor.forecast_df(long, pred_len=PRED, sample_count=3, seed=[1, 2])
    series = frame_to_series(long, "df")
    got = forecast_frame(tiny_predictor, series, PRED, ForecastOptions(sample_count=3, seed=[1, 2]),
                         id_column="symbol")
    pd.testing.assert_frame_equal(got, expected)
    assert list(got.columns[:3]) == ["symbol", "timestamp", "column"]
    assert got["symbol"].unique().tolist() == ["A", "B"]


def test_tidy_frame_in_float32_keeps_timestamps_and_names():
    from kronos.forecasting.result import Forecast

    samples = np.arange(2 * 3 * 6, dtype=np.float64).reshape(2, 3, 6)
    stamps = pd.date_range("2024-01-01", periods=3, freq="D")
    frame = tidy_frame([Forecast(samples, stamps, (0.5,))], float32=True)
    assert frame["mean"].dtype == np.float32 and frame["0.5"].dtype == np.float32
    assert frame["timestamp"].tolist() == list(np.repeat(stamps, 6))


def test_futures_are_needed_for_series_and_must_match(tiny_predictor, history):
    series = frame_to_series(history, "xshg")[0]
    with pytest.raises(TypeError, match="futures= is required unless every series is a SeriesInput"):
        forecast_series(tiny_predictor, [series])
    with pytest.raises(ValueError, match="1 series but 2 futures"):
        forecast_series(tiny_predictor, [series], None, [None, None])
    with pytest.raises(ValueError, match="seed has 2 entries for 1 series"):
        future = future_timestamps(series.timestamps, PRED, None)[0]
        forecast_series(tiny_predictor, [series], ForecastOptions(seed=[1, 2]), [future])


def test_past_seeds_do_not_depend_on_the_timestamps_resolution():
    """A frame read with microsecond timestamps and a table read in nanoseconds hold the same bars: their past
    forecasts share seeds and keys, so calibration agrees."""
    from kronos.forecasting.past_forecasts import past_seed

    stamps = pd.date_range("2024-01-01", periods=8, freq="D")
    bars = np.ones((6, 6), dtype=np.float32)
    seeds = {past_seed(bars, stamps[:6].as_unit(unit), stamps[6:].as_unit(unit)) for unit in ("s", "us", "ns")}
    assert len(seeds) == 1
