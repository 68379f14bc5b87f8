"""Kronos on ONNX Runtime: export the networks (:mod:`kronos.onnx.export`, needs PyTorch and onnx) and run
them with NumPy and onnxruntime only (:class:`OnnxPredictor`, install ``kronos-kline[onnx]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .predictor import OnnxPredictor

__all__ = ["OnnxPredictor"]


def __getattr__(name: str) -> Any:
    if name == "OnnxPredictor":
        from .predictor import OnnxPredictor

        return OnnxPredictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
