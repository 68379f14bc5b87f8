"""Training loops for the tokenizer and the predictor, with checkpoints, resume and a metrics log.

One loop serves both networks; a :class:`Task` says how to build the model and compute its loss.
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
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import json
import logging
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import kill_points
from ..data.tables import ReadOptions
from ..io import atomic_write_bytes, remove_stale_temp_files
from ..model.checkpoint import read_predictor_info, write_predictor_info
from ..model.config import KRONOS_SIZES, TOKENIZER_SIZES, KronosConfig, TokenizerConfig
from ..model.default_model import describe_source, resolve_source
from ..model.network import Kronos
from ..model.tokenizer import KronosTokenizer
from . import distributed as dist_utils
from .distributed import DistInfo
from .quality import ValidationForecasts, paired_change
from .splits import describe_splits, load_training_series, split_by_time
from .windows import Batch, WindowSampler

log = logging.getLogger("kronos.training")

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
REPORT_NAME = "report.json"
DEFAULT_LOOKBACK, DEFAULT_HORIZON = 90, 10
PROBE_STEPS = 5  # max_minutes: steps timed before the schedule is fitted to the budget
# Options that must not change when a run is resumed (they change what the saved state means).
RESUME_FIXED = ("kind", "lookback", "horizon", "clip", "batch_size", "accumulation_steps", "seed", "epochs",
                "steps_per_epoch", "max_steps", "val_fraction", "test_fraction", "lr", "pct_start", "div_factor")


@dataclass
class TrainOptions:
    """Everything a training run needs; field names are the command-line option names (``_`` for ``-``)."""

    kind: str  # "tokenizer" or "predictor"
    data: list[str]
    out: str
    tokenizer: str | None = None  # predictor only: frozen tokenizer (folder, training output dir, hub id, default)
    init: str | None = None  # fine-tune from this from_pretrained source ("default": the bundled model)
    size: str | None = None  # from scratch: a published size
    model_config: dict[str, Any] = field(default_factory=dict)  # config field overrides
    lookback: int | None = None  # default: the init model's (predictor.json), else 90
    horizon: int | None = None  # default: the init model's (predictor.json), else 10
    clip: float = 5.0
    batch_size: int = 50
    accumulation_steps: int = 1
    lr: float | None = None  # 2e-4 tokenizer, 4e-5 predictor
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    weight_decay: float = 0.1
    grad_clip: float | None = None  # 2.0 tokenizer, 3.0 predictor
    pct_start: float = 0.03
    div_factor: float = 10.0
    epochs: int = 30
    steps_per_epoch: int = 2000
    max_steps: int | None = None
    max_minutes: float | None = None
    stop_after: int | None = None  # stop this invocation after N steps (the schedule still spans total_steps)
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    val_windows: int = 1000
    select_by: str | None = None  # "crps" or "loss"; default crps for a predictor, loss for a tokenizer
    val_forecast_origins: int = 64  # predictor: forecast origins on the validation tails (0: no forecast scores)
    val_forecast_samples: int = 10
    val_forecast_calibrated: bool = True  # also score calibrated forecasts of the start and the best trained weights
    eval_every: int | None = None  # default: once per epoch
    save_every: int = 500
    log_every: int = 10
    seed: int = 100
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere), fp32, bf16
    # How the files are read (kronos.data.tables.ReadOptions; training drops rows with missing values by default).
    time_column: str | None = None
    sort: bool | None = None
    nan: str = "drop"
    rename: dict[str, str] = field(default_factory=dict)
    id_column: str | None = None
    adjusted: bool = False
    time_unit: str | None = None
    date_format: str | None = None
    dayfirst: bool | None = None
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("tokenizer", "predictor"):
            raise ValueError(f"kind must be 'tokenizer' or 'predictor', got {self.kind!r}")
        if self.lr is None:
            self.lr = 2e-4 if self.kind == "tokenizer" else 4e-5
        self._fill_window()
        if self.select_by is None:
            self.select_by = "crps" if self.kind == "predictor" and self.val_forecast_origins else "loss"
        if self.select_by not in ("crps", "loss"):
            raise ValueError(f"select_by= must be 'crps' or 'loss', got {self.select_by!r}")
        if self.select_by == "crps" and (self.kind != "predictor" or not self.val_forecast_origins):
            raise ValueError("select_by='crps' needs forecasts: a predictor run with val_forecast_origins= above 0")
        if isinstance(self.val_forecast_origins, bool) or not isinstance(self.val_forecast_origins, int) \
                or self.val_forecast_origins < 0:
            raise ValueError(f"val_forecast_origins= must be a non-negative integer, got {self.val_forecast_origins!r}")
        if self.grad_clip is None:
            self.grad_clip = 2.0 if self.kind == "tokenizer" else 3.0
        optional = ("max_steps", "eval_every", "stop_after")  # None = not set
        for name in ("lookback", "horizon", "batch_size", "accumulation_steps", "epochs", "steps_per_epoch",
                     "val_windows", "save_every", "log_every", "val_forecast_samples") + optional:
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}= must be a positive integer, got {value!r}")
        for name in ("clip", "div_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}= must be positive, got {getattr(self, name)!r}")
        if not self.lr >= 0:
            raise ValueError(f"lr= must be positive or 0 (0: only validate the starting weights), got {self.lr!r}")
        if not 0 < self.pct_start < 1:
            raise ValueError(f"pct_start= must be in (0, 1), got {self.pct_start!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes= must be positive, got {self.max_minutes!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision= must be auto, fp32 or bf16, got {self.precision!r}")
        if self.init and self.size:
            raise ValueError("give either init= (fine-tune) or size= (from scratch), not both")
        sizes = TOKENIZER_SIZES if self.kind == "tokenizer" else KRONOS_SIZES
        if self.size is not None and self.size not in sizes:
            raise ValueError(f"size= must be one of {', '.join(sizes)}, got {self.size!r}")
        if self.kind == "predictor" and not self.tokenizer:
            raise ValueError("tokenizer= is required: the frozen tokenizer (folder or hub id) that makes the tokens")
        _ = self.read_options  # raises naming a bad reading option

    def _fill_window(self) -> None:
        """lookback / horizon left unset: the starting model's (its predictor.json), else 90 / 10."""
        if self.lookback is not None and self.horizon is not None:
            return
        info: dict[str, Any] = {}
        if self.init:
            # A tokenizer fine-tuned from the bundled one keeps the bundled model's window.
            source = resolve_source(self.init, "model")
            if Path(str(source)).is_dir():
                info = read_predictor_info(source)
        lookback = info.get("lookback")
        horizon = info.get("horizon") or (info["max_context"] - lookback if lookback and "max_context" in info
                                          and info["max_context"] > lookback else None)
        if self.lookback is None:
            self.lookback = lookback or DEFAULT_LOOKBACK
        if self.horizon is None:
            self.horizon = horizon or DEFAULT_HORIZON

    @property
    def read_options(self) -> ReadOptions:
        """How the ``data`` files are read (see :mod:`kronos.data.tables`)."""
        return ReadOptions(time_column=self.time_column, sort=self.sort, nan=self.nan, rename=self.rename,
                           id_column=self.id_column, adjusted=self.adjusted, time_unit=self.time_unit,
                           date_format=self.date_format, dayfirst=self.dayfirst)

    @property
    def total_steps(self) -> int:
        return self.max_steps if self.max_steps is not None else self.epochs * self.steps_per_epoch

    @property
    def windows_per_step(self) -> int:
        return self.batch_size * self.accumulation_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- tasks ---------------------------------------------------------------------------------------

