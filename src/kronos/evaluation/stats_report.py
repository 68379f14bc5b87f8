"""The report's sections on volatility forecasts and probabilities, and the reliability diagram."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .results import COLOURS, EvaluationResults

SIGNIFICANCE = 0.05


def _verdict(tests: pd.DataFrame, by: list[str]) -> list[str]:
    """One line per test group: where the model is significantly better / worse (p < 0.05) than a baseline."""
    lines = []
    for keys, group in tests.groupby(by, sort=False):
        better = group[(group["t"] < 0) & (group["p"] < SIGNIFICANCE)]["baseline"].tolist()
        worse = group[(group["t"] > 0) & (group["p"] < SIGNIFICANCE)]["baseline"].tolist()
        label = ", ".join(str(k) for k in (keys if isinstance(keys, tuple) else (keys,)))
        lines.append(f"- {label}: significantly better than {', '.join(better) or 'none'}; significantly worse "
                     f"than {', '.join(worse) or 'none'} (p < {SIGNIFICANCE}, two-sided).")
    return lines


def volatility_lines(evaluation: EvaluationResults, table) -> list[str]:
    """The volatility section (``table`` renders a DataFrame as Markdown)."""
    if evaluation.volatility.empty:
        return []
    lines = ["## Volatility forecasts", "",
             "Forecast: the mean over a method's paths of the sum of squared log returns over the horizon. Realised "
             "proxies of that horizon variance: `rv_close` (squared close-to-close log returns), `rv_parkinson` "
             "(high–low range), `rv_gk` (Garman–Klass). Losses divided by the history's horizon variance so that "
             "they pool: `qlike` = proxy / forecast + ln(forecast / scale), `mse` = ((proxy − forecast) / scale)²; "
             "lower is better. Mincer–Zarnowitz: proxy = α + β · forecast (unbiased: α 0, β 1).", "",
             table(evaluation.volatility.set_index("method"), "method"), ""]
    tests = evaluation.volatility_tests
    if not tests.empty:
        lines += ["Diebold–Mariano tests of the model against each baseline: loss differences (model − baseline) "
                  "averaged over the series of each origin date, Newey–West t; negative `t`: the model's loss is "
                  "lower.", "", table(tests.set_index("baseline"), "baseline"), "",
                  *_verdict(tests, ["proxy", "loss"]), ""]
    return lines


def probability_lines(evaluation: EvaluationResults, table) -> list[str]:
    """The probability section."""
    if evaluation.probability.empty:
        return []
    lines = ["## Probabilities", "",
             "Events at the horizon's last close: `up` (above the last observed close) and `move` (absolute log "
             "return beyond one historical standard deviation of horizon returns). Probability = share of a "
             "method's paths; `brier` = mean (p − outcome)²; `log_score` = mean negative log likelihood of "
             "(k + 0.5) / (S + 1); lower is better. `base_rate`: how often the event happened.", "",
             table(evaluation.probability.set_index("method"), "method"), ""]
    tests = evaluation.probability_tests
    if not tests.empty:
        lines += ["Diebold–Mariano tests of the model's scores against each baseline's (per-date mean differences, "
                  "Newey–West t; negative: the model is better).", "",
                  table(tests.set_index("baseline"), "baseline"), "", *_verdict(tests, ["event", "score"]), ""]
    if not evaluation.reliability.empty:
        lines += ["Reliability (`reliability.png`): observed frequency against mean forecast probability in ten "
                  "bins per method and event; a reliable forecast lies on the diagonal.", ""]
    return lines


def reliability_figure(evaluation: EvaluationResults, plt: Any) -> Any:
    """Reliability diagram, one panel per event, one line per method (marker size: forecasts in the bin)."""
    table = evaluation.reliability
    events = list(dict.fromkeys(table["event"]))
    figure, axes = plt.subplots(1, len(events), figsize=(4.6 * len(events), 4.4), squeeze=False)
    for ax, event in zip(axes[0], events):
        rows = table[table["event"] == event]
        ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--", label="ideal")
        for method, group in rows.groupby("method", sort=False):
            sizes = 8 + 60 * group["count"] / max(group["count"].max(), 1)
            ax.plot(group["mean_prob"], group["frequency"], color=COLOURS.get(method), lw=1, label=method)
            ax.scatter(group["mean_prob"], group["frequency"], s=sizes, color=COLOURS.get(method))
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="forecast probability", ylabel="observed frequency",
               title=f"Reliability: {event}")
        ax.legend(fontsize=7)
    figure.tight_layout()
    return figure
