"""The evaluation's front door: ``evaluate(sources, predictor, ...) -> Evaluation``."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from ..tables import ReadOptions, Series
from .aggregate import POOLED, calibration, crps_by_step, pooled_table, rank_ic, summarise
from .baselines import PATH_BASELINES
from .compare import PAIRED_COLUMNS, VERSUS_COLUMNS, paired_differences, versus
from .walkforward import MODEL, EvaluationConfig, EvaluationRun, load_series, run_walkforward

CRPS_RATIO_GOAL = 0.95
COVERAGE_TARGETS = ((80, 0.75, 0.85), (50, 0.45, 0.55))  # nominal %, lowest and highest pooled coverage met
TARGET_COLUMNS = ["target", "value", "reference", "met"]


@dataclass
class Evaluation:
    """An evaluation's numbers.

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

    @classmethod
    def from_run(cls, run: EvaluationRun) -> Evaluation:
        summary = summarise(run.records)
        paired = paired_differences(run.records, MODEL)
        return cls(run, summary, pooled_table(summary), rank_ic(run.records), calibration(run.records),
                   crps_by_step(run.records), paired, versus(paired))

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
        horizon step, the model against each baseline (pooled and per series), targets, skipped series."""
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
        }

    def write(self, out_dir: str | os.PathLike, plots: bool = True) -> list[Path]:
        """Write the report files (see :func:`kronos.evaluation.report.write_report`)."""
        from .report import write_report

        return write_report(self, out_dir, plots)


def evaluate(sources: Sequence[str | os.PathLike] | Mapping[str, pd.DataFrame] | Sequence[Series],
             predictor: Any | None = None, config: EvaluationConfig | None = None, model_name: str | None = None,
             progress: Callable[[int, int], None] | None = None, read_options: ReadOptions | None = None,
             **settings: Any) -> Evaluation:
    """Walk-forward evaluation of ``predictor`` (a ``KronosPredictor``; None: baselines only) and the baselines.

    Args:
        sources: bar files or folders (any table :mod:`kronos.tables` reads; a long file gives one series per
            symbol), a mapping name -> DataFrame, or :class:`kronos.tables.Series`.
        config: an :class:`EvaluationConfig`; or give its fields as keywords (``lookback=128, pred_len=12``).
        model_name: shown in the report.
        progress: called as ``progress(origins_done, origins_total)`` after each model batch.
        read_options: how files and frames are read (:class:`kronos.tables.ReadOptions`: time_column, sort,
            nan, rename, id_column, adjusted, time_unit).

    Example:
        >>> ev = evaluate(["AAPL.csv", "MSFT.csv"], KronosPredictor.from_pretrained(), pred_len=12)
        >>> ev.metric("crps_rel"), ev.metric("crps_rel", "gaussian_rw")
        >>> ev.write("eval-out")
    """
    known = {f.name for f in fields(EvaluationConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"evaluate() got unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if config is not None and settings:
        raise TypeError("give either config or keyword settings, not both")
    config = config or EvaluationConfig(**settings)
    series = load_series(sources, read_options)
    run = run_walkforward(series, config, predictor, model_name=model_name, progress=progress)
    return Evaluation.from_run(run)


def _paired_dict(paired: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """baseline -> series (``ALL`` pooled) -> the paired numbers."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in paired.to_dict("records"):
        out.setdefault(row.pop("baseline"), {})[row.pop("series")] = row
    return out