def _config_with(base: Any, overrides: dict[str, Any], config_class: type) -> Any:
    values = base.to_dict() if base is not None else {}
    values.update(overrides)
    return config_class.from_dict(values)


def resolve_tokenizer_source(source: str) -> str:
    """A training output folder (with ``best/``) stands for its best model, ``"default"`` for the bundled
    tokenizer; other sources pass through."""
    return str(resolve_source(source, "tokenizer"))


def to_device(array, device: torch.device) -> torch.Tensor:
    """Copy a numpy array into memory torch allocates. ``torch.from_numpy`` would keep numpy's buffer, whose
    alignment varies from run to run; the CPU matrix kernels may round differently for different alignments,
    which breaks bit-exact resume."""
    return torch.tensor(array, device=device)


class Task:
    """How one network is built and trained: ``loss(model, batch)`` -> (scalar loss, metrics as 0-d tensors)."""

    best_metric = "loss"

    def build(self, opts: TrainOptions, device: torch.device) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: Any, batch: Batch, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


class TokenizerTask(Task):
    """Loss ``(MSE(coarse, x) + MSE(full, x) + bsq_loss) / 2`` as in :meth:`KronosTokenizer.loss`, computed
    from ``forward`` so that DistributedDataParallel sees the pass."""

    best_metric = "recon_mse"

    def build(self, opts: TrainOptions, device: torch.device) -> nn.Module:
        if opts.init:
            model = KronosTokenizer.from_pretrained(opts.init, **opts.model_config)
        else:
            config = _config_with(TOKENIZER_SIZES[opts.size or "base"], opts.model_config, TokenizerConfig)
            model = KronosTokenizer(config)
        return model.to(device)

    def loss(self, model, batch, device):
        x = to_device(batch.x, device)
        (coarse, full), bsq_loss, _, _ = model(x)
        mse_coarse = torch.mean((coarse.float() - x) ** 2)
        mse_full = torch.mean((full.float() - x) ** 2)
        total = (mse_coarse + mse_full + bsq_loss.float()) / 2
        return total, {"loss": total.detach(), "recon_mse": mse_full.detach(),
                       "recon_mse_coarse": mse_coarse.detach(), "bsq_loss": bsq_loss.detach().float()}


