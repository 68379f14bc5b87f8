"""Write an evaluation to a folder: Markdown and CSV tables, a JSON of every number, PNG plots.

Every file is written atomically (temporary file + rename), so a crash never leaves a half-written one.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import atomic_write_bytes
from .aggregate import METRICS, POOLED, ordered_methods
from .metrics import expected_sample_coverage
from .results import COLOURS, EvaluationResults
from .stats_report import probability_lines, reliability_figure, volatility_lines

SERIES_COLUMNS = ("n_origins", "close_mae_rel", "logret_mae", "direction_acc", "crps_rel", "pinball_rel",
                  "coverage_50", "coverage_80", "vol_mae", "volume_mae_rel")
BAR_METRICS = ("crps_rel", "logret_mae", "volume_mae_rel")


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer() and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def markdown_table(frame: pd.DataFrame, index_name: str | None = None) -> str:
    """A GitHub Markdown table of ``frame`` (with its index as the first column when ``index_name``)."""
    columns = ([index_name] if index_name else []) + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for label, row in frame.iterrows():
        cells = ([str(label)] if index_name else []) + [_number(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> null, numpy scalars -> Python, timestamps -> ISO strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def to_json_bytes(data: dict[str, Any]) -> bytes:
    """``data`` as indented JSON (NaN/inf as null, numpy scalars as numbers, timestamps as ISO text), newline-ended."""
    return (json.dumps(_clean(data), indent=2, allow_nan=False) + "\n").encode()


def notes_lines(evaluation: EvaluationResults) -> list[str]:
    """One line per method not run, and the GARCH fallback count with the baselines' time."""
    timing = evaluation.run.timing
    lines = [f"`{method}` {why}." for method, why in evaluation.run.notes.items()]
    if "garch_t_fallbacks" in timing:
        lines.append(f"`garch_t`: fitted in {timing.get('seconds_garch_t', 0.0):.1f} s; "
                     f"{int(timing['garch_t_fallbacks'])} of {int(timing['origins'])} origins fell back to the "
                     "Gaussian random walk (fit failed or gave invalid parameters).")
    return lines


def versus_frame(evaluation: EvaluationResults) -> pd.DataFrame:
    """The model against each baseline (rows), pooled: CRPS of both, ratio, mean paired difference ± 2 SE,
    geometric mean of per-series ratios, series where the model wins."""
    table = evaluation.versus.copy()
    if table.empty:
        return table
    table["series_better"] = [f"{int(b)}/{int(n)}" for b, n in zip(table["series_better"], table["n_series"])]
    return table.drop(columns="n_series").rename(columns={"model": "crps_rel model", "reference": "crps_rel baseline"})


def paired_series_frame(evaluation: EvaluationResults) -> pd.DataFrame:
    """Per series (rows, pooled last) and baseline: CRPS ratio and mean paired difference ± 2 SE."""
    paired = evaluation.paired
    if paired.empty:
        return pd.DataFrame()
    cells = paired.assign(diff=[f"{_number(d)} ± {_number(e)}" for d, e in zip(paired["mean_diff"], paired["two_se"])])
    ratio = cells.pivot(index="series", columns="baseline", values="ratio").add_prefix("ratio ")
    diff = cells.pivot(index="series", columns="baseline", values="diff").add_prefix("diff ")
    order = list(dict.fromkeys(paired["series"]))
    baselines = list(dict.fromkeys(paired["baseline"]))
    columns = [f"{kind} {b}" for b in baselines for kind in ("ratio", "diff")]
    return pd.concat([ratio, diff], axis=1).reindex(index=order, columns=columns)



def _where(config) -> str:
    if getattr(config, "start", None) is not None:
        return f"from {config.start} on"
    if config.tail_fraction >= 1:
        return "anywhere in each series (from the first origin with enough history)"
    return f"inside the last {config.tail_fraction:.0%} of each series"

