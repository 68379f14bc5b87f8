"""Training and fine-tuning of the tokenizer and the predictor from users' own files (one process or torchrun)."""

from .files import Series, load_series, split_by_time
from .trainer import Trainer, TrainOptions, train
from .windows import WindowSampler, normalise_window

__all__ = ["Series", "TrainOptions", "Trainer", "WindowSampler", "load_series", "normalise_window",
           "split_by_time", "train"]
