"""Walk-forward evaluation of Kronos forecasts against simple baselines (see docs/evaluation.md)."""

from .runner import Evaluation, evaluate
from .walkforward import Engine, EvaluationConfig, load_series

__all__ = ["Engine", "Evaluation", "EvaluationConfig", "evaluate", "load_series"]
