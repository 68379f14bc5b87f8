"""Forecast quality of a predictor under training, on the validation tails of the training series.

The same walk-forward origins and scores as ``kronos evaluate`` (:mod:`kronos.evaluation`): origins whose
horizons lie in the validation part of each series, histories from the bars before them (training bars
included: they are the past), paths from :meth:`KronosPredictor.forecast_batch` with a fixed seed, so two
models are compared on the same origins and the same random draws. Numbers are pooled over origins:
``crps_rel`` (CRPS of the close as a fraction of the last close) and ``coverage_80`` (share of realised
closes inside the central 80 % band).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bars import CLOSE, VOLUME
from ..data.tables import Series
from ..evaluation.metrics import score_origin
from ..evaluation.origins import EvaluationConfig, ModelRunner, in_float64, plan_walk_origins
from ..forecasting.calibration import MAX_ORIGINS

SCORES = ("crps_rel", "coverage_80", "coverage_50")


@dataclass
class ValidationForecasts:
    """Where the forecast quality of a model under training is measured."""

    series: list[Series]  # each series up to the end of its validation part
    config: EvaluationConfig
    origins: list

    @classmethod
    def plan(cls, series: Sequence[Series], val_rows: dict[str, int], lookback: int, horizon: int, samples: int,
             max_origins: int, seed: int) -> ValidationForecasts | None:
        """Origins in the last ``val_rows[name]`` rows of each series (at most ``max_origins`` in all, spread over
        the series); None when no series has room for one horizon there."""
        eligible = [s for s in series if val_rows.get(s.name, 0) >= horizon]
        if not eligible or max_origins < 1:
            return None
        per_series = max(1, max_origins // len(eligible))
        # Histories long enough for the model's lookback and the calibration's past origins.
        history = lookback + horizon + MAX_ORIGINS
        origins, kept = [], []
        config = None
        for s in in_float64(eligible):
            fraction = min(val_rows[s.name] / len(s), 0.999)
            config = EvaluationConfig(lookback=history, pred_len=horizon, sample_count=samples, stride=horizon,
                                      max_origins=per_series, tail_fraction=fraction, min_history=min(lookback, 64),
                                      seed=seed, batch_size=64, dequantise=True)
            found, _ = plan_walk_origins([s], config)
            # plan_walk_origins rounds the tail like split_by_time; keep only horizons inside the validation rows.
            found = [o for o in found if o.index >= len(s) - val_rows[s.name]]
            if found:
                origins += found
                kept.append(s)
        if not origins:
            return None
        return cls(kept, config, origins[:max_origins] if len(origins) > max_origins else origins)

    def score(self, predictor, calibrate: bool) -> dict[str, float]:
        """Pooled scores of ``predictor`` on these origins (``seconds``: time spent; ``per_origin``: the CRPS of
        each origin)."""
        started = time.perf_counter()
        config = EvaluationConfig(**{**self.config.__dict__, "calibrate": calibrate})
        runner = ModelRunner(predictor, config)
        by_name = {s.name: s for s in self.series}
        paths = runner.run(by_name, self.origins)
        rows = []
        for o in self.origins:
            s = by_name[o.series]
            history, future = s.bars[o.start:o.index], s.bars[o.index:o.index + config.pred_len]
            p = paths[o]
            rows.append(score_origin(p[..., CLOSE], p[..., VOLUME], float(history[-1, CLOSE]), future[:, CLOSE],
                                     future[:, VOLUME], float(history[:, VOLUME].mean()), p))
        out: dict = {name: float(np.nanmean([row[name] for row in rows])) for name in SCORES}
        out.update(origins=float(len(self.origins)), seconds=time.perf_counter() - started,
                   per_origin=[float(row["crps_rel"]) for row in rows])
        return out


def paired_change(before: Sequence[float], after: Sequence[float]) -> tuple[float, float]:
    """Relative change of the mean CRPS from ``before`` to ``after`` (per-origin scores of the same origins) and
    its standard error, from the spread of the per-origin differences."""
    a, b = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    scale = a.mean()
    if len(a) < 2 or not scale:
        return float("nan"), float("nan")
    diff = b - a
    return float(diff.mean() / scale), float(diff.std(ddof=1) / np.sqrt(len(diff)) / scale)
