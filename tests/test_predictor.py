"""KronosPredictor: input validation messages, column defaults, forecast objects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kronos import Forecast
from kronos.data.features import FEATURE_COLUMNS, bar_features

LOOKBACK, PRED = 48, 6


@pytest.fixture()
def inputs(xshg):
    history = xshg.iloc[:LOOKBACK].reset_index(drop=True)
    future = xshg["timestamps"].iloc[LOOKBACK:LOOKBACK + PRED]
    return history, history["timestamps"], future


def _predict(predictor, history, x_ts, y_ts, pred_len=PRED, **kwargs):
    kwargs.setdefault("top_k", 1)
    return predictor.predict(history, x_ts, y_ts, pred_len, **kwargs)


@pytest.mark.parametrize("drop", ["open", "close"])
def test_missing_price_column(tiny_predictor, inputs, drop):
    history, x_ts, y_ts = inputs
    with pytest.raises(ValueError, match=f"df is missing required column\\(s\\) {drop}; it has"):
        _predict(tiny_predictor, history.drop(columns=[drop]), x_ts, y_ts)


def test_non_numeric_column_names_column_row_and_value(tiny_predictor, inputs):
    history, x_ts, y_ts = inputs
    history = history.astype({"high": object})
    history.loc[5, "high"] = "n/a"
    with pytest.raises(ValueError, match=r"column 'high' must be numeric; dtype object, non-numeric value 'n/a' "
                                         r"at row\(s\) 5"):
        _predict(tiny_predictor, history, x_ts, y_ts)


@pytest.mark.parametrize("value, column", [(np.nan, "low"), (np.inf, "volume")])
def test_nan_or_inf_names_column_and_rows(tiny_predictor, inputs, value, column):
    history, x_ts, y_ts = inputs
    history = history.astype({column: float})
    history.loc[[3, 9], column] = value
    with pytest.raises(ValueError, match=rf"column '{column}' has NaN or inf values .* at row\(s\) 3, 9"):
        _predict(tiny_predictor, history, x_ts, y_ts)


def test_too_few_history_rows(tiny_predictor, inputs):
    history, x_ts, y_ts = inputs
    with pytest.raises(ValueError, match=r"df has 1 history row\(s\); at least 2 are needed"):
        _predict(tiny_predictor, history.iloc[:1], x_ts.iloc[:1], y_ts)


def test_x_timestamp_length_mismatch(tiny_predictor, inputs):
    history, x_ts, y_ts = inputs
    with pytest.raises(ValueError, match=f"x_timestamp has {LOOKBACK - 1} timestamps but {LOOKBACK} were expected"):
        _predict(tiny_predictor, history, x_ts.iloc[1:], y_ts)


def test_x_timestamp_not_increasing(tiny_predictor, inputs):
    history, x_ts, y_ts = inputs
    shuffled = x_ts.copy()
    shuffled.iloc[[10, 11]] = shuffled.iloc[[11, 10]].to_numpy()
    with pytest.raises(ValueError, match=r"x_timestamp must be strictly increasing: position 11 .* does not come "
                                         r"after position 10"):
        _predict(tiny_predictor, history, shuffled, y_ts)


def test_y_timestamp_empty(tiny_predictor, inputs):
    history, x_ts, _ = inputs
    with pytest.raises(ValueError, match="y_timestamp is empty"):
        _predict(tiny_predictor, history, x_ts, [])


def test_y_timestamp_length_differs_from_pred_len(tiny_predictor, inputs):
    history, x_ts, y_ts = inputs
    with pytest.raises(ValueError, match=f"y_timestamp has {PRED} timestamps but {PRED + 2} were expected"):
        _predict(tiny_predictor, history, x_ts, y_ts, pred_len=PRED + 2)


def test_y_timestamp_before_history_end(tiny_predictor, inputs):
    history, x_ts, _ = inputs
    with pytest.raises(ValueError, match="y_timestamp must start after the last x_timestamp"):
        _predict(tiny_predictor, history, x_ts, x_ts.iloc[-PRED:])


@pytest.mark.parametrize("kwargs, message", [
    (dict(pred_len=0), r"pred_len must be an integer >= 1, got 0"),
    (dict(sample_count=0), r"sample_count must be an integer >= 1, got 0"),
    (dict(T=0.0), r"T \(temperature\) must be at least 0.001 .*got 0.0"),
    (dict(T=-1), r"T \(temperature\) must be at least 0.001 .*got -1"),
    (dict(T=1e-300), r"T \(temperature\) must be at least 0.001 .*got 1e-300"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\], got 0.0"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\], got 1.5"),
    (dict(top_k=-2), r"top_k must be None or an integer >= 0, got -2"),
])
def test_bad_arguments_are_named(tiny_predictor, inputs, kwargs, message):
    history, x_ts, y_ts = inputs
    with pytest.raises(ValueError, match=message):
        _predict(tiny_predictor, history, x_ts, y_ts, **kwargs)


@pytest.mark.parametrize("method, extra", [("predict", (1.0,)), ("forecast", (4,))])
def test_settings_after_pred_len_are_keyword_only(tiny_predictor, inputs, method, extra):
    history, x_ts, y_ts = inputs
    with pytest.raises(TypeError, match="positional"):
        getattr(tiny_predictor, method)(history, x_ts, y_ts, PRED, *extra)
    batch = getattr(tiny_predictor, f"{method}_batch")
    with pytest.raises(TypeError, match="positional"):
        batch([history], [x_ts], [y_ts], PRED, *extra)


def test_volume_and_amount_defaults():
    prices = pd.DataFrame({"open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.0], "close": [1.5, 2.5]})
    no_volume = bar_features(prices)
    assert (no_volume[:, 4:] == 0).all()
    with_volume = bar_features(prices.assign(volume=[10.0, 20.0]))
    np.testing.assert_allclose(with_volume[:, 5], [10.0 * 1.25, 20.0 * 2.125])
    # An empty amount column (as in most files of the shared data) counts as absent.
    empty_amount = bar_features(prices.assign(volume=[10.0, 20.0], amount=[np.nan, np.nan]))
    np.testing.assert_array_equal(empty_amount, with_volume)


def test_predict_returns_frame_indexed_by_forecast_timestamps(tiny_predictor, inputs):
    history, x_ts, y_ts = inputs
    out = _predict(tiny_predictor, history, x_ts, y_ts)
    assert list(out.columns) == list(FEATURE_COLUMNS)
    assert list(out.index) == list(y_ts)
    assert out.to_numpy().dtype == np.float32 and np.isfinite(out.to_numpy()).all()
    # Without volume the forecast volume/amount are 0, never negative.
    prices_only = _predict(tiny_predictor, history[["open", "high", "low", "close"]], x_ts, y_ts)
    assert (prices_only[["volume", "amount"]].to_numpy() >= 0).all()


def test_forecast_object_shapes_and_quantiles(tiny_predictor, inputs):
    history, x_ts, y_ts = inputs
    forecast = tiny_predictor.forecast(history, x_ts, y_ts, PRED, sample_count=16, seed=3,
                                       quantiles=(0.1, 0.5, 0.9))
    assert isinstance(forecast, Forecast)
    assert forecast.samples.shape == (16, PRED, 6)
    assert list(forecast.columns) == list(FEATURE_COLUMNS)
    assert (forecast.samples[..., 4:] >= 0).all()  # volume and amount clipped at 0 in every path
    np.testing.assert_allclose(forecast.mean.to_numpy(), forecast.samples.mean(0), rtol=1e-6)
    low, mid, high = (forecast.quantile(q).to_numpy() for q in (0.1, 0.5, 0.9))
    assert (low <= mid + 1e-6).all() and (mid <= high + 1e-6).all()
    np.testing.assert_allclose(forecast.median.to_numpy(), mid)
    tidy = forecast.to_frame()
    assert list(tidy.columns) == ["timestamp", "column", "mean", "0.1", "0.5", "0.9"]
    assert len(tidy) == PRED * 6
    close = tidy[tidy["column"] == "close"]
    np.testing.assert_allclose(close["0.9"].to_numpy(), forecast.quantile(0.9)["close"].to_numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="quantile level must be in"):
        forecast.quantile(1.5)


def test_default_model_missing_is_a_clear_error(monkeypatch, tmp_path):
    from kronos import KronosPredictor
    from kronos.model import checkpoint, default_model

    monkeypatch.setattr(default_model, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)  # where "default" is resolved
    with pytest.raises(FileNotFoundError, match="bundled default model is missing"):
        KronosPredictor.from_pretrained()


def test_predicts_in_eval_mode_even_if_the_model_was_put_in_training_mode(tiny_predictor, inputs):
    history, x_ts, y_ts = inputs
    reference = _predict(tiny_predictor, history, x_ts, y_ts)
    tiny_predictor.model.train()  # dropout would change the forecast if it were active
    try:
        again = _predict(tiny_predictor, history, x_ts, y_ts)
        assert tiny_predictor.model.training  # the caller's mode is restored afterwards
    finally:
        tiny_predictor.model.eval()
    assert again.equals(reference)


def test_verbose_shows_a_progress_bar_on_stderr_and_changes_nothing(tiny_predictor, inputs, capsys):
    history, x_ts, y_ts = inputs
    quiet = _predict(tiny_predictor, history, x_ts, y_ts)
    capsys.readouterr()
    loud = _predict(tiny_predictor, history, x_ts, y_ts, verbose=True)
    captured = capsys.readouterr()
    assert loud.equals(quiet)
    assert f"{PRED}/{PRED}" in captured.err and captured.out == ""
