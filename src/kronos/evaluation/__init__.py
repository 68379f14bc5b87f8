"""Walk-forward evaluation of Kronos forecasts against simple baselines (see docs/evaluation.md)."""

from .runner import Evaluation, evaluate
from .walkforward import EvaluationConfig, load_series

__all__ = ["Evaluation", "EvaluationConfig", "evaluate", "load_series"]
