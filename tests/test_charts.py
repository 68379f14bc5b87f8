"""Forecast charts from a real series and a real (tiny-model) forecast: PNG, SVG, HTML and the page's JSON."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from kronos.charts import chart_bytes, matplotlib_figure, plotly_figure, plotly_json, save_chart
from kronos.data.calendar import future_timestamps
from kronos.data.tables import read_series

from .conftest import DATA


@pytest.fixture(scope="module")
def history_and_forecast(tiny_predictor):
    [series] = read_series(DATA / "bokeh_MSFT_1d.csv")
    bars = series.slice(-200, None).frame()
    future, _ = future_timestamps(bars.index, 12)
    forecast = tiny_predictor.forecast(bars, bars.index, future, 12, sample_count=8, seed=3)
    return bars, forecast


def test_png_has_price_and_volume_panels_with_bands(history_and_forecast, tmp_path):
    bars, forecast = history_and_forecast
    figure = matplotlib_figure(bars, forecast, history_bars=60)
    price, volume = figure.axes
    assert price.get_ylabel() == "price" and volume.get_ylabel() == "volume"
    labels = [t.get_text() for t in price.get_legend().get_texts()]
    assert labels == ["history", "80% band", "50% band", "forecast median (close)"]
    # 60 candles + 12 forecast bars on consecutive positions; the last tick is the last forecast date
    assert volume.get_xlim() == (-1, 72)
    assert volume.get_xticklabels()[-1].get_text() == forecast.timestamps[-1].strftime("%Y-%m-%d")
    path = save_chart(bars, forecast, tmp_path / "chart.png", history_bars=60)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user writes, not 0600


def test_band_edges_are_the_forecast_quantiles_of_close(history_and_forecast):
    bars, forecast = history_and_forecast
    figure = plotly_figure(bars, forecast, history_bars=30)
    traces = {t.name: t for t in figure.data if t.name}
    close = forecast.samples[:, :, 3]
    np.testing.assert_allclose(traces["80% band"].y[1:], np.quantile(close, 0.1, axis=0), rtol=1e-6)
    np.testing.assert_allclose(traces["forecast median (close)"].y[1:], np.quantile(close, 0.5, axis=0), rtol=1e-6)
    assert traces["forecast median (close)"].y[0] == pytest.approx(float(bars["close"].iloc[-1]))
    assert figure.layout.xaxis.type == "category" and len(traces["history"].x) == 30


def test_svg_and_html_files_open_without_network(history_and_forecast, tmp_path):
    bars, forecast = history_and_forecast
    svg = chart_bytes(bars, forecast, "svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    html = save_chart(bars, forecast, tmp_path / "chart.html").read_text()
    external_scripts = re.findall(r'<script[^>]*src="[^"]*"', html)
    assert external_scripts == [], "plotly.js must be inlined, not loaded from a CDN"
    assert html.count("Plotly.newPlot") >= 1 and len(html) > 1_000_000
    figure = plotly_json(bars, forecast)
    assert json.loads(json.dumps(figure)) == figure and figure["data"][0]["type"] == "candlestick"


def test_unknown_chart_format_is_refused(history_and_forecast):
    with pytest.raises(ValueError, match=r"chart format must be png, svg or html, got 'gif'"):
        chart_bytes(*history_and_forecast, "gif")
