"""From bars to forecasts: the door (:func:`kronos.forecasting.forecast.forecast_series` with
:class:`kronos.forecasting.options.ForecastOptions`), the generation engine, calibration, the predictor and its
results."""