class PredictorTask(Task):
    """Tokens of the frozen tokenizer; inputs ``tokens[:, :-1]`` with their stamps, targets ``tokens[:, 1:]``;
    loss ``(CE(s1) + CE(s2)) / 2`` with the s2 head teacher-forced on the true next s1."""

    def __init__(self) -> None:
        self.tokenizer: KronosTokenizer | None = None

    def build(self, opts: TrainOptions, device: torch.device) -> nn.Module:
        tokenizer = KronosTokenizer.from_pretrained(resolve_tokenizer_source(opts.tokenizer), device=device)
        tokenizer.requires_grad_(False)
        self.tokenizer = tokenizer.eval()
        bits = {"s1_bits": tokenizer.config.s1_bits, "s2_bits": tokenizer.config.s2_bits}
        if opts.init:
            model = Kronos.from_pretrained(opts.init, **opts.model_config)
        else:
            overrides = {**bits, **opts.model_config}
            model = Kronos(_config_with(KRONOS_SIZES[opts.size or "small"], overrides, KronosConfig))
        found = {"s1_bits": model.config.s1_bits, "s2_bits": model.config.s2_bits}
        if found != bits:
            raise ValueError(f"the model's token bits {found} do not match the tokenizer's {bits}")
        return model.to(device)

    def loss(self, model, batch, device):
        x = to_device(batch.x, device)
        stamps = to_device(batch.stamps, device)
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            s1, s2 = self.tokenizer.encode(x, half=True)  # (B, W) each
        s1_in, s2_in, s1_tgt, s2_tgt = s1[:, :-1], s2[:, :-1], s1[:, 1:], s2[:, 1:]
        s1_logits, s2_logits = model(s1_in, s2_in, stamps[:, :-1], use_teacher_forcing=True, s1_targets=s1_tgt)
        ce_s1 = F.cross_entropy(s1_logits.float().flatten(0, 1), s1_tgt.flatten())
        ce_s2 = F.cross_entropy(s2_logits.float().flatten(0, 1), s2_tgt.flatten())
        total = (ce_s1 + ce_s2) / 2
        with torch.no_grad():
            acc1 = (s1_logits.argmax(-1) == s1_tgt).float().mean()
            acc2 = (s2_logits.argmax(-1) == s2_tgt).float().mean()
        return total, {"loss": total.detach(), "ce_s1": ce_s1.detach(), "ce_s2": ce_s2.detach(),
                       "s1_acc": acc1, "s2_acc": acc2}


TASKS = {"tokenizer": TokenizerTask, "predictor": PredictorTask}


# -- files ---------------------------------------------------------------------------------------

