"""Write a backtest to a folder: report.md, metrics.json, equity.csv, ic.csv, chart.png, chart.html and ic.png.

Every file is written atomically (temporary file + rename). The chart draws the equity curve of every
signal and of the buy-and-hold on one plot over the 5–95% band of random signals' equity, their drawdowns
below; ic.png the rolling RankIC of each signal.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..evaluation.report import markdown_table, to_json_bytes
from ..io import atomic_write_bytes
from .stats_report import ic_png, statistics_dict, statistics_lines

BacktestResult = Any  # kronos.backtest.BacktestResult (not imported: the runner imports this module)

SHOWN = ("sharpe", "annual_return", "annual_vol", "max_drawdown", "turnover", "hit_rate", "ic", "rank_ic",
         "total_return", "costs")
STRATEGY_TEXT = {
    "topk_dropout": "top-{k} long with dropout (at most {n_drop} names replaced per rebalance)",
    "long_short": "top-{k} long / bottom-{k} short, dollar neutral (gross 1)",
    "long_flat": "long when the score is above {threshold:g}, else flat (equal shares over the names)",
    "long_short_threshold": "long above {threshold:g}, short at or below (equal shares over the names)",
}


def metrics_table(result: BacktestResult) -> pd.DataFrame:
    return result.metrics[[c for c in SHOWN if c in result.metrics.columns]]


def render_markdown(result: BacktestResult) -> str:
    config, plan, t = result.config, result.plan, result.timing
    strategy = STRATEGY_TEXT[config.strategy].format(k=config.k, n_drop=config.n_drop, threshold=config.threshold)
    lines = ["# Kronos backtest", ""]
    if result.model_name:
        lines.append(f"Model: `{result.model_name}`.")
    dates = result.ic.index
    lines += [
        f"Universe: {len(result.realised.columns)} series; {len(dates)} rebalance dates from {dates[0]} to "
        f"{dates[-1]}, positions valued until {result.equity.index[-1]}; {int(t.get('positions', 0))} "
        f"(date, series) pairs that could trade.",
        f"Strategy: {strategy}. Costs: {config.commission_bps:g} bps commission + {config.slippage_bps:g} bps "
        "slippage on turnover. Trades at the open of the first bar of each date (the bar after the last one the "
        f"forecast saw). History {config.lookback} bars, horizon {config.pred_len}, stride {config.step}, "
        f"{config.sample_count} sample paths, seed {config.seed}; origins in the last {config.tail_fraction:.0%} "
        "of each series.", ""]
    if "seconds_forecasting" in t:
        lines += [f"Time: forecasting {t['seconds_forecasting']:.1f} s, accounting {t['seconds_accounting']:.2f} s, "
                  f"total {t['seconds_total']:.1f} s.", ""]
    lines += [*(f"Note: {n}." for n in result.notes), ""] if result.notes else []
    lines += ["## Metrics", "",
              "`turnover`: mean of sum |target weight - drifted weight| per rebalance (two-way; the first date's "
              "purchase counts). `hit_rate`: share of positions whose return had the position's sign. `ic`, "
              "`rank_ic`: mean over dates of the Pearson and Spearman correlation across series of score and "
              "realised return (dates with at least 3 series). Annualised over calendar time.", "",
              markdown_table(metrics_table(result), "signal"), ""]
    lines += statistics_lines(result)
    if plan is not None and len(dates) <= 60:
        ic = result.rank_ic.copy()
        ic.index = [str(d) for d in ic.index]
        lines += ["## RankIC per date", "", markdown_table(ic, "date"), ""]
    return "\n".join(lines)


def _series_for_chart(result: BacktestResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    return result.equity, result.drawdown


def matplotlib_figure(result: BacktestResult, title: str = "Backtest"):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("the backtest chart needs matplotlib: pip install 'kronos-kline[plot]'") from exc
    equity, dd = _series_for_chart(result)
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1))
    band = result.statistics.get("random_band")
    if band is not None:
        top.fill_between(band.index, band["q5"], band["q95"], color="grey", alpha=0.25, label="random signals 5–95%")
    for name in equity.columns:
        benchmark = name == "buy_and_hold"
        style = {"color": "black", "linewidth": 2.2, "linestyle": "--"} if benchmark else {"linewidth": 1.4}
        top.plot(equity.index, equity[name], label=name, **style)
        bottom.plot(dd.index, dd[name], label=name, **style)
    top.set_ylabel("equity (start 1)")
    top.set_title(title)
    top.legend(fontsize=8, ncol=2)
    top.grid(alpha=0.3)
    bottom.set_ylabel("drawdown")
    bottom.grid(alpha=0.3)
    return fig


def png_bytes(result: BacktestResult, title: str = "Backtest") -> bytes:
    buffer = io.BytesIO()
    matplotlib_figure(result, title).savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def html_bytes(result: BacktestResult, title: str = "Backtest") -> bytes:
    try:
        from plotly.subplots import make_subplots
    except ImportError as exc:
        raise ImportError("the HTML chart needs plotly: pip install 'kronos-kline[plot]'") from exc
    import plotly.graph_objects as go

    equity, dd = _series_for_chart(result)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=(0.68, 0.32), vertical_spacing=0.05)
    for name in equity.columns:
        line = {"color": "black", "dash": "dash", "width": 2.5} if name == "buy_and_hold" else {"width": 1.6}
        fig.add_trace(go.Scatter(x=equity.index, y=equity[name], name=name, legendgroup=name, line=line), 1, 1)
        fig.add_trace(go.Scatter(x=dd.index, y=dd[name], name=name, legendgroup=name, showlegend=False, line=line),
                      2, 1)
    fig.update_yaxes(title_text="equity (start 1)", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    fig.update_layout(title=title, template="plotly_white", height=650)
    return fig.to_html(include_plotlyjs="cdn", full_html=True).encode()


def write_report(result: BacktestResult, out_dir: str | os.PathLike, chart: bool = True) -> list[Path]:
    """The report files in ``out_dir`` (created if missing); the paths written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} is an existing file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, data: bytes) -> None:
        atomic_write_bytes(out / name, data)
        written.append(out / name)

    put("report.md", render_markdown(result).encode())
    data: dict[str, Any] = {
        "config": result.config_dict(), "model": result.model_name, "timing": result.timing, "notes": result.notes,
        "metrics": result.metrics.to_dict(orient="index"),
        "ic": {str(d): row for d, row in result.ic.to_dict(orient="index").items()},
        "rank_ic": {str(d): row for d, row in result.rank_ic.to_dict(orient="index").items()},
        "statistics": statistics_dict(result),
    }
    put("metrics.json", to_json_bytes(data))
    put("equity.csv", result.equity.rename_axis("timestamp").to_csv().encode())
    ic = result.ic.add_prefix("ic_").join(result.rank_ic.add_prefix("rank_ic_"))
    put("ic.csv", ic.rename_axis("timestamp").to_csv().encode())
    if chart:
        title = f"Backtest: {result.config.strategy}, {result.config.cost_bps:g} bps"
        put("chart.png", png_bytes(result, title))
        put("chart.html", html_bytes(result, title))
        if not result.rank_ic.empty:
            put("ic.png", ic_png(result))
    return written
