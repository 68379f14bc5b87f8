"""From bars to forecasts: the generation engine, calibration, the predictor and its results."""