def render_markdown(evaluation: EvaluationResults) -> str:
    """The Markdown report: settings, pooled table (methods side by side), rank IC, calibration, per series."""
    run, config = evaluation.run, evaluation.run.config
    lines = ["# Kronos walk-forward evaluation", ""]
    if run.model_name:
        lines.append(f"Model: `{run.model_name}`.")
    lines += [
        f"Series: {len(run.series) - len(run.skipped)} of {len(run.series)}; origins: {int(run.timing['origins'])}; "
        f"history {config.lookback} bars, horizon {config.pred_len} bars, {config.sample_count} sample paths, "
        f"stride {config.step} bars, at most {config.max_origins or 'all'} origins per series, "
        f"horizons {_where(config)}, seed {config.seed}.", ""]
    if "origins_per_second" in run.timing:
        lines += [f"Model time {run.timing['seconds_model']:.1f} s ({run.timing['origins_per_second']:.2f} origins/s)."
                  f" Total {run.timing['seconds_total']:.1f} s.", ""]
    notes = notes_lines(evaluation)
    if notes:
        lines += [*notes, ""]
    lines += ["## Pooled over all series", "",
              "Point forecast = mean of the sample paths. `_rel` = fraction of the last observed close at the origin "
              "(volume: of the mean history volume). Every origin weighs the same. Lower is better except "
              "`direction_acc` (higher) and `coverage_*` (closest to the nominal level).", ""]
    pooled = evaluation.pooled.copy()
    pooled.insert(len(pooled.columns), "unit", [METRICS[m][2] if m in METRICS else "count" for m in pooled.index])
    lines += [markdown_table(pooled, "metric"), ""]
    targets = evaluation.targets()
    if not targets.empty:
        shown = targets.assign(met=targets["met"].map({True: "yes", False: "**no**"})).set_index("target")
        lines += ["## Targets (pooled)", "", markdown_table(shown, "target"), ""]
    if not evaluation.versus.empty:
        lines += ["## The model against each baseline (CRPS of the close)", "",
                  "Paired over the same origins: `mean_diff` = mean of model − baseline `crps_rel` per origin "
                  "(negative: the model is better), `two_se` = 2 standard errors of that mean; `ratio` = pooled "
                  "model / baseline; `geo_mean_ratio` = geometric mean over series of the per-series ratio (every "
                  "series weighs the same, however volatile); `series_better` = series with a ratio below 1.", "",
                  markdown_table(versus_frame(evaluation), "baseline"), ""]
    if not evaluation.crps_steps.empty:
        lines += ["## CRPS by horizon step (pooled `crps_rel`)", "",
                  markdown_table(evaluation.crps_steps, "step"), ""]
    lines += ["## Cross-sectional rank IC", "",
              "Spearman correlation of forecast and realised horizon log returns across the series that share an "
              "origin timestamp, where at least 5 do: mean, standard deviation, `icir` (mean / std), Newey–West "
              "`nw_t` and two-sided `p` of the mean, `hit_rate` (share of positive ICs).", ""]
    if evaluation.rank_ic["timestamps"].sum() == 0:
        lines += ["No origin timestamp is shared by 5 or more series: rank IC not available.", ""]
    else:
        lines += [markdown_table(evaluation.rank_ic.set_index("method"), "method"), ""]
    lines += volatility_lines(evaluation, markdown_table) + probability_lines(evaluation, markdown_table)
    if not evaluation.calibration.empty:
        paths = config.sample_count
        lines += ["## Calibration (pooled coverage of central intervals)", "",
                  markdown_table(evaluation.calibration, "nominal"), ""]
        if paths >= 2:
            low80, low50 = expected_sample_coverage(0.8, paths), expected_sample_coverage(0.5, paths)
            lines += [f"Every method here is scored from {paths} sample paths per origin. From {paths} paths even a "
                      f"perfectly calibrated forecast's intervals cover about {low80:.1%} (80%) and {low50:.1%} "
                      f"(50%) on average, nominal × ({paths} − 1) / ({paths} + 1); more paths (`--samples`) bring "
                      "that closer to nominal.", ""]
    if "kronos" in evaluation.pooled.columns:
        breaks = evaluation.pooled.loc[["ohlc_break", "ohlc_break_mean"], "kronos"].tolist()
        lines += ["## Candle consistency of the model's bars", "",
                  f"{_number(breaks[0])} of sample-path bars (and {_number(breaks[1])} of mean-forecast bars) break "
                  "high >= max(open, close) or low <= min(open, close). `forecast()` repairs every bar as its last "
                  "step (`kronos.data.candles.valid_candles`), so a predictor that uses it scores 0 here.", ""]
    per_series = evaluation.summary[evaluation.summary["series"] != POOLED]
    table = per_series[["series", "method", *SERIES_COLUMNS]].reset_index(drop=True)
    lines += ["## Per series", "", markdown_table(table), ""]
    paired_table = paired_series_frame(evaluation)
    if not paired_table.empty:
        lines += ["## Paired CRPS per series (model against each baseline)", "",
                  "`ratio` = model / baseline mean `crps_rel`; `diff` = mean per-origin difference ± 2 SE.", "",
                  markdown_table(paired_table, "series"), ""]
    if run.skipped:
        lines += ["## Skipped series", ""] + [f"- `{name}`: {why}" for name, why in run.skipped.items()] + [""]
    return "\n".join(lines)


