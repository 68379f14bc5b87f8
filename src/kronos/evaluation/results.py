"""An evaluation's numbers: the tables computed from a walk-forward run, targets, and their dict form."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .aggregate import POOLED, calibration, crps_by_step, pooled_table, rank_ic, summarise
from .baselines import PATH_BASELINES
from .compare import PAIRED_COLUMNS, VERSUS_COLUMNS, paired_differences, versus
from .probability import (
    PROB_COLUMNS,
    PROB_DM_COLUMNS,
    RELIABILITY_COLUMNS,
    probability_table,
    probability_tests,
    reliability,
)
from .volatility import DM_COLUMNS, VOL_COLUMNS, volatility_table, volatility_tests
from .walkforward import MODEL, EvaluationRun

# Chart colour of each method, shared by every evaluation chart.
COLOURS = {"kronos": "tab:blue", "persistence": "tab:gray", "rw_drift": "tab:olive", "gaussian_rw": "tab:orange",
           "bootstrap": "tab:green", "garch_t": "tab:red", "ewma": "tab:brown",
           "har_rv": "tab:pink", "seasonal_naive": "tab:purple"}

CRPS_RATIO_GOAL = 0.95
COVERAGE_TARGETS = ((80, 0.75, 0.85), (50, 0.45, 0.55))  # nominal %, lowest and highest pooled coverage met
TARGET_COLUMNS = ["target", "value", "reference", "met"]


@dataclass
class EvaluationResults:
    """An evaluation's numbers (:class:`kronos.evaluation.Evaluation` adds writing the report).

    ``run.records``: one row per (series, origin, method); ``summary``: per (series, method) and pooled
    (series ``"ALL"``); ``pooled``: pooled metrics × methods; ``rank_ic``: per method; ``calibration``:
    nominal level × methods (pooled coverage); ``crps_steps``: horizon step × methods with paths (pooled
    ``crps_rel`` of each bar); ``paired``: the model against each baseline per series and pooled (see
    :func:`kronos.evaluation.compare.paired_differences`); ``versus``: one row per baseline with the pooled
    paired numbers and the geometric mean of per-series CRPS ratios. ``paired`` and ``versus`` are empty
    without a model.
    """

    run: EvaluationRun
    summary: pd.DataFrame
    pooled: pd.DataFrame
    rank_ic: pd.DataFrame
    calibration: pd.DataFrame
    crps_steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    paired: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAIRED_COLUMNS))
    versus: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=VERSUS_COLUMNS))
    volatility: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=VOL_COLUMNS))
    volatility_tests: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DM_COLUMNS))
    probability: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PROB_COLUMNS))
    probability_tests: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PROB_DM_COLUMNS))
    reliability: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RELIABILITY_COLUMNS))

    @classmethod
    def from_run(cls, run: EvaluationRun) -> EvaluationResults:
        summary = summarise(run.records)
        paired = paired_differences(run.records, MODEL)
        records = run.records
        return cls(run, summary, pooled_table(summary), rank_ic(records), calibration(records),
                   crps_by_step(records), paired, versus(paired), volatility_table(records),
                   volatility_tests(records, MODEL), probability_table(records), probability_tests(records, MODEL),
                   reliability(records))

    def metric(self, name: str, method: str = "kronos", series: str = POOLED) -> float:
        """One number, e.g. ``metric("crps_rel", "gaussian_rw")``; KeyError naming what exists if absent."""
        rows = self.summary[(self.summary["series"] == series) & (self.summary["method"] == method)]
        if rows.empty or name not in rows:
            raise KeyError(f"no {name!r} for method {method!r}, series {series!r}; methods: "
                           f"{sorted(self.summary['method'].unique())}, metrics: {list(self.summary.columns[2:])}")
        return float(rows[name].iloc[0])

    def best_baseline(self) -> str | None:
        """The baseline with sample paths (gaussian_rw, bootstrap, garch_t; those run) with the lowest pooled
        ``crps_rel``; None when none was run."""
        scores = {b: self.metric("crps_rel", b) for b in PATH_BASELINES if b in self.pooled.columns}
        scores = {b: v for b, v in scores.items() if math.isfinite(v)}
        return min(scores, key=scores.get) if scores else None

    def targets(self, method: str = MODEL) -> pd.DataFrame:
        """The model's targets on the pooled numbers: one row per target with the model's value, the
        reference it is held to and whether it is met. Empty when ``method`` was not evaluated.

        CRPS targets are against the best baseline with paths (:meth:`best_baseline`): pooled ``crps_rel``
        at most the baseline's (and the ratio, goal <= 0.95), geometric mean over series of the per-series
        CRPS ratio below 1. Coverage of the central 80% and 50% intervals within ±0.05 of nominal. Pooled
        ``volume_mae_rel`` below persistence's.
        """
        if method not in self.pooled.columns:
            return pd.DataFrame(columns=TARGET_COLUMNS)
        rows = self._crps_targets(method)
        for level, low, high in COVERAGE_TARGETS:
            coverage = self.metric(f"coverage_{level}", method)
            met = low <= coverage <= high
            rows.append((f"coverage_{level} within [{low}, {high}]", coverage, f"{low}–{high}", met))
        volume, volume_ref = self.metric("volume_mae_rel", method), self.metric("volume_mae_rel", "persistence")
        rows.append(("volume_mae_rel below persistence", volume, volume_ref, volume < volume_ref))
        return pd.DataFrame(rows, columns=TARGET_COLUMNS)

    def _crps_targets(self, method: str) -> list[tuple[str, Any, Any, bool]]:
        best = self.best_baseline()
        if best is None:
            return []
        crps, reference = self.metric("crps_rel", method), self.metric("crps_rel", best)
        ratio = crps / reference if reference > 0 else float("nan")
        pairs = paired_differences(self.run.records, method, [best])
        geo = versus(pairs).loc[best, "geo_mean_ratio"] if not pairs.empty else float("nan")
        return [
            (f"crps_rel at most best baseline ({best})", crps, reference, crps <= reference),
            (f"crps_rel ratio to {best} at most {CRPS_RATIO_GOAL}", ratio, CRPS_RATIO_GOAL, ratio <= CRPS_RATIO_GOAL),
            (f"geometric mean of per-series crps ratios to {best} below 1", geo, 1.0, geo < 1),
        ]

    def to_dict(self) -> dict[str, Any]:
        """Every number: settings, timing, notes, pooled and per-series metrics, rank IC, calibration, CRPS by
        horizon step, the model against each baseline (pooled and per series), targets, skipped series,
        the volatility and probability tables with their tests, and the reliability table."""
        per_series: dict[str, dict[str, dict[str, float]]] = {}
        for row in self.summary[self.summary["series"] != POOLED].to_dict("records"):
            per_series.setdefault(row.pop("series"), {})[row.pop("method")] = row
        return {
            "model": self.run.model_name,
            "config": self.run.config_dict(),
            "timing": self.run.timing,
            "notes": self.run.notes,
            "series": self.run.series,
            "skipped": self.run.skipped,
            "pooled": {method: self.pooled[method].to_dict() for method in self.pooled.columns},
            "per_series": per_series,
            "rank_ic": {row.pop("method"): row for row in self.rank_ic.to_dict("records")},
            "targets": self.targets().to_dict("records"),
            "calibration": {method: {f"{level:g}": value for level, value in self.calibration[method].items()}
                            for method in self.calibration.columns},
            "crps_by_step": {method: self.crps_steps[method].tolist() for method in self.crps_steps.columns},
            "versus": {baseline: row for baseline, row in self.versus.to_dict("index").items()},
            "paired": _paired_dict(self.paired),
            "volatility": self.volatility.to_dict("records"),
            "volatility_tests": self.volatility_tests.to_dict("records"),
            "probability": self.probability.to_dict("records"),
            "probability_tests": self.probability_tests.to_dict("records"),
            "reliability": self.reliability.to_dict("records"),
        }


def _paired_dict(paired: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """baseline -> series (``ALL`` pooled) -> the paired numbers."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in paired.to_dict("records"):
        out.setdefault(row.pop("baseline"), {})[row.pop("series")] = row
    return out
