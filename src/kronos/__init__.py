"""Kronos: a foundation model for financial candlesticks (K-lines).

Public API: the two networks (:class:`KronosTokenizer`, :class:`Kronos`), their configs, the
:class:`KronosPredictor` (DataFrames in, forecasts out), its :class:`Forecast` result and the
:class:`Calibration` report a forecast carries.
"""

from .calibration import Calibration
from .config import KronosConfig, TokenizerConfig
from .network import Kronos
from .predictor import Forecast, KronosPredictor
from .tokenizer import KronosTokenizer

__all__ = ["Calibration", "Forecast", "Kronos", "KronosConfig", "KronosPredictor", "KronosTokenizer", "TokenizerConfig"]
__version__ = "0.1.0"
