"""Training and fine-tuning of the tokenizer and the predictor from users' own files (one process or torchrun)."""

from .options import TrainOptions
from .splits import load_training_series, split_by_time
from .trainer import Trainer, train
from .windows import WindowSampler, normalise_window

__all__ = ["TrainOptions", "Trainer", "WindowSampler", "load_training_series", "normalise_window", "split_by_time",
           "train"]
