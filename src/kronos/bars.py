"""What a bar is, for every layer: the six feature columns in their order, where each one sits, and the
normalisation every model was trained with.

Arrays of bars are ``(..., 6)`` float32 in :data:`FEATURE_COLUMNS` order, so ``bars[..., CLOSE]`` is the close.
This module imports nothing, so the networks, the readers and the applications can all share it.
"""

from __future__ import annotations

PRICE_COLUMNS = ("open", "high", "low", "close")
FEATURE_COLUMNS = (*PRICE_COLUMNS, "volume", "amount")
OPEN, HIGH, LOW, CLOSE, VOLUME, AMOUNT = range(len(FEATURE_COLUMNS))  # positions in FEATURE_COLUMNS
PRICE_INDICES = (OPEN, HIGH, LOW, CLOSE)

NORM_EPS = 1e-5  # added to a window's standard deviation before dividing by it (written to predictor.json)
