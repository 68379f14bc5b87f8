"""The evaluation's front door: ``evaluate(sources, predictor, ...) -> Evaluation``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from ..data.tables import ReadOptions, Series
from .origins import Engine, EvaluationConfig
from .report import write_report
from .results import EvaluationResults
from .walkforward import collect_series, run_walkforward


@dataclass
class Evaluation(EvaluationResults):
    """An evaluation's numbers (see :class:`~kronos.evaluation.results.EvaluationResults`) and its report."""

    def write(self, out_dir: str | os.PathLike, plots: bool = True) -> list[Path]:
        """Write the report files (see :func:`kronos.evaluation.report.write_report`)."""
        return write_report(self, out_dir, plots)


def evaluate(sources: Sequence[str | os.PathLike] | Mapping[str, pd.DataFrame] | Sequence[Series],
             predictor: Any | None = None, config: EvaluationConfig | None = None, model_name: str | None = None,
             progress: Callable[[int, int], None] | None = None, read_options: ReadOptions | None = None,
             engine: Engine | None = None, **settings: Any) -> Evaluation:
    """Walk-forward evaluation of ``predictor`` (a ``KronosPredictor``; None: baselines only) and the baselines.

    Args:
        sources: bar files or folders (any table :mod:`kronos.data.tables` reads; a long file gives one series per
            symbol), a mapping name -> DataFrame, or :class:`kronos.data.tables.Series`.
        config: an :class:`EvaluationConfig`; or give its fields as keywords (``lookback=128, pred_len=12``).
        model_name: shown in the report.
        progress: called as ``progress(origins_done, origins_total)`` after each model batch.
        read_options: how files and frames are read (:class:`kronos.data.tables.ReadOptions`: time_column, sort,
            nan, rename, id_column, adjusted, time_unit).
        engine: where the model's batches run (:class:`kronos.evaluation.origins.Engine`: this process
            by default, or a Ray actor pool), with the same results on each.

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
    series = collect_series(sources, read_options)
    run = run_walkforward(series, config, predictor, model_name=model_name, progress=progress, engine=engine)
    return Evaluation.from_run(run)
