"""How tokens are drawn: temperature, top-k and nucleus (top-p) settings, shared by the PyTorch engine
(:mod:`kronos.forecasting.generation`) and the ONNX Runtime backend (:mod:`kronos.onnx.sampling`).

NumPy only, so the ONNX backend and the command line check settings without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_TEMPERATURE = 1e-3  # smaller temperatures overflow the scaled logits


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn. ``top_k`` 0 or None and ``top_p`` 1.0 switch those filters off;
    ``top_k=1`` is greedy (the random stream is then not used). Checked on construction: ``T`` at least
    :data:`MIN_TEMPERATURE`, ``top_k`` None or an integer >= 0, ``top_p`` in (0, 1]."""

    temperature: float = 1.0
    top_k: int | None = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= MIN_TEMPERATURE:
            raise ValueError(f"T (temperature) must be at least {MIN_TEMPERATURE:g} (smaller values overflow the "
                             f"scaled logits; top_k=1 is greedy), got {self.temperature!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer))
                                       or self.top_k < 0):
            raise ValueError(f"top_k must be None or an integer >= 0, got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.top_k == 1
