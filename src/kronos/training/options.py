"""What a training run is asked to do: :class:`TrainOptions`, with the original's fine-tuning defaults filled in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.tables import ReadOptions
from ..model.checkpoint import read_predictor_info
from ..model.config import KRONOS_SIZES, TOKENIZER_SIZES
from ..model.default_model import resolve_source

DEFAULT_LOOKBACK, DEFAULT_HORIZON = 90, 10
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
