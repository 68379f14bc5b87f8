"""The timestamps of the bars to forecast, on the series' own trading calendar (pandas only).

With a pandas frequency the future bars are ``last + k*freq``. Otherwise the rule is inferred from the
history: its regular frequency, its monthly or weekly offset, or its median step on the (weekday, time
of day) slots where the history has bars, so weekends, nights and lunch breaks are skipped.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

FREQ_EXAMPLES = "e.g. 5min, 15min, h, D, B, W-FRI, MS, ME"


def _offset_range(last: pd.Timestamp, offset: pd.DateOffset, n: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([last + k * offset for k in range(1, n + 1)], name="timestamp")


def parse_freq(freq: str) -> pd.DateOffset:
    """A pandas offset from an alias such as ``5min`` or ``B``; ``ValueError`` naming the alias otherwise."""
    try:
        return to_offset(freq)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"freq {freq!r} is not a pandas frequency ({FREQ_EXAMPLES})") from exc


def _monthly_offset(index: pd.DatetimeIndex) -> pd.DateOffset:
    if index.is_month_end.all():
        return pd.offsets.MonthEnd()
    if (index.day == 1).all():
        return pd.offsets.MonthBegin()
    return pd.DateOffset(months=1)


DAY_NS = 86_400 * 10**9


def _slot_codes(index: pd.DatetimeIndex, by_weekday: bool) -> np.ndarray:
    """One code per (weekday if ``by_weekday``, time of day) slot: weekday * DAY_NS + ns since midnight."""
    index = index.as_unit("ns")
    since_midnight = (index - index.normalize()).asi8
    return index.day_of_week.to_numpy().astype(np.int64) * DAY_NS + since_midnight if by_weekday else since_midnight


def _allowed_slots(index: pd.DatetimeIndex) -> tuple[np.ndarray, bool]:
    """Codes of the slots where the history regularly has bars, and whether slots include the weekday.

    Weekdays count only over two weeks of history or more. A slot must hold bars in at least 30% of
    the weeks (or days) that have bars, so sparse pre-market minutes or a one-off Saturday session
    do not open it for the forecast; a gap of days without bars does not raise the bar.
    """
    span = index[-1] - index[0]
    by_weekday = span >= pd.Timedelta(weeks=2)
    days = index.normalize()
    periods = len(np.unique(days.asi8 // (7 * DAY_NS))) if by_weekday else len(days.unique())
    codes, counts = np.unique(_slot_codes(index, by_weekday), return_counts=True)
    return codes[counts >= max(1.0, 0.3 * periods)], by_weekday


CALENDAR_GRID_MIN = 2**20  # grid points searched for the future bars' calendar slots, at least
CALENDAR_GRID_PER_BAR = 256  # and per bar to place


def _calendar_range(index: pd.DatetimeIndex, step: pd.Timedelta, n: int) -> pd.DatetimeIndex:
    """The next ``n`` points of the grid ``last + k*step`` that fall on a (weekday, time) slot of the history."""
    slots, by_weekday = _allowed_slots(index)
    per_day = max(1, int(pd.Timedelta(days=1) / step))
    open_share = max(len(slots) / ((7 if by_weekday else 1) * per_day), 1e-3)
    most = max(CALENDAR_GRID_MIN, CALENDAR_GRID_PER_BAR * n)  # bounded by n, whatever the bars' spacing
    span = min(int(n / open_share) + 8 * per_day, most)
    for _ in range(6):
        grid = pd.date_range(index[-1] + step, periods=span, freq=step, unit="ns")
        chosen = grid[np.isin(_slot_codes(grid, by_weekday), slots)]
        if len(chosen) >= n:
            return pd.DatetimeIndex(chosen[:n], name="timestamp")
        if span >= most:
            break
        span = min(span * 4, most)
    raise ValueError(f"could not place the {n} forecast bars on the history's trading calendar within {span} steps "
                     f"of {_step_text(step)} after the last bar; pass freq explicitly")


def future_timestamps(index: pd.DatetimeIndex, pred_len: int,
                      freq: str | None = None) -> tuple[pd.DatetimeIndex, str]:
    """Timestamps of the ``pred_len`` bars after ``index[-1]`` and a short description of the rule used.

    With ``freq`` (a pandas alias) the bars are ``last + k*freq``. Otherwise a regular history gives
    its ``pd.infer_freq``; a monthly or weekly one its calendar offset; and a daily or intraday one with
    gaps (weekends, nights, lunch breaks) is continued on its median step, keeping only the
    (weekday, time of day) slots where the history has bars.
    """
    if freq:
        offset = parse_freq(freq)
        return _offset_range(index[-1], offset, pred_len), offset.freqstr
    if len(index) < 2:
        raise ValueError("at least 2 timestamps are needed to infer the frequency; pass freq explicitly")
    tail = index[-min(len(index), 20_000):].as_unit("ns")  # asi8 below counts nanoseconds
    with warnings.catch_warnings():  # pandas 3 warns that infer_freq will return an offset; to_offset takes both
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        inferred = pd.infer_freq(tail[-200:]) if len(tail) >= 3 else None
    if inferred:
        offset = to_offset(inferred)
        return _offset_range(index[-1], offset, pred_len), offset.freqstr
    steps = np.diff(tail.asi8)
    step = pd.Timedelta(int(np.median(steps)), unit="ns")
    if pd.Timedelta(days=27) <= step <= pd.Timedelta(days=32):
        offset = _monthly_offset(tail[-200:])
        return _offset_range(index[-1], offset, pred_len), offset.freqstr
    if pd.Timedelta(days=6) <= step <= pd.Timedelta(days=8):
        offset = pd.offsets.Week(weekday=int(tail[-1].weekday()))
        return _offset_range(index[-1], offset, pred_len), offset.freqstr
    calendar_known = tail[-1] - tail[0] >= pd.Timedelta(days=2)
    if step <= pd.Timedelta(days=1) and calendar_known and steps.max() > 1.5 * step.value:
        return _calendar_range(tail, step, pred_len), f"{_step_text(step)} on the history's trading calendar"
    return _offset_range(index[-1], step, pred_len), _step_text(step)


def _step_text(step: pd.Timedelta) -> str:
    if step == pd.Timedelta(days=1):
        return "1 day"
    try:
        return to_offset(step).freqstr
    except ValueError:
        return str(step)
