"""The backtest report's statistics sections and the IC-over-time chart (tables of
:mod:`kronos.backtest.statistics`)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from ..evaluation.report import markdown_table

SIGNIFICANCE = 0.05
ROLLING = 20  # dates in the rolling mean of the IC chart


def _significant(table: pd.DataFrame, t: str, p: str) -> list[str]:
    return [str(name) for name, row in table.iterrows() if row[p] < SIGNIFICANCE and row[t] > 0]


def statistics_lines(result: Any) -> list[str]:
    """Markdown of every statistics table, with one plain sentence on what is significant."""
    stats = result.statistics
    if not stats:
        return []
    lines = []
    ic = stats["ic"]
    shown = ic[["ic_mean", "ic_t", "ic_p", "rank_ic_mean", "rank_ic_std", "rank_ic_icir", "rank_ic_t", "rank_ic_p",
                "rank_ic_hit_rate", "rank_ic_dates"]]
    positive = _significant(ic, "rank_ic_t", "rank_ic_p")
    lines += ["## Information coefficients", "",
              "Per date, the correlation across series of score and realised return; `_t` and `_p`: Newey–West "
              "t-statistic and two-sided p-value of the mean over dates; `icir`: mean / std; `hit_rate`: share of "
              "dates with a positive RankIC.", "", markdown_table(shown, "signal"), "",
              f"RankIC significantly above 0 (p < {SIGNIFICANCE}): {', '.join(positive) or 'no signal'}.", ""]
    if "ic_decay" in stats and not stats["ic_decay"].empty:
        decay = stats["ic_decay"].pivot(index="signal", columns="horizon", values="rank_ic")
        decay.columns = [f"h={h}" for h in decay.columns]
        lines += ["## RankIC decay over horizons", "",
                  "Mean RankIC of each signal against the return from the entry open to the close h − 1 bars later.",
                  "", markdown_table(decay, "signal"), ""]
    table = stats["sharpe"]
    wide = table.assign(interval=[f"{lo:.2f} … {hi:.2f}" if np.isfinite(lo) else "–"
                                  for lo, hi in zip(table["sharpe_lo"], table["sharpe_hi"])])
    trials = int(table["trials"].max()) if len(table) else 0
    lines += ["## Sharpe ratios by book and cost", "",
              "Annualised Sharpe with a 95% circular-block-bootstrap interval; `psr`: probabilistic Sharpe ratio "
              "(probability that the true Sharpe is above 0, given length, skewness and kurtosis); `dsr`: deflated "
              f"Sharpe ratio (the same against the best of {trials} skill-less signals, the number of signals "
              "tried); `turnover`: mean two-way per rebalance. `long_short`: top-k long, bottom-k short; "
              "`long_only`: top-k with dropout.", ""]
    for book, group in wide.groupby("book", sort=False):
        frame = group.pivot(index="signal", columns="cost_bps", values="sharpe")
        frame.columns = [f"sharpe {c:g} bps" for c in frame.columns]
        at5 = group[group["cost_bps"] == 5.0].set_index("signal")[["interval", "psr", "dsr", "turnover"]]
        at5.columns = ["95% interval (5 bps)", "psr (5 bps)", "dsr (5 bps)", "turnover"]
        lines += [f"### {book}", "", markdown_table(frame.join(at5), "signal"), ""]
    if "random" in stats:
        random = stats["random"]
        attrs = random.attrs
        lines += ["## Against random signals", "",
                  f"{attrs['seeds']} random signals traded with the same strategy and costs: their Sharpe ratios "
                  f"have 5%, 50% and 95% quantiles {attrs['random_sharpe_q5']:.2f}, {attrs['random_sharpe_q50']:.2f}"
                  f" and {attrs['random_sharpe_q95']:.2f} (the grey band on the chart: 5–95% of their equity). "
                  "`random_p`: share of random signals with a Sharpe at least as high.", "",
                  markdown_table(random, "signal"), ""]
    return lines


def statistics_dict(result: Any) -> dict[str, Any]:
    """The statistics tables as JSON-ready records."""
    out: dict[str, Any] = {}
    for name, table in result.statistics.items():
        if name == "random_band":
            out[name] = {str(k): row for k, row in table.to_dict(orient="index").items()}
        elif name == "random":
            out[name] = {"quantiles": dict(table.attrs), "signals": table.to_dict(orient="index")}
        elif name == "ic":
            out[name] = table.to_dict(orient="index")
        else:
            out[name] = table.to_dict(orient="records")
    return out


def ic_png(result: Any) -> bytes:
    """RankIC over time: the rolling mean over ``ROLLING`` dates of each signal's RankIC."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    rolling = result.rank_ic.rolling(ROLLING, min_periods=max(2, ROLLING // 2)).mean()
    for name in rolling.columns:
        ax.plot(rolling.index, rolling[name], lw=1.2 if name != "random" else 0.9, label=name,
                color="grey" if name == "random" else None)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel(f"RankIC, rolling mean of {ROLLING} dates")
    ax.set_title("Cross-sectional RankIC over time")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
