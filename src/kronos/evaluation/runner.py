"""The evaluation's front door: ``evaluate(sources, predictor, ...) -> Evaluation``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from .aggregate import POOLED, calibration, pooled_table, rank_ic, summarise
from .walkforward import EvaluationConfig, EvaluationRun, load_series, run_walkforward


@dataclass
class Evaluation:
    """An evaluation's numbers.

    ``run.records``: one row per (series, origin, method); ``summary``: per (series, method) and pooled
    (series ``"ALL"``); ``pooled``: pooled metrics × methods; ``rank_ic``: per method; ``calibration``:
    nominal level × methods (pooled coverage).
    """

    run: EvaluationRun
    summary: pd.DataFrame
    pooled: pd.DataFrame
    rank_ic: pd.DataFrame
    calibration: pd.DataFrame

    @classmethod
    def from_run(cls, run: EvaluationRun) -> Evaluation:
        summary = summarise(run.records)
        return cls(run, summary, pooled_table(summary), rank_ic(run.records), calibration(run.records))

    def metric(self, name: str, method: str = "kronos", series: str = POOLED) -> float:
        """One number, e.g. ``metric("crps_rel", "gaussian_rw")``; KeyError naming what exists if absent."""
        rows = self.summary[(self.summary["series"] == series) & (self.summary["method"] == method)]
        if rows.empty or name not in rows:
            raise KeyError(f"no {name!r} for method {method!r}, series {series!r}; methods: "
                           f"{sorted(self.summary['method'].unique())}, metrics: {list(self.summary.columns[2:])}")
        return float(rows[name].iloc[0])

    def targets(self, method: str = "kronos") -> pd.DataFrame:
        """The default model's targets (issue 5) on the pooled numbers: one row per target with the model's
        value, the reference it is held to and whether it is met. Empty when ``method`` was not evaluated."""
        if method not in self.pooled.columns:
            return pd.DataFrame(columns=["target", "value", "reference", "met"])
        crps, crps_ref = self.metric("crps_rel", method), self.metric("crps_rel", "gaussian_rw")
        coverage = self.metric("coverage_80", method)
        volume, volume_ref = self.metric("volume_mae_rel", method), self.metric("volume_mae_rel", "persistence")
        rows = [
            ("crps_rel below gaussian_rw", crps, crps_ref, crps < crps_ref),
            ("coverage_80 within [0.75, 0.85]", coverage, "0.75–0.85", 0.75 <= coverage <= 0.85),
            ("volume_mae_rel below persistence", volume, volume_ref, volume < volume_ref),
        ]
        return pd.DataFrame(rows, columns=["target", "value", "reference", "met"])

    def to_dict(self) -> dict[str, Any]:
        """Every number: settings, timing, pooled and per-series metrics, rank IC, calibration, skipped series."""
        per_series: dict[str, dict[str, dict[str, float]]] = {}
        for row in self.summary[self.summary["series"] != POOLED].to_dict("records"):
            per_series.setdefault(row.pop("series"), {})[row.pop("method")] = row
        return {
            "model": self.run.model_name,
            "config": self.run.config_dict(),
            "timing": self.run.timing,
            "series": self.run.series,
            "skipped": self.run.skipped,
            "pooled": {method: self.pooled[method].to_dict() for method in self.pooled.columns},
            "per_series": per_series,
            "rank_ic": {row.pop("method"): row for row in self.rank_ic.to_dict("records")},
            "targets": self.targets().to_dict("records"),
            "calibration": {method: {f"{level:g}": value for level, value in self.calibration[method].items()}
                            for method in self.calibration.columns},
        }

    def write(self, out_dir: str | os.PathLike, plots: bool = True) -> list[Path]:
        """Write the report files (see :func:`kronos.evaluation.report.write_report`)."""
        from .report import write_report

        return write_report(self, out_dir, plots)


def evaluate(sources: Sequence[str | os.PathLike] | Mapping[str, pd.DataFrame], predictor: Any | None = None,
             config: EvaluationConfig | None = None, model_name: str | None = None,
             progress: Callable[[int, int], None] | None = None, **settings: Any) -> Evaluation:
    """Walk-forward evaluation of ``predictor`` (a ``KronosPredictor``; None: baselines only) and the baselines.

    Args:
        sources: bar files (CSV/Parquet with a ``timestamps`` column) or a mapping name -> DataFrame.
        config: an :class:`EvaluationConfig`; or give its fields as keywords (``lookback=128, pred_len=12``).
        model_name: shown in the report.
        progress: called as ``progress(origins_done, origins_total)`` after each model batch.

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
    run = run_walkforward(load_series(sources), config, predictor, model_name=model_name, progress=progress)
    return Evaluation.from_run(run)
