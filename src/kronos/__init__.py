"""Kronos: a foundation model for financial candlesticks (K-lines)."""
from .config import KronosConfig, TokenizerConfig
from .network import Kronos
from .tokenizer import KronosTokenizer

__all__ = ["Kronos", "KronosConfig", "KronosTokenizer", "TokenizerConfig"]
__version__ = "0.1.0"
