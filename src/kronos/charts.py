"""Forecast charts: candlesticks of the recent history, the forecast median with 50% and 80% bands, volume.

Static PNG/SVG come from matplotlib (an Agg ``Figure``, no pyplot state, safe in threads); interactive
HTML and the web page's chart come from Plotly. Both put bars at consecutive positions, so weekends
and nights do not leave gaps, and label the axis with the bars' timestamps.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .forecasting.predictor import Forecast

UP, DOWN = "#26a69a", "#ef5350"
FORECAST = "#1f5fbf"
REALISED = "#222222"
BANDS = ((0.1, 0.9, "80% band", 0.16), (0.25, 0.75, "50% band", 0.32))


def _need(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(f"charts need {module}: pip install 'kronos-kline[plot]'") from exc


def _labels(index: pd.DatetimeIndex) -> list[str]:
    """Timestamps as text: dates alone when every bar is at midnight."""
    daily = bool((index == index.normalize()).all())
    return [t.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M") for t in index]


class _ChartData:
    """The numbers both renderers draw: the last ``history_bars`` bars and the forecast's close/volume quantiles.

    Forecast arrays start at the last history bar (its close, for the bands and median), so the
    forecast line joins the candles.
    """

    def __init__(self, history: pd.DataFrame, forecast: Forecast, history_bars: int):
        if not isinstance(history.index, pd.DatetimeIndex):
            raise TypeError("history must be indexed by timestamps (a DatetimeIndex)")
        hist = history.iloc[-history_bars:]
        self.hist = hist
        self.hist_labels = _labels(hist.index)
        self.future_labels = _labels(forecast.timestamps)
        columns = list(forecast.columns)
        close = forecast.samples[:, :, columns.index("close")]  # (S, P)
        volume = forecast.samples[:, :, columns.index("volume")]
        last_close = float(hist["close"].iloc[-1])
        self.close = {q: np.concatenate([[last_close], np.quantile(close, q, axis=0)])
                      for q in (0.1, 0.25, 0.5, 0.75, 0.9)}  # each (P + 1,)
        self.volume = {q: np.quantile(volume, q, axis=0) for q in (0.1, 0.5, 0.9)}  # each (P,)
        self.has_volume = "volume" in hist.columns and bool(np.nansum(hist["volume"].to_numpy()) > 0)
        self.up = (hist["close"] >= hist["open"]).to_numpy()


# -- matplotlib ------------------------------------------------------------------------------------------

def matplotlib_figure(history: pd.DataFrame, forecast: Forecast, history_bars: int = 120, title: str = "",
                      realised: pd.DataFrame | None = None):
    """A matplotlib Figure: candles + forecast bands on top, volume below; ``realised`` bars (the first ones
    of the forecast's horizon, when known) are drawn over the bands."""
    _need("matplotlib")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    data = _ChartData(history, forecast, history_bars)
    n_hist, n_future = len(data.hist), len(data.future_labels)
    fig = Figure(figsize=(11, 6.5), dpi=110, layout="constrained")
    if data.has_volume:
        price, vol = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    else:
        price, vol = fig.subplots(1, 1), None
    x = np.arange(n_hist)
    colors = np.where(data.up, UP, DOWN)
    o, h, lo, c = (data.hist[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    price.vlines(x, lo, h, colors=colors, linewidth=0.8)
    body = np.maximum(np.abs(c - o), (h.max() - lo.min()) * 1e-3)
    price.bar(x, body, bottom=np.minimum(o, c), width=0.7, color=colors, edgecolor=colors, linewidth=0.5)
    xf = np.arange(n_hist - 1, n_hist + n_future)
    for low_q, high_q, label, alpha in BANDS:
        price.fill_between(xf, data.close[low_q], data.close[high_q], color=FORECAST, alpha=alpha, linewidth=0,
                           label=label)
    price.plot(xf, data.close[0.5], color=FORECAST, linewidth=1.8, label="forecast median (close)")
    if realised is not None and len(realised):
        real = realised.iloc[:n_future]
        rx = np.arange(n_hist, n_hist + len(real))
        ro, rh, rl, rc = (real[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
        price.vlines(rx, rl, rh, colors=REALISED, linewidth=0.9)
        price.bar(rx, np.maximum(np.abs(rc - ro), (h.max() - lo.min()) * 1e-3), bottom=np.minimum(ro, rc),
                  width=0.55, color="none", edgecolor=REALISED, linewidth=1.0)
        price.plot(rx, rc, color=REALISED, linewidth=1.2, marker="o", markersize=2.5, label="realised (close)")
    price.axvline(n_hist - 0.5, color="0.5", linestyle="--", linewidth=0.8)
    price.set_ylabel("price")
    price.grid(alpha=0.25)
    handles, labels = price.get_legend_handles_labels()
    handles.insert(0, Patch(facecolor=UP, edgecolor=DOWN, label="history"))
    price.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.85)
    price.set_title(title or f"Kronos forecast: {n_future} bars, {forecast.samples.shape[0]} sample paths",
                    fontsize=11)
    if vol is not None:
        vol.bar(x, data.hist["volume"].to_numpy(dtype=float), width=0.7, color=colors, alpha=0.6)
        fx = np.arange(n_hist, n_hist + n_future)
        vol.bar(fx, data.volume[0.5], width=0.7, color=FORECAST, alpha=0.45, label="forecast median volume")
        vol.vlines(fx, data.volume[0.1], data.volume[0.9], colors=FORECAST, linewidth=1.0, label="80% band")
        vol.axvline(n_hist - 0.5, color="0.5", linestyle="--", linewidth=0.8)
        vol.set_ylabel("volume")
        vol.grid(alpha=0.25)
        vol.legend(loc="upper left", fontsize=8, framealpha=0.85)
    axis = vol if vol is not None else price
    labels_all = data.hist_labels + data.future_labels
    ticks = np.unique(np.linspace(0, len(labels_all) - 1, num=min(8, len(labels_all))).round().astype(int))
    axis.set_xticks(ticks, [labels_all[i] for i in ticks], rotation=20, ha="right", fontsize=8)
    axis.set_xlim(-1, len(labels_all))
    return fig


# -- plotly ----------------------------------------------------------------------------------------------

def plotly_figure(history: pd.DataFrame, forecast: Forecast, history_bars: int = 120, title: str = "",
                  realised: pd.DataFrame | None = None):
    """A Plotly Figure with the same content; the x axis is categorical (no gaps for closed markets)."""
    _need("plotly")
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    data = _ChartData(history, forecast, history_bars)
    rows = 2 if data.has_volume else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[0.75, 0.25] if rows == 2 else [1.0])
    hist = data.hist
    fig.add_trace(go.Candlestick(x=data.hist_labels, open=hist["open"], high=hist["high"], low=hist["low"],
                                 close=hist["close"], name="history", increasing_line_color=UP,
                                 decreasing_line_color=DOWN), row=1, col=1)
    xf = data.hist_labels[-1:] + data.future_labels
    for low_q, high_q, label, alpha in BANDS:
        fig.add_trace(go.Scatter(x=xf, y=data.close[high_q], mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip", legendgroup=label), row=1, col=1)
        fig.add_trace(go.Scatter(x=xf, y=data.close[low_q], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=f"rgba(31,95,191,{alpha})", name=label, legendgroup=label,
                                 hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Scatter(x=xf, y=data.close[0.5], mode="lines", line={"color": FORECAST, "width": 2},
                             name="forecast median (close)"), row=1, col=1)
    if realised is not None and len(realised):
        real = realised.iloc[:len(data.future_labels)]
        fig.add_trace(go.Candlestick(x=data.future_labels[:len(real)], open=real["open"], high=real["high"],
                                     low=real["low"], close=real["close"], name="realised",
                                     increasing_line_color=REALISED, decreasing_line_color=REALISED,
                                     increasing_fillcolor="rgba(0,0,0,0)", decreasing_fillcolor=REALISED),
                      row=1, col=1)
    if rows == 2:
        colors = np.where(data.up, UP, DOWN).tolist()
        fig.add_trace(go.Bar(x=data.hist_labels, y=hist["volume"], marker_color=colors, opacity=0.6,
                             name="volume", showlegend=False), row=2, col=1)
        spread = np.stack([data.volume[0.9] - data.volume[0.5], data.volume[0.5] - data.volume[0.1]])
        fig.add_trace(go.Bar(x=data.future_labels, y=data.volume[0.5], marker_color=FORECAST, opacity=0.5,
                             name="forecast volume (median, 80% band)",
                             error_y={"type": "data", "symmetric": False, "array": spread[0],
                                      "arrayminus": spread[1], "thickness": 1}), row=2, col=1)
        fig.update_yaxes(title_text="volume", row=2, col=1)
    fig.update_xaxes(type="category", nticks=10, categoryorder="array",
                     categoryarray=data.hist_labels + data.future_labels)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_layout(title={"text": title or f"Kronos forecast: {len(data.future_labels)} bars, "
                                              f"{forecast.samples.shape[0]} sample paths",
                             "y": 0.98, "yanchor": "top", "x": 0.01, "font": {"size": 15}},
                      template="plotly_white", height=640, margin={"l": 60, "r": 20, "t": 90, "b": 40},
                      xaxis_rangeslider_visible=False, bargap=0.2, hovermode="x unified",
                      legend={"orientation": "h", "y": 1.0, "x": 0, "yanchor": "bottom", "font": {"size": 11}})
    return fig


def plotly_json(history: pd.DataFrame, forecast: Forecast, history_bars: int = 120, title: str = "",
                realised: pd.DataFrame | None = None) -> dict:
    """The Plotly figure as a JSON-ready dict ({"data": [...], "layout": {...}}) for ``Plotly.newPlot``."""
    return json.loads(plotly_figure(history, forecast, history_bars, title, realised).to_json())


# -- files -----------------------------------------------------------------------------------------------

def chart_bytes(history: pd.DataFrame, forecast: Forecast, fmt: str, history_bars: int = 120,
                title: str = "", realised: pd.DataFrame | None = None) -> bytes:
    """The chart as PNG, SVG or self-contained HTML (plotly.js inlined: opens offline) bytes. The same forecast
    gives the same bytes: no creation date in the file, fixed SVG element ids and HTML div id."""
    fmt = fmt.lower().lstrip(".")
    if fmt in ("png", "svg"):
        import matplotlib

        buffer = io.BytesIO()
        with matplotlib.rc_context({"svg.hashsalt": "kronos"}):
            figure = matplotlib_figure(history, forecast, history_bars, title, realised)
            figure.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
        return buffer.getvalue()
    if fmt == "html":
        figure = plotly_figure(history, forecast, history_bars, title, realised)
        return figure.to_html(include_plotlyjs=True, div_id="kronos-chart").encode()
    raise ValueError(f"chart format must be png, svg or html, got {fmt!r}")


def save_chart(history: pd.DataFrame, forecast: Forecast, path: str | Path, history_bars: int = 120,
               title: str = "", realised: pd.DataFrame | None = None, **_: Any) -> Path:
    """Write the chart to ``path`` (format from its extension: .png, .svg or .html) atomically; ``realised``
    bars of the horizon, when given, are drawn over the forecast bands."""
    from .io import atomic_write_bytes

    return atomic_write_bytes(path, chart_bytes(history, forecast, Path(path).suffix, history_bars, title, realised))
