"""Training loops for the tokenizer and the predictor, with checkpoints, resume and a metrics log.

One loop serves both networks; a :class:`~kronos.training.tasks.Task` says how to build the model and compute its loss.
Defaults follow the original's fine-tuning recipe: AdamW (betas 0.9/0.95, weight decay 0.1), a
one-cycle schedule (3 % warm-up from lr/10), gradient-norm clipping (2.0 tokenizer, 3.0 predictor),
batches of 50, learning rate 2e-4 (tokenizer) or 4e-5 (predictor). Windows are the starting model's
lookback + horizon when ``init`` records them (``predictor.json``), else 90 + 10 bars. With ``max_minutes``
the schedule is fitted to the steps the budget allows, measured over the first steps.

The starting weights are validated before the first step; a predictor run also scores forecasts on the
validation tails (CRPS, 80 % coverage; :mod:`kronos.training.quality`), and ``select_by`` says whether
``best/`` is chosen by that CRPS or by the validation loss. ``report.json`` compares the start with
``best/``, plainly saying when training did not beat the starting weights.

Files under ``out`` (written by rank 0 only):
``best/`` and ``final/`` (``from_pretrained`` folders; a predictor's ``predictor.json`` records its tokenizer,
window and normalisation), ``report.json``, ``checkpoint.pt (model, optimizer, scheduler,
RNG states, step; atomic), ``metrics.jsonl``, ``options.json`` and ``splits.json``.

The parts: :mod:`~kronos.training.options` (what a run is asked), :mod:`~kronos.training.tasks` (the networks'
losses), :mod:`~kronos.training.validation` (scoring the weights), :mod:`~kronos.training.selection` (which
weights ``best/`` holds, the report) and :mod:`~kronos.training.files` (the run folder); this module is the loop.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import kill_points
from ..io import atomic_write_bytes, remove_stale_temp_files
from ..model.checkpoint import write_predictor_info
from ..model.default_model import describe_source
from . import distributed as dist_utils
from .distributed import DistInfo
from .files import CHECKPOINT_NAME, METRICS_NAME, REPORT_NAME, MetricsLog, save_model_dir, write_json
from .options import RESUME_FIXED, TrainOptions
from .quality import ValidationForecasts
from .selection import Selection, describe, report_lines
from .splits import describe_splits, load_training_series, split_by_time
from .tasks import TASKS
from .validation import Validator
from .windows import Batch, WindowSampler

log = logging.getLogger("kronos.training")

PROBE_STEPS = 5  # max_minutes: steps timed before the schedule is fitted to the budget


# -- what a run reads ------------------------------------------------------------------------------

@dataclass
class RunData:
    """The windows a run trains and validates on, its forecast origins on the validation tails (predictor runs;
    None without any) and what ``best/`` is chosen by (``crps`` falls back to ``loss`` without forecasts)."""

    train: WindowSampler
    val: WindowSampler
    forecasts: ValidationForecasts | None
    select_by: str
    record: dict[str, Any]  # splits.json


def load_run_data(opts: TrainOptions) -> RunData:
    """Read ``opts.data``, split each series by time and plan the windows and forecast origins."""
    window = opts.lookback + opts.horizon
    series = load_training_series(opts.data, window, opts.read_options)
    splits = split_by_time(series, opts.val_fraction, opts.test_fraction)
    train = WindowSampler(splits.train, opts.lookback, opts.horizon, opts.clip, opts.seed)
    val = WindowSampler(splits.val, opts.lookback, opts.horizon, opts.clip, opts.seed)
    if not train.n_windows:
        raise ValueError(f"data=: no training segment has a window of {window} bars; lower lookback=/horizon= "
                         "or val_fraction=/test_fraction=")
    short = [s.name for s in splits.train if len(s) < window]
    if short:
        log.warning("%d series have a training segment shorter than %d bars and give no training windows: %s",
                    len(short), window, ", ".join(short))
    if opts.val_fraction and not val.n_windows:
        log.warning("no validation segment has a window of %d bars; validation is skipped", window)
    forecasts, select_by = _plan_forecasts(opts, series, splits)
    record = {"series": describe_splits(splits, series), "train_windows": train.n_windows,
              "val_windows": val.n_windows}
    log.info("%d series; %d training and %d validation windows of %d bars", len(series), train.n_windows,
             val.n_windows, window)
    return RunData(train, val, forecasts, select_by, record)


def _plan_forecasts(opts: TrainOptions, series, splits) -> tuple[ValidationForecasts | None, str]:
    """Forecast origins on the validation tails (predictor runs) and what best/ is chosen by."""
    if opts.kind != "predictor" or not opts.val_forecast_origins or not opts.val_fraction:
        return None, opts.select_by
    cut = [item.slice(0, sum(splits.bounds[item.name][:2])) for item in series]
    val_rows = {name: bounds[1] for name, bounds in splits.bounds.items()}
    forecasts = ValidationForecasts.plan(cut, val_rows, opts.lookback, opts.horizon, opts.val_forecast_samples,
                                         opts.val_forecast_origins, opts.seed)
    if forecasts is None:
        log.warning("no validation part holds a forecast of %d bars; forecasts are not scored%s", opts.horizon,
                    " and best/ is chosen by the validation loss" if opts.select_by == "crps" else "")
        return None, "loss"
    log.info("forecasts scored at %d origins of the validation tails (%d bars ahead, %d paths)",
             len(forecasts.origins), opts.horizon, opts.val_forecast_samples)
    return forecasts, opts.select_by


def steps_within(seconds: float, per_step: float, eval_every: int, eval_seconds: float) -> int:
    """Training steps (at least 1) that fit in ``seconds`` at ``per_step`` seconds each with a validation of
    ``eval_seconds`` every ``eval_every`` steps, keeping 5% in hand."""
    steps = max(seconds, 0.0) / per_step
    steps -= (steps / eval_every) * eval_seconds / per_step  # the validations along the way
    return max(1, int(steps * 0.95))


# -- checkpoints -----------------------------------------------------------------------------------

def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's random number generator states (CPU, and the device's on CUDA)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def read_checkpoint(path: Path, opts: TrainOptions, world_size: int) -> dict[str, Any]:
    """Load ``checkpoint.pt`` and check that it fits this run (options, number of processes)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = state["options"]
    changed = [k for k in RESUME_FIXED if saved.get(k) != getattr(opts, k)]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(opts, k)!r}" for k in changed)
        raise ValueError(f"resume=True: options differ from the checkpoint's ({details})")
    if state["world_size"] != world_size:
        raise ValueError(f"resume=True: the checkpoint was written by {state['world_size']} process(es), "
                         f"this run has {world_size}")
    return state


