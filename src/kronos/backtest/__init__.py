"""Backtests of forecast signals: walk-forward over a universe, strategies, costs, metrics (docs/backtest.md)."""

from .accounting import Book, Strategy, drawdown, simulate
from .runner import (
    BASELINE_SIGNALS,
    BENCHMARK,
    MODEL_SIGNALS,
    BacktestConfig,
    BacktestResult,
    Plan,
    forecast_origins,
    plan_dates,
    run,
    score_signals,
)

__all__ = ["BASELINE_SIGNALS", "BENCHMARK", "MODEL_SIGNALS", "BacktestConfig", "BacktestResult", "Book", "Plan",
           "Strategy", "drawdown", "forecast_origins", "plan_dates", "run", "score_signals", "simulate"]