def save_model_dir(model: nn.Module, directory: Path, extra: Callable[[Path], None] | None = None) -> None:
    """Write a ``from_pretrained`` folder: fill a temporary sibling (``extra`` may add files), then swap it in
    by rename."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if extra is not None:
        extra(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


class MetricsLog:
    """Append-only JSON lines; on resume, rows after the checkpoint's step are dropped first."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a killed run
                continue
            if row.get("step", 0) <= step:
                kept.append(line)
        atomic_write_bytes(self.path, "".join(line + "\n" for line in kept).encode())

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


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
            self._resume_state = self._read_checkpoint(checkpoint)

    def _load_data(self) -> None:
        opts = self.opts
        window = opts.lookback + opts.horizon
        series = load_training_series(opts.data, window, opts.read_options)
        splits = split_by_time(series, opts.val_fraction, opts.test_fraction)
        self.train_windows = WindowSampler(splits.train, opts.lookback, opts.horizon, opts.clip, opts.seed)
        self.val_windows = WindowSampler(splits.val, opts.lookback, opts.horizon, opts.clip, opts.seed)
        if not self.train_windows.n_windows:
            raise ValueError(f"data=: no training segment has a window of {window} bars; lower lookback=/horizon= "
                             "or val_fraction=/test_fraction=")
        short = [s.name for s in splits.train if len(s) < window]
        if short:
            log.warning("%d series have a training segment shorter than %d bars and give no training windows: %s",
                        len(short), window, ", ".join(short))
        if self.opts.val_fraction and not self.val_windows.n_windows:
            log.warning("no validation segment has a window of %d bars; validation is skipped", window)
        self._plan_forecasts(series, splits)
        self.splits_record = {"series": describe_splits(splits, series), "train_windows": self.train_windows.n_windows,
                              "val_windows": self.val_windows.n_windows}
        log.info("%d series; %d training and %d validation windows of %d bars", len(series),
                 self.train_windows.n_windows, self.val_windows.n_windows, window)

    def _plan_forecasts(self, series, splits) -> None:
        """Forecast origins on the validation tails (predictor runs); select_by='crps' falls back to the loss
        when there are none."""
        opts = self.opts
        self.forecasts = None
        self.select_by = opts.select_by
        if opts.kind != "predictor" or not opts.val_forecast_origins or not opts.val_fraction:
            return
        cut = [item.slice(0, sum(splits.bounds[item.name][:2])) for item in series]
        val_rows = {name: bounds[1] for name, bounds in splits.bounds.items()}
        self.forecasts = ValidationForecasts.plan(cut, val_rows, opts.lookback, opts.horizon,
                                                  opts.val_forecast_samples, opts.val_forecast_origins, opts.seed)
        if self.forecasts is None:
            log.warning("no validation part holds a forecast of %d bars; forecasts are not scored%s", opts.horizon,
                        " and best/ is chosen by the validation loss" if self.select_by == "crps" else "")
            self.select_by = "loss"
        else:
            log.info("forecasts scored at %d origins of the validation tails (%d bars ahead, %d paths)",
                     len(self.forecasts.origins), opts.horizon, opts.val_forecast_samples)

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
        self.best_value, self.best_step = math.inf, None
        self.history: list[dict[str, Any]] = []  # one entry per validation: step, loss, forecast scores
        self.start_calibrated: dict[str, float] | None = None

    # checkpoints
    def _rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_checkpoint(self) -> None:
        rng = dist_utils.gather_objects(self._rng_state(), self.info)
        if not self.info.is_main:
            return
        state = {"format": 1, "step": self.step, "best_value": self.best_value, "world_size": self.info.world_size,
                 "best_step": self.best_step, "history": self.history, "start_calibrated": self.start_calibrated,
                 "start_per_origin": getattr(self, "start_per_origin", None),
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "rng": rng, "options": self.opts.to_dict()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.out / CHECKPOINT_NAME, buffer.getvalue())
        kill_points.reached("checkpoint")

    def _read_checkpoint(self, path: Path) -> dict[str, Any]:
        """Load ``checkpoint.pt`` and check that it fits this run (options, number of processes)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["options"]
        changed = [k for k in RESUME_FIXED if saved.get(k) != getattr(self.opts, k)]
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(self.opts, k)!r}" for k in changed)
            raise ValueError(f"resume=True: options differ from the checkpoint's ({details})")
        if state["world_size"] != self.info.world_size:
            raise ValueError(f"resume=True: the checkpoint was written by {state['world_size']} process(es), "
                             f"this run has {self.info.world_size}")
        return state

    def load_checkpoint(self) -> None:
        path = self.out / CHECKPOINT_NAME
        state = self._resume_state
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best_value = int(state["step"]), float(state["best_value"])
        self.best_step = state.get("best_step")
        self.history = list(state.get("history") or [])
        self.start_calibrated = state.get("start_calibrated")
        self.start_per_origin = state.get("start_per_origin")
        rng = state["rng"][self.info.rank]
        torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        self._resume_state = None
        self.metrics.truncate_after(self.step)
        log.info("resumed from %s at step %d", path, self.step)

    # evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        if not self.val_windows.n_windows:
            return None
        indices = self.val_windows.fixed_indices(self.opts.val_windows)[self.info.rank::self.info.world_size]
        self.model.eval()
        sums: dict[str, float] = {}
        count = 0
        for start in range(0, len(indices), self.opts.batch_size):
            chunk = indices[start:start + self.opts.batch_size]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                _, parts = self.task.loss(self.model, self.val_windows.batch(chunk), self.device)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(chunk)
            count += len(chunk)
        self.model.train()
        keys = sorted(self.task_keys)
        totals = dist_utils.all_reduce_sum([sums.get(k, 0.0) for k in keys] + [float(count)], self.info)
        return {k: v / totals[-1] for k, v in zip(keys, totals[:-1])}

    @property
    def task_keys(self) -> tuple[str, ...]:
        if self.opts.kind == "tokenizer":
            return ("loss", "recon_mse", "recon_mse_coarse", "bsq_loss")
        return ("loss", "ce_s1", "ce_s2", "s1_acc", "s2_acc")

    def _predictor(self, model: nn.Module):
        from ..forecasting.predictor import KronosPredictor

        opts = self.opts
        # A copy: the predictor puts its network in inference form (eval mode, packed projections), which must
        # not reach the weights being trained (a resumed run must give the same bits as an uninterrupted one).
        return KronosPredictor(copy.deepcopy(model), self.task.tokenizer, device=self.device,
                               max_context=opts.lookback + opts.horizon, clip=opts.clip, lookback=opts.lookback)

    def forecast_scores(self, calibrate: bool = False) -> dict[str, float] | None:
        """Forecast scores of the current weights on the validation tails (computed by rank 0, shared)."""
        if self.forecasts is None:
            return None
        keys = ("crps_rel", "coverage_80", "coverage_50", "origins", "seconds")
        n = len(self.forecasts.origins)
        scores: dict[str, Any] = {**dict.fromkeys(keys, 0.0), "per_origin": [0.0] * n}
        if self.info.is_main:
            try:
                scores = self.forecasts.score(self._predictor(self.model), calibrate)
            finally:
                self.model.train()
        totals = dist_utils.all_reduce_sum([scores[k] for k in keys] + list(scores["per_origin"]), self.info)
        return {**dict(zip(keys, totals[:len(keys)])), "per_origin": totals[len(keys):]}

    def validate(self) -> dict[str, float] | None:
        """Validation loss and (predictor runs) forecast scores; records them, keeps ``best/`` up to date."""
        val = self.evaluate()
        forecast = self.forecast_scores() if val is not None else None
        self._after_eval(val, forecast)
        return val

    def _after_eval(self, val: dict[str, float] | None, forecast: dict[str, float] | None = None) -> None:
        if val is None:
            return
        scores = {k: forecast[k] for k in ("crps_rel", "coverage_80", "coverage_50")} if forecast else {}
        if forecast and self.step == 0 and not self.history:
            self.start_per_origin = list(forecast["per_origin"])
        elif forecast and getattr(self, "start_per_origin", None):
            change, error = paired_change(self.start_per_origin, forecast["per_origin"])
            scores.update(crps_change=change, crps_change_se=error)
        self.metrics.write({"split": "val", "step": self.step, "epoch": self.step / self.opts.steps_per_epoch,
                            **{k: round(v, 6) for k, v in val.items()},
                            **{f"forecast_{k}": round(v, 6) for k, v in scores.items() if not k.startswith("crps_ch")}})
        self.history.append({"step": self.step, "loss": val["loss"], self.task.best_metric: val[self.task.best_metric],
                             **scores})
        value = scores["crps_rel"] if self.select_by == "crps" and forecast else val[self.task.best_metric]
        trained = [h[self._selection_metric()] for h in self.history[:-1] if h["step"] > 0]
        if self.step > 0 and self.info.is_main and self.forecasts is not None and self.opts.val_forecast_calibrated \
                and value < min(trained, default=math.inf):  # kept for the calibrated scores of the report
            self.best_trained_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if value < self.best_value:
            self.best_value, self.best_step = value, self.step
            if self.info.is_main:
                self._save(self.out / "best")

    # the report
    def _selection_metric(self) -> str:
        return "crps_rel" if self.select_by == "crps" and self.forecasts is not None else self.task.best_metric

    def _report(self) -> dict[str, Any] | None:
        """Start against best/ and the best trained checkpoint (rank 0 only; None without validation)."""
        if not self.history or self.history[0]["step"] != 0:
            return None
        metric = self._selection_metric()
        start = dict(self.history[0])
        best = next((dict(h) for h in self.history if h["step"] == self.best_step), start)
        trained = [h for h in self.history if h["step"] > 0 and metric in h]
        best_trained = dict(min(trained, key=lambda h: h[metric])) if trained else None
        if self.forecasts is not None and self.start_calibrated is not None:
            start["calibrated"] = self.start_calibrated
            state = getattr(self, "best_trained_state", None)
            if best_trained is not None and state is not None:
                model = copy.deepcopy(self.model)
                model.load_state_dict(state)
                best_trained["calibrated"] = self.forecasts.score(self._predictor(model), calibrate=True)
                self.model.train()
            if best["step"] == 0:
                best["calibrated"] = self.start_calibrated
            elif best_trained is not None and best["step"] == best_trained["step"]:
                best["calibrated"] = best_trained.get("calibrated")
        report = {"select_by": self.select_by if metric == "crps_rel" else "loss", "metric": metric,
                  "steps": self.step, "start": start, "best": best, "best_trained": best_trained,
                  "forecast_origins": len(self.forecasts.origins) if self.forecasts is not None else 0,
                  "horizon": self.opts.horizon, "samples": self.opts.val_forecast_samples}
        if best_trained is None:
            report["improved"] = None
            report["verdict"] = "no trained checkpoint was validated; best/ holds the starting weights"
            return report
        name = {"crps_rel": "validation CRPS", "loss": "validation loss"}.get(metric, f"validation {metric}")
        before, after = start[metric], best_trained[metric]
        change = (after - before) / abs(before) if before else float("nan")
        report["improved"] = bool(after < before)
        report["change"] = change
        error = best_trained.get("crps_change_se") if metric == "crps_rel" else None
        noise = ""
        if error is not None and math.isfinite(error):
            report["change_se"] = error
            noise = f" ± {error:.1%} (standard error over {report['forecast_origins']} origins)"
        report["within_noise"] = bool(error is not None and math.isfinite(error) and abs(after - before) < 2 * error
                                      * abs(before))
        if after < before and report["within_noise"]:
            report["verdict"] = (f"training did not clearly beat the starting weights: {name} {before:.5g} -> "
                                 f"{after:.5g} ({change:+.1%}{noise}) at step {best_trained['step']} is within "
                                 f"twice its standard error; check more origins (val_forecast_origins=) or held-out "
                                 f"data before trusting it; best/ holds step {best['step']}")
        elif after < before:
            report["verdict"] = (f"training beat the starting weights: {name} {before:.5g} -> {after:.5g} "
                                 f"({change:+.1%}{noise}) at step {best_trained['step']}; best/ holds step "
                                 f"{best['step']}")
        else:
            report["verdict"] = (f"training did not beat the starting weights: the best trained checkpoint (step "
                                 f"{best_trained['step']}) has {name} {after:.5g} against {before:.5g} "
                                 f"({change:+.1%}{noise}); best/ holds the starting weights")
        return report

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
                self.start_calibrated = self.forecast_scores(calibrate=True)
                calibrated_seconds = self.start_calibrated["seconds"]
            if last_val is not None:
                log.info("starting weights: %s", _describe(self.history[0]))
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
        return RunResult(self.step, self.best_value, self.out, last_val, stopped_early, report)

    def _fit_schedule(self, total: int, per_step: float, started: float, eval_every: int, eval_seconds: float,
                      calibrated_seconds: float) -> int:
        """The steps that fit in max_minutes at ``per_step`` seconds, keeping time for the validations (and the
        final calibrated scores); the schedule is rebuilt over them when fewer than ``total``."""
        opts = self.opts
        left = opts.max_minutes * 60 - (self.clock() - started) - eval_seconds - calibrated_seconds
        steps = max(left, 0.0) / per_step
        steps -= (steps / eval_every) * eval_seconds / per_step  # the validations along the way
        fitted = self.step + max(1, int(steps * 0.95))
        fitted = int(dist_utils.all_reduce_sum([float(fitted) if self.info.is_main else 0.0], self.info)[0])
        if fitted >= total:
            return total
        self._make_scheduler(fitted)
        self.metrics.write({"split": "schedule", "step": self.step, "total_steps": fitted,
                            "seconds_per_step": round(per_step, 4)})
        log.info("max_minutes=%g: %.2f s per step over the first %d steps; the schedule spans %d steps (warm-up %d)",
                 opts.max_minutes, per_step, PROBE_STEPS, fitted, max(1, round(opts.pct_start * fitted)))
        return fitted


def _describe(entry: dict[str, Any]) -> str:
    parts = [f"validation loss {entry['loss']:.5g}"]
    if "crps_rel" in entry:
        parts.append(f"CRPS {entry['crps_rel']:.5g}, 80% coverage {entry['coverage_80']:.3f}")
    return "; ".join(parts)


def report_lines(report: dict[str, Any]) -> list[str]:
    """The run report as lines for people: the starting weights against the best trained checkpoint, then
    the verdict and what best/ holds."""
    start, trained = report["start"], report.get("best_trained")
    lines = [f"validation before step 0 and during {report['steps']} training steps; best/ is step "
             f"{report['best']['step']} (chosen by {report['select_by']})"]
    if trained is None:
        lines.append(report["verdict"])
        return lines
    column = f"trained (step {trained['step']})"
    lines.append(f"  {'':<30}{'start':>10}  {column:>18}  change")

    def row(name: str, key: str, fmt: str, a: dict | None, b: dict | None, relative: bool) -> None:
        if not a or not b or key not in a or key not in b:
            return
        x, y = a[key], b[key]
        change = f"{(y - x) / abs(x):+.1%}" if relative and x else f"{y - x:+.3f}"
        lines.append(f"  {name:<30}{x:>10{fmt}}  {y:>18{fmt}}  {change}")

    row("validation loss", "loss", ".5g", start, trained, True)
    if report["metric"] not in ("crps_rel", "loss"):
        row(f"validation {report['metric']}", report["metric"], ".5g", start, trained, True)
    row("CRPS (share of last close)", "crps_rel", ".5g", start, trained, True)
    row("80% coverage", "coverage_80", ".3f", start, trained, False)
    row("CRPS, calibrated", "crps_rel", ".5g", start.get("calibrated"), trained.get("calibrated"), True)
    row("80% coverage, calibrated", "coverage_80", ".3f", start.get("calibrated"), trained.get("calibrated"), False)
    if report.get("forecast_origins"):
        lines.append(f"  (forecasts at {report['forecast_origins']} origins of the validation tails, "
                     f"{report['horizon']} bars ahead, {report['samples']} paths each)")
    lines.append(report["verdict"])
    return lines


def train(opts: TrainOptions) -> RunResult:
    """Run a training job; under torchrun joins (and leaves) the process group."""
    info = dist_utils.setup(opts.device)
    try:
        return Trainer(opts, info).run()
    finally:
        dist_utils.cleanup()