# -- the loop ------------------------------------------------------------------------------------

@dataclass
class RunResult:
    step: int
    best_value: float
    out: Path
    last_val: dict[str, float] | None = None
    stopped_early: bool = False
    report: dict[str, Any] | None = None  # start against best/ (see report_lines); also in report.json


class Trainer:
    """Runs one training job described by :class:`TrainOptions` (plain or under torchrun).

    ``clock`` (seconds, monotonic) times the run for ``max_minutes`` and the logged throughput; a test may
    replace it with a clock of its own to check the budget logic without depending on the machine's speed.
    """

    clock = staticmethod(time.monotonic)

    def __init__(self, opts: TrainOptions, info: DistInfo | None = None):
        self.opts = opts
        self.info = info or dist_utils.setup(opts.device)
        self.device = self.info.device
        self.out = Path(opts.out).expanduser()
        self.task = TASKS[opts.kind]()
        if opts.precision == "bf16" and self.device.type != "cuda":
            raise ValueError("precision='bf16' needs a CUDA device; use 'fp32' on CPU")
        self.amp = self.device.type == "cuda" and opts.precision in ("auto", "bf16")
        self.metrics = MetricsLog(self.out / METRICS_NAME, self.info.is_main)

    # setup
    def _check_out(self) -> None:
        checkpoint = self.out / CHECKPOINT_NAME
        if self.opts.resume and not checkpoint.is_file():
            raise FileNotFoundError(f"resume=True: no {CHECKPOINT_NAME} in {self.out}")
        if not self.opts.resume and checkpoint.is_file():
            raise ValueError(f"out={str(self.out)!r} already holds a training run ({CHECKPOINT_NAME}); pass "
                             "resume=True to continue it or choose another folder")
        if self.opts.resume:
            self._resume_state = read_checkpoint(checkpoint, self.opts, self.info.world_size)

    def _load_data(self) -> None:
        data = load_run_data(self.opts)
        self.train_windows, self.val_windows, self.forecasts = data.train, data.val, data.forecasts
        self.splits_record = data.record
        self.selection = Selection(data.select_by, self.task.best_metric, self.forecasts is not None)
        self.validator = Validator(self.opts, self.task, self.info, self.amp, self.val_windows, self.forecasts)

    def _make_scheduler(self, total: int) -> None:
        """A one-cycle schedule over ``total`` steps, advanced to the current step."""
        opts = self.opts
        with warnings.catch_warnings():  # stepping a new schedule to the current step, before optimizer.step
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=opts.lr, total_steps=total, pct_start=opts.pct_start,
                div_factor=opts.div_factor)
            for _ in range(getattr(self, "step", 0)):
                self.scheduler.step()

    def _build(self) -> None:
        opts = self.opts
        torch.manual_seed(opts.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.model = self.task.build(opts, self.device)
        self.model.train()
        if self.info.enabled:
            ids = [self.info.local_rank] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)
        else:
            self.wrapped = self.model
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=opts.lr, betas=(opts.adam_beta1, opts.adam_beta2),
                                           weight_decay=opts.weight_decay)
        self.step = 0
        self._make_scheduler(opts.total_steps)
        # Dropout draws differ per rank but are reproducible.
        torch.manual_seed(opts.seed * 1000 + 17 * (self.info.rank + 1))

    # checkpoints
    def save_checkpoint(self) -> None:
        rng = dist_utils.gather_objects(rng_state(self.device), self.info)
        if not self.info.is_main:
            return
        state = {"format": 1, "step": self.step, "world_size": self.info.world_size, **self.selection.state(),
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "rng": rng, "options": self.opts.to_dict()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.out / CHECKPOINT_NAME, buffer.getvalue())
        kill_points.reached("checkpoint")

    def load_checkpoint(self) -> None:
        path = self.out / CHECKPOINT_NAME
        state = self._resume_state
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.selection.load(state)
        set_rng_state(state["rng"][self.info.rank], self.device)
        self._resume_state = None
        self.metrics.truncate_after(self.step)
        log.info("resumed from %s at step %d", path, self.step)

    # validation
    def validate(self) -> dict[str, float] | None:
        """Validation loss and (predictor runs) forecast scores; records them, keeps ``best/`` up to date."""
        val = self.validator.losses(self.model)
        forecast = self.validator.forecast_scores(self.model) if val is not None else None
        self._after_eval(val, forecast)
        return val

    def _after_eval(self, val: dict[str, float] | None, forecast: dict[str, float] | None = None) -> None:
        if val is None:
            return
        scores, value = self.selection.record(self.step, val, forecast)
        self.metrics.write({"split": "val", "step": self.step, "epoch": self.step / self.opts.steps_per_epoch,
                            **{k: round(v, 6) for k, v in val.items()},
                            **{f"forecast_{k}": round(v, 6) for k, v in scores.items() if not k.startswith("crps_ch")}})
        if self.step > 0 and self.info.is_main and self.forecasts is not None and self.opts.val_forecast_calibrated \
                and self.selection.beats_trained(value):  # kept for the calibrated scores of the report
            self.best_trained_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if self.selection.improve(value, self.step) and self.info.is_main:
            self._save(self.out / "best")

    # the report
    def _report(self) -> dict[str, Any] | None:
        """Start against best/ and the best trained checkpoint (rank 0 only; None without validation)."""
        state = getattr(self, "best_trained_state", None)
        score = functools.partial(self.validator.calibrated_scores, self.model, state) if state is not None else None
        origins = len(self.forecasts.origins) if self.forecasts is not None else 0
        return self.selection.report(self.step, origins, self.opts.horizon, self.opts.val_forecast_samples, score)

    def _save(self, directory: Path) -> None:
        """A ``from_pretrained`` folder; a predictor's also records its lookback (``predictor.json``)."""
        extra = None
        if self.opts.kind == "predictor":
            extra = functools.partial(write_predictor_info, lookback=self.opts.lookback,
                                      max_context=self.opts.lookback + self.opts.horizon, horizon=self.opts.horizon,
                                      tokenizer=describe_source(self.opts.tokenizer, "tokenizer"), clip=self.opts.clip)
        save_model_dir(self.model, directory, extra)

    # training
    def _step_batches(self, epoch_cache: dict[int, Any]) -> list[Batch]:
        opts = self.opts
        epoch, position = divmod(self.step, opts.steps_per_epoch)
        if epoch not in epoch_cache:
            epoch_cache.clear()
            epoch_cache[epoch] = self.train_windows.epoch_indices(epoch, self.info.rank,
                                                                  opts.steps_per_epoch * opts.windows_per_step)
        chosen = epoch_cache[epoch][position * opts.windows_per_step:(position + 1) * opts.windows_per_step]
        return [self.train_windows.batch(chosen[i:i + opts.batch_size])
                for i in range(0, len(chosen), opts.batch_size)]

    def train_step(self, batches: list[Batch]) -> dict[str, torch.Tensor]:
        """One optimizer step over ``accumulation_steps`` micro-batches; returns the mean metrics (0-d tensors)."""
        totals: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = self.wrapped.no_sync() if (self.info.enabled and not last) else contextlib.nullcontext()
            with sync:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    loss, parts = self.task.loss(self.wrapped, batch, self.device)
                (loss / len(batches)).backward()
            for key, value in parts.items():
                totals[key] = totals.get(key, 0) + value / len(batches)
        totals["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return totals

    def _log_train(self, sums: dict[str, torch.Tensor], steps: int, seconds: float) -> dict[str, float]:
        keys = sorted(sums)
        totals = dist_utils.all_reduce_sum([float(sums[k]) / steps for k in keys], self.info)
        row = {k: round(v / self.info.world_size, 6) for k, v in zip(keys, totals)}
        bars = steps * self.opts.windows_per_step * (self.opts.lookback + self.opts.horizon) * self.info.world_size
        row.update(lr=self.optimizer.param_groups[0]["lr"], bars_per_s=round(bars / max(seconds, 1e-9), 1))
        self.metrics.write({"split": "train", "step": self.step, "epoch": self.step / self.opts.steps_per_epoch,
                            **row})
        return row

    def run(self) -> RunResult:
        opts, info = self.opts, self.info
        self._check_out()
        self._build()  # before reading data: a bad model config fails fast
        self._load_data()
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for path in remove_stale_temp_files(self.out):  # left by a run killed while writing
                log.warning("removed %s, left by an interrupted write", path)
        dist_utils.barrier(info)
        if opts.resume:
            self.load_checkpoint()
        elif info.is_main:
            self.metrics.truncate_after(-1)
        if info.is_main:
            write_json(self.out / "options.json", opts.to_dict())
            write_json(self.out / "splits.json", self.splits_record)
        eval_every = opts.eval_every or opts.steps_per_epoch
        started, first_step = self.clock(), self.step
        eval_seconds = calibrated_seconds = 0.0
        if not opts.resume:  # the starting weights, before any step: what training has to beat
            last_val = self.validate()
            eval_seconds = self.clock() - started
            if last_val is not None and self.forecasts is not None and opts.val_forecast_calibrated:
                self.selection.start_calibrated = self.validator.forecast_scores(self.model, calibrate=True)
                calibrated_seconds = self.selection.start_calibrated["seconds"]
            if last_val is not None:
                log.info("starting weights: %s", describe(self.selection.history[0]))
        total = min(opts.total_steps, self.scheduler.total_steps)  # a resumed run keeps its fitted schedule
        fit_pending = opts.max_minutes is not None and not opts.resume and total > PROBE_STEPS
        window_start, window_steps, sums = self.clock(), 0, {}
        last_val, stopped_early, epoch_cache = None, False, {}
        probe_start = self.clock()
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=self.step, desc=f"train {opts.kind}", unit="step", file=sys.stderr,
                   disable=not (opts.progress and info.is_main), dynamic_ncols=True)
        while self.step < total:
            parts = self.train_step(self._step_batches(epoch_cache))
            for key, value in parts.items():
                sums[key] = sums.get(key, 0) + value.detach()
            window_steps += 1
            bar.update(1)
            if fit_pending and self.step - first_step == PROBE_STEPS:
                fit_pending = False
                per_step = (self.clock() - probe_start) / PROBE_STEPS
                total = self._fit_schedule(total, per_step, started, eval_every, eval_seconds, calibrated_seconds)
                bar.total = total
            if self.step % opts.log_every == 0 or self.step == total:
                row = self._log_train(sums, window_steps, self.clock() - window_start)
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", bars_s=f"{row['bars_per_s']:.0f}")
                window_start, window_steps, sums = self.clock(), 0, {}
            out_of_time = opts.max_minutes is not None and self.clock() - started > opts.max_minutes * 60
            enough = opts.stop_after is not None and self.step - first_step >= opts.stop_after
            stopped_early = (enough or dist_utils.any_rank(out_of_time, info)) and self.step < total
            if self.step % eval_every == 0 or self.step == total or stopped_early:
                last_val = self.validate()
            if self.step % opts.save_every == 0 or self.step == total or stopped_early:
                self.save_checkpoint()
            if stopped_early:
                reason = f"stop_after={opts.stop_after}" if enough else f"max_minutes={opts.max_minutes}"
                log.warning("%s reached at step %d of %d; stopping (continue with resume=True)", reason, self.step,
                            total)
                break
        bar.close()
        report = None
        if info.is_main:
            self._save(self.out / "final")
            if not (self.out / "best").is_dir():  # no validation windows: the final model is the best we know
                self._save(self.out / "best")
            report = self._report()
            if report is not None:
                write_json(self.out / REPORT_NAME, report)
                for line in report_lines(report):
                    log.info("%s", line)
        dist_utils.barrier(info)
        return RunResult(self.step, self.selection.best_value, self.out, last_val, stopped_early, report)

    def _fit_schedule(self, total: int, per_step: float, started: float, eval_every: int, eval_seconds: float,
                      calibrated_seconds: float) -> int:
        """The steps that fit in max_minutes at ``per_step`` seconds, keeping time for the validations (and the
        final calibrated scores); the schedule is rebuilt over them when fewer than ``total``."""
        opts = self.opts
        left = opts.max_minutes * 60 - (self.clock() - started) - eval_seconds - calibrated_seconds
        fitted = self.step + steps_within(left, per_step, eval_every, eval_seconds)
        fitted = int(dist_utils.all_reduce_sum([float(fitted) if self.info.is_main else 0.0], self.info)[0])
        if fitted >= total:
            return total
        self._make_scheduler(fitted)
        self.metrics.write({"split": "schedule", "step": self.step, "total_steps": fitted,
                            "seconds_per_step": round(per_step, 4)})
        log.info("max_minutes=%g: %.2f s per step over the first %d steps; the schedule spans %d steps (warm-up %d)",
                 opts.max_minutes, per_step, PROBE_STEPS, fitted, max(1, round(opts.pct_start * fitted)))
        return fitted


def train(opts: TrainOptions) -> RunResult:
    """Run a training job; under torchrun joins (and leaves) the process group."""
    info = dist_utils.setup(opts.device)
    try:
        return Trainer(opts, info).run()
    finally:
        dist_utils.cleanup()
