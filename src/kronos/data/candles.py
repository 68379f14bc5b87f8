"""Valid candles: the last step of every forecast, so that each sample bar can be drawn and traded on.

A bar is valid when ``low <= min(open, close) <= max(open, close) <= high`` and volume and amount are
``>= 0``. The network does not know this rule: the tokenizer encodes each z-scored column on its own and
decodes it from a coarse token, and on real series its reconstruction of a history bar from that bar's
own tokens misses each price by 20-80% of the average bar range, more than the distance between high
and close on most bars. About one sampled bar in seven breaks the rule on the daily and intraday series
of the test data; where a series' range is small next to its level (1-minute bars) nearly every one does.

:func:`valid_candles` repairs a bar by the smallest change that keeps its open and close: the high is
raised to ``max(high, open, close)``, the low lowered to ``min(low, open, close)``, volume and amount
are clipped at 0. Open and close are left as sampled, so the close's forecast (and its calibration)
is the same as without the repair; a broken wick becomes a bar without that wick.
"""

from __future__ import annotations

import numpy as np

from ..bars import AMOUNT, CLOSE, FEATURE_COLUMNS, HIGH, LOW, OPEN, VOLUME


def valid_candles(bars: np.ndarray) -> np.ndarray:
    """A copy of ``bars`` (..., 6) over open, high, low, close, volume, amount in which every bar is valid.

    ``high = max(high, open, close)``, ``low = min(low, open, close)``, ``volume, amount = max(., 0)``;
    open and close are unchanged. Units and dtype are kept.
    """
    bars = np.asarray(bars)
    if bars.shape[-1] != len(FEATURE_COLUMNS):
        raise ValueError(f"bars must have 6 columns (open, high, low, close, volume, amount), got shape {bars.shape}")
    out = bars.copy()
    body_top = np.maximum(bars[..., OPEN], bars[..., CLOSE])
    body_bottom = np.minimum(bars[..., OPEN], bars[..., CLOSE])
    out[..., HIGH] = np.maximum(bars[..., HIGH], body_top)
    out[..., LOW] = np.minimum(bars[..., LOW], body_bottom)
    out[..., VOLUME:] = np.maximum(bars[..., VOLUME:], 0)
    return out


def invalid_share(bars: np.ndarray) -> float:
    """Share of the bars (..., 6) that break the candle rule (high or low inside the body, or a negative
    volume or amount)."""
    bars = np.asarray(bars)
    high = bars[..., HIGH] < np.maximum(bars[..., OPEN], bars[..., CLOSE])
    low = bars[..., LOW] > np.minimum(bars[..., OPEN], bars[..., CLOSE])
    negative = (bars[..., VOLUME] < 0) | (bars[..., AMOUNT] < 0)
    return float((high | low | negative).mean()) if bars[..., 0].size else 0.0
