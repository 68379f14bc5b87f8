"""Scoring the weights being trained: the mean loss over fixed validation windows, and (predictor runs) forecasts
at origins of the validation tails (:mod:`kronos.training.quality`).

Every rank computes the loss over its share of the windows; rank 0 alone forecasts. The numbers are summed over
the ranks, so each rank ends with the same ones.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from . import distributed as dist_utils
from .distributed import DistInfo
from .options import TrainOptions
from .quality import ValidationForecasts
from .tasks import Task
from .windows import WindowSampler

FORECAST_KEYS = ("crps_rel", "coverage_80", "coverage_50", "origins", "seconds")


class Validator:
    """The validation of one run: ``windows`` for the loss, ``forecasts`` (None: no forecast scores)."""

    def __init__(self, opts: TrainOptions, task: Task, info: DistInfo, amp: bool, windows: WindowSampler,
                 forecasts: ValidationForecasts | None):
        self.opts, self.task, self.info, self.amp = opts, task, info, amp
        self.windows, self.forecasts = windows, forecasts

    @torch.no_grad()
    def losses(self, model: nn.Module) -> dict[str, float] | None:
        """The task's metrics averaged over the fixed validation windows (None without any); ``model`` is
        left in training mode."""
        if not self.windows.n_windows:
            return None
        device, batch_size = self.info.device, self.opts.batch_size
        indices = self.windows.fixed_indices(self.opts.val_windows)[self.info.rank::self.info.world_size]
        model.eval()
        sums: dict[str, float] = {}
        count = 0
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
                _, parts = self.task.loss(model, self.windows.batch(chunk), device)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(chunk)
            count += len(chunk)
        model.train()
        keys = sorted(self.task.metric_keys)
        totals = dist_utils.all_reduce_sum([sums.get(k, 0.0) for k in keys] + [float(count)], self.info)
        return {k: v / totals[-1] for k, v in zip(keys, totals[:-1])}

    def predictor(self, model: nn.Module):
        """A :class:`~kronos.forecasting.predictor.KronosPredictor` on a copy of ``model`` with the run's window."""
        from ..forecasting.predictor import KronosPredictor

        opts = self.opts
        # A copy: the predictor puts its network in inference form (eval mode, packed projections), which must
        # not reach the weights being trained (a resumed run must give the same bits as an uninterrupted one).
        return KronosPredictor(copy.deepcopy(model), self.task.tokenizer, device=self.info.device,
                               max_context=opts.lookback + opts.horizon, clip=opts.clip, lookback=opts.lookback)

    def forecast_scores(self, model: nn.Module, calibrate: bool = False) -> dict[str, Any] | None:
        """Forecast scores of ``model`` on the validation tails (computed by rank 0, shared); None without
        forecast origins."""
        if self.forecasts is None:
            return None
        n = len(self.forecasts.origins)
        scores: dict[str, Any] = {**dict.fromkeys(FORECAST_KEYS, 0.0), "per_origin": [0.0] * n}
        if self.info.is_main:
            try:
                scores = self.forecasts.score(self.predictor(model), calibrate)
            finally:
                model.train()
        totals = dist_utils.all_reduce_sum([scores[k] for k in FORECAST_KEYS] + list(scores["per_origin"]), self.info)
        return {**dict(zip(FORECAST_KEYS, totals[:len(FORECAST_KEYS)])), "per_origin": totals[len(FORECAST_KEYS):]}

    def calibrated_scores(self, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Calibrated forecast scores (this rank's own, not shared) of ``model``'s architecture with the weights
        ``state``; ``model`` itself is not changed."""
        other = copy.deepcopy(model)
        other.load_state_dict(state)
        scores = self.forecasts.score(self.predictor(other), calibrate=True)
        model.train()
        return scores
