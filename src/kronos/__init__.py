"""Kronos: a foundation model for financial candlesticks (K-lines).

Public API: the two networks (:class:`KronosTokenizer`, :class:`Kronos`), their configs, the
:class:`KronosPredictor` (DataFrames in, forecasts out), its :class:`Forecast` result and the
:class:`Calibration` report a forecast carries. The names that need PyTorch are imported on first use,
so ``kronos.onnx`` (inference on ONNX Runtime) and the readers work where PyTorch is not installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .forecasting.calibration import Calibration
from .forecasting.result import Forecast
from .model.config import KronosConfig, TokenizerConfig

if TYPE_CHECKING:
    from .forecasting.predictor import KronosPredictor
    from .model.network import Kronos
    from .model.tokenizer import KronosTokenizer

_LAZY = {"Kronos": ".model.network", "KronosPredictor": ".forecasting.predictor", "KronosTokenizer": ".model.tokenizer"}

__all__ = ["Calibration", "Forecast", "Kronos", "KronosConfig", "KronosPredictor", "KronosTokenizer", "TokenizerConfig"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
