"""Walk-forward evaluation of Kronos forecasts against simple baselines (see docs/evaluation.md)."""

from .origins import Engine, EvaluationConfig
from .runner import Evaluation, evaluate
from .walkforward import collect_series

__all__ = ["Engine", "Evaluation", "EvaluationConfig", "collect_series", "evaluate"]
