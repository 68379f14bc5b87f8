"""Opt-in checks over the full collection of real series beside a checkout (``KRONOS_FULL_DATA``).

The default suite reads only ``tests/data``; these tests skip, with the reason, where the collection
is absent. The collection has grown over time, so counts come from the folder itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from kronos.data.tables import load_series

from .conftest import FULL_DATA, needs_full_data

pytestmark = needs_full_data()


def test_every_file_of_the_collection_reads_as_one_series():
    files = sorted(FULL_DATA.glob("*.csv"))
    series = load_series(FULL_DATA)
    assert [s.name for s in series] == [f.stem for f in files]
    for item in series:
        assert len(item) >= 100 and np.isfinite(item.bars[:, :5]).all(), item.name
        assert item.timestamps.is_monotonic_increasing and item.timestamps.is_unique, item.name


@pytest.mark.slow
def test_the_default_model_forecasts_the_end_of_every_series():
    from kronos import KronosPredictor
    from kronos.data.calendar import future_timestamps

    predictor = KronosPredictor.from_pretrained(device="cpu")
    series = load_series(FULL_DATA)
    histories = [s.slice(-300, None) for s in series]
    futures = [future_timestamps(h.timestamps, 6)[0] for h in histories]
    forecasts = predictor.forecast_batch([h.frame() for h in histories], [h.timestamps for h in histories], futures,
                                         6, sample_count=4, seed=0)
    for history, forecast in zip(histories, forecasts):
        close = forecast.median["close"].to_numpy()
        last, spread = history.bars[-1, 3], history.bars[:, 3].std() * 10 + 1e-9
        assert np.isfinite(forecast.samples).all() and np.abs(close - last).max() < spread, history.name