def _figure_bytes(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'kronos-kline[plot]' (or pass plots=False)") from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def fan_chart_png(evaluation: EvaluationResults) -> bytes:
    """Forecast fans (10–90% and 25–75% bands, median) for a few origins, with the realised closes."""
    plt = _pyplot()
    fans = evaluation.run.fans
    figure, axes = plt.subplots(len(fans), 1, figsize=(9, 2.8 * len(fans)), squeeze=False)
    for ax, fan in zip(axes[:, 0], fans):
        past = np.arange(-len(fan.history_close), 0)
        future = np.arange(len(fan.realised_close))
        ax.plot(past, fan.history_close, color="black", lw=1, label="history")
        ax.plot(future, fan.realised_close, color="black", lw=1, ls="--", label="realised")
        for method, levels in fan.quantiles.items():
            colour = COLOURS.get(method, None)
            if method == "kronos":
                ax.fill_between(future, levels["0.1"], levels["0.9"], color=colour, alpha=0.2, label="kronos 10–90%")
                ax.fill_between(future, levels["0.25"], levels["0.75"], color=colour, alpha=0.35)
                ax.plot(future, levels["0.5"], color=colour, lw=1.2, label="kronos median")
            else:
                ax.plot(future, levels["0.1"], color=colour, lw=0.9, ls=":", label=f"{method} 10–90%")
                ax.plot(future, levels["0.9"], color=colour, lw=0.9, ls=":")
        ax.set_title(f"{fan.series}: origin {fan.future_ts[0]}", fontsize=9)
        ax.set_xlabel("bars from origin")
        ax.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return _figure_bytes(figure)


def calibration_png(evaluation: EvaluationResults) -> bytes:
    """Empirical vs nominal coverage of the central intervals, one line per method with sample paths."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--", label="ideal")
    table = evaluation.calibration
    for method in table.columns:
        ax.plot(table.index, table[method], marker="o", color=COLOURS.get(method), label=method)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal central-interval level", ylabel="empirical coverage",
           title="Calibration of close forecasts (pooled)")
    ax.legend(fontsize=8)
    return _figure_bytes(figure)


def metric_bars_png(evaluation: EvaluationResults) -> bytes:
    """Horizontal bars per series for a few scale-free metrics, methods side by side."""
    plt = _pyplot()
    summary = evaluation.summary
    series = list(dict.fromkeys(summary["series"]))
    methods = ordered_methods(summary["method"])
    figure, axes = plt.subplots(1, len(BAR_METRICS), figsize=(5 * len(BAR_METRICS), 0.45 * len(series) * 1.4 + 1.5),
                                squeeze=False)
    height = 0.8 / len(methods)
    for ax, metric in zip(axes[0], BAR_METRICS):
        for j, method in enumerate(methods):
            rows = summary[summary["method"] == method].set_index("series")[metric].reindex(series)
            ax.barh(np.arange(len(series)) + j * height, rows.to_numpy(dtype=float), height=height,
                    color=COLOURS.get(method), label=method)
        ax.set_yticks(np.arange(len(series)) + 0.4 - height / 2, series, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=9)
    axes[0, 0].legend(fontsize=7)
    figure.tight_layout()
    return _figure_bytes(figure)


def write_report(evaluation: EvaluationResults, out_dir: str | Path, plots: bool = True) -> list[Path]:
    """Write summary.md, summary.csv, records.csv, metrics.json and (with ``plots``) fan_charts.png,
    calibration.png, metrics_by_series.png, reliability.png into ``out_dir`` (created if missing). Returns the paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output folder {out} is an existing file")
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "summary.md": render_markdown(evaluation).encode(),
        "summary.csv": evaluation.summary.to_csv(index=False).encode(),
        "records.csv": evaluation.run.records.to_csv(index=False).encode(),
        "metrics.json": to_json_bytes(evaluation.to_dict()),
    }
    if plots:
        files["calibration.png"] = calibration_png(evaluation)
        files["metrics_by_series.png"] = metric_bars_png(evaluation)
        if evaluation.run.fans:
            files["fan_charts.png"] = fan_chart_png(evaluation)
        if not evaluation.reliability.empty:
            files["reliability.png"] = _figure_bytes(reliability_figure(evaluation, _pyplot()))
    written = []
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
        written.append(out / name)
    return written
