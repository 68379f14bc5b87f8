"""The timestamps of the bars to forecast, on the series' own trading calendar.

With a pandas frequency the future bars are ``last + k*freq``. Otherwise the rule is inferred from the
history: its regular frequency, its monthly or weekly offset, or its median step on the (weekday, time
of day) slots where the history has bars, so weekends, nights and lunch breaks are skipped.

Daily and intraday bars of an exchange also skip its holidays and stop early on its early closes,
from the exchange's calendar in the maintained ``exchange_calendars`` library (holiday rules for some
fifty exchanges, kept up to date by its community; hand-written rules would drift). The calendar is
named (``calendar="XNYS"``) or detected: the exchange among :data:`DETECTED_CALENDARS` whose
holidays best explain the weekdays missing from the history (``calendar="none"`` turns this off).
Series with weekend bars (crypto, FX) are never given an exchange calendar.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

FREQ_EXAMPLES = "e.g. 5min, 15min, h, D, B, W-FRI, MS, ME"
# The longest horizon the command line and the service take: beyond it timestamps and memory grow. Exchange
# calendars are built far enough ahead for it once, so every horizon up to it reuses one calendar.
MAX_PRED_LEN = 4096
log = logging.getLogger("kronos.data.calendar")
# Tried in this order when no calendar is named (a tie goes to the earlier one: XNYS before XNAS-like twins).
DETECTED_CALENDARS = ("XNYS", "XLON", "XETR", "XTKS", "XHKG", "XSHG", "XKRX", "XTSE", "XASX", "XBOM")
NO_CALENDAR = "none"
DETECT_DAYS = 366  # the history's last year decides which exchange's holidays it skips
MIN_PRECISION = 0.8  # the history has no bars on at least this share of the calendar's holidays
MIN_RECALL = 0.5  # and the calendar explains at least this share of the missing weekdays


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


def _calendar_range(index: pd.DatetimeIndex, step: pd.Timedelta, n: int,
                    keep: Callable[[pd.DatetimeIndex], np.ndarray] | None = None) -> pd.DatetimeIndex:
    """The next ``n`` points of the grid ``last + k*step`` that fall on a (weekday, time) slot of the history
    (and that ``keep`` keeps: an exchange's sessions)."""
    slots, by_weekday = _allowed_slots(index)
    per_day = max(1, int(pd.Timedelta(days=1) / step))
    open_share = max(len(slots) / ((7 if by_weekday else 1) * per_day), 1e-3)
    most = max(CALENDAR_GRID_MIN, CALENDAR_GRID_PER_BAR * n)  # bounded by n, whatever the bars' spacing
    span = min(int(n / open_share) + 8 * per_day, most)
    for _ in range(6):
        grid = pd.date_range(index[-1] + step, periods=span, freq=step, unit="ns")
        chosen = grid[np.isin(_slot_codes(grid, by_weekday), slots)]
        if keep is not None:
            chosen = chosen[keep(chosen)]
        if len(chosen) >= n:
            return pd.DatetimeIndex(chosen[:n], name="timestamp")
        if span >= most:
            break
        span = min(span * 4, most)
    raise ValueError(f"could not place the {n} forecast bars on the history's trading calendar within {span} steps "
                     f"of {_step_text(step)} after the last bar; pass freq explicitly")


def future_timestamps(index: pd.DatetimeIndex, pred_len: int, freq: str | None = None,
                      calendar: str | None = None) -> tuple[pd.DatetimeIndex, str]:
    """Timestamps of the ``pred_len`` bars after ``index[-1]`` and a short description of the rule used.

    With ``freq`` (a pandas alias) the bars are ``last + k*freq``. Otherwise a regular history gives
    its ``pd.infer_freq``; a monthly or weekly one its calendar offset; and a daily or intraday one with
    gaps (weekends, nights, lunch breaks) is continued on its median step, keeping only the
    (weekday, time of day) slots where the history has bars.

    ``calendar``: an exchange (``"XNYS"``, any name ``exchange_calendars`` knows) whose holidays and early
    closes daily and intraday bars skip (with ``freq`` too); ``None`` detects it from the history (see the
    module docstring); ``"none"`` uses no exchange calendar. The rule says which calendar was used.
    """
    if len(index) == 0:
        raise ValueError("no timestamps to continue")
    try:
        future, rule = _future_timestamps(index, pred_len, freq, calendar)
        return future.as_unit("ns"), rule  # the unit of the history's timestamps, and its bounds
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        raise ValueError(f"the {pred_len} forecast bars after {index[-1]} would pass {pd.Timestamp.max.date()}, the "
                         "last date timestamps can hold") from None


def _future_timestamps(index: pd.DatetimeIndex, pred_len: int, freq: str | None,
                       calendar: str | None) -> tuple[pd.DatetimeIndex, str]:
    exchange, how = _choose_calendar(index, calendar)
    if freq:
        offset = parse_freq(freq)
        if exchange is None:
            return _offset_range(index[-1], offset, pred_len), offset.freqstr
        if offset.n == 1 and offset.freqstr in ("D", "B", "C"):
            return _sessions_after(exchange, index, pred_len), f"{offset.freqstr} on the {how}"
        step = pd.Timedelta(offset.nanos, unit="ns") if _is_tick(offset) else None
        if step is None or step > pd.Timedelta(days=1):
            return _offset_range(index[-1], offset, pred_len), offset.freqstr
        grid = _filtered_grid(index[-1], step, pred_len, _session_filter(exchange, index))
        return grid, f"{offset.freqstr} on the {how}"
    if len(index) < 2:
        raise ValueError("at least 2 timestamps are needed to infer the frequency; pass freq explicitly")
    tail = index[-min(len(index), 20_000):].as_unit("ns")  # asi8 below counts nanoseconds
    with warnings.catch_warnings():  # pandas 3 warns that infer_freq will return an offset; to_offset takes both
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        inferred = pd.infer_freq(tail[-200:]) if len(tail) >= 3 else None
    steps = np.diff(tail.asi8)
    step = pd.Timedelta(int(np.median(steps)), unit="ns")
    daily = pd.Timedelta(hours=20) <= step <= pd.Timedelta(days=1)
    if exchange is not None and daily:
        return _sessions_after(exchange, tail, pred_len), f"1 day on the {how}"
    if inferred and not (exchange is not None and step < pd.Timedelta(days=1)):
        offset = to_offset(inferred)
        return _offset_range(index[-1], offset, pred_len), offset.freqstr
    if pd.Timedelta(days=27) <= step <= pd.Timedelta(days=32):
        offset = _monthly_offset(tail[-200:])
        return _offset_range(index[-1], offset, pred_len), offset.freqstr
    if pd.Timedelta(days=6) <= step <= pd.Timedelta(days=8):
        offset = pd.offsets.Week(weekday=int(tail[-1].weekday()))
        return _offset_range(index[-1], offset, pred_len), offset.freqstr
    calendar_known = tail[-1] - tail[0] >= pd.Timedelta(days=2)
    if step <= pd.Timedelta(days=1) and calendar_known and (steps.max() > 1.5 * step.value or exchange is not None):
        keep = _session_filter(exchange, tail) if exchange is not None else None
        where = f"the history's trading calendar and the {how}" if exchange is not None else \
            "the history's trading calendar"
        return _calendar_range(tail, step, pred_len, keep), f"{_step_text(step)} on {where}"
    return _offset_range(index[-1], step, pred_len), _step_text(step)


def _is_tick(offset: pd.DateOffset) -> bool:
    try:
        return offset.nanos > 0
    except ValueError:  # a calendar offset (month, week, business day) has no fixed length
        return False


def _filtered_grid(last: pd.Timestamp, step: pd.Timedelta, n: int,
                   keep: Callable[[pd.DatetimeIndex], np.ndarray]) -> pd.DatetimeIndex:
    """The next ``n`` points of ``last + k*step`` that ``keep`` keeps."""
    span = max(4 * n, int(pd.Timedelta(days=10) / step))
    for _ in range(6):
        grid = pd.date_range(last + step, periods=span, freq=step, unit="ns")
        chosen = grid[keep(grid)]
        if len(chosen) >= n:
            return pd.DatetimeIndex(chosen[:n], name="timestamp")
        span *= 4
    raise ValueError(f"could not place the {n} forecast bars in the exchange's sessions; pass calendar='none'")


# -- exchange calendars ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Exchange:
    """An exchange calendar over a span of years: its session dates, early closes and hours (wall clock)."""

    name: str
    sessions: pd.DatetimeIndex  # midnight of each session date
    first: pd.Timestamp  # the span the calendar covers
    last: pd.Timestamp
    regular_open: pd.Timedelta  # the usual open and close, time of day in the exchange's time zone
    regular_close: pd.Timedelta
    regular_open_utc: pd.Timedelta  # and in UTC
    regular_close_utc: pd.Timedelta
    early_closes: pd.Series  # session date -> close time of day (local), early-close days only
    early_closes_utc: pd.Series


def _exchange_calendars():
    try:
        import exchange_calendars
    except ImportError:
        return None
    return exchange_calendars


@functools.lru_cache(maxsize=64)
def _exchange(name: str, first_year: int, last_year: int) -> _Exchange:
    """The calendar ``name`` from January 1 of ``first_year`` to December 31 of ``last_year`` (clamped to what the
    library covers); built once per process (building one takes a fraction of a second)."""
    xcals = _exchange_calendars()
    factory = xcals.calendar_utils.global_calendar_dispatcher
    cls_name = factory.resolve_alias(name)
    start, end = pd.Timestamp(f"{first_year}-01-01"), pd.Timestamp(f"{last_year}-12-31")
    cls = xcals.calendar_utils._default_calendar_factories.get(cls_name)
    bounds = (cls.bound_min(), cls.bound_max()) if cls is not None and hasattr(cls, "bound_min") else (None, None)
    if bounds[0] is not None:
        start = max(start, pd.Timestamp(bounds[0]))
    if bounds[1] is not None:
        end = min(end, pd.Timestamp(bounds[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = xcals.get_calendar(cls_name, start=start, end=end)
    def time_of_day(stamps: pd.Series, local: bool) -> pd.Series:
        wall = (stamps.dt.tz_convert(cal.tz) if local else stamps).dt.tz_localize(None)
        return wall - wall.dt.normalize()

    early = pd.DatetimeIndex(cal.early_closes).normalize()
    close_local, close_utc = time_of_day(cal.closes, True), time_of_day(cal.closes, False)
    return _Exchange(cls_name, pd.DatetimeIndex(cal.sessions).tz_localize(None).normalize(), cal.first_session,
                     cal.last_session, time_of_day(cal.opens, True).mode().iloc[0], close_local.mode().iloc[0],
                     time_of_day(cal.opens, False).mode().iloc[0], close_utc.mode().iloc[0],
                     close_local[close_local.index.isin(early)], close_utc[close_utc.index.isin(early)])


def _exchange_for(name: str, start: pd.Timestamp, end: pd.Timestamp) -> _Exchange:
    return _exchange(name, int(start.year), int(end.year))


def calendar_names() -> list[str]:
    """The exchange calendars that ``calendar=`` accepts (empty when ``exchange_calendars`` is not installed)."""
    xcals = _exchange_calendars()
    return sorted(xcals.get_calendar_names(include_aliases=False)) if xcals is not None else []


def check_calendar(calendar: str | None) -> str | None:
    """``calendar`` as the library names it (``nyse`` -> ``XNYS``), ``"none"`` or None; ValueError naming it."""
    if calendar is None or str(calendar).strip().lower() == NO_CALENDAR:
        return None if calendar is None else NO_CALENDAR
    xcals = _exchange_calendars()
    if xcals is None:
        raise ValueError(f"calendar {calendar!r} needs the exchange_calendars package: pip install exchange_calendars")
    name = str(calendar).strip().upper()
    names = set(xcals.get_calendar_names(include_aliases=True))
    if name not in names:
        raise ValueError(f"calendar {calendar!r} is not an exchange calendar of exchange_calendars (e.g. "
                         f"{', '.join(DETECTED_CALENDARS[:6])}; 'none' for no exchange calendar)")
    return xcals.calendar_utils.global_calendar_dispatcher.resolve_alias(name)


def _span(index: pd.DatetimeIndex) -> tuple[pd.Timestamp, pd.Timestamp]:
    last = index[-1].normalize()
    return max(index[0].normalize(), last - pd.Timedelta(days=DETECT_DAYS)), last


def _choose_calendar(index: pd.DatetimeIndex, calendar: str | None) -> tuple[_Exchange | None, str]:
    """The exchange calendar to use and how it is described: named, detected, or none."""
    name = check_calendar(calendar)
    if name == NO_CALENDAR:
        return None, ""
    if _exchange_calendars() is None:
        if calendar is None and not _has_weekend(index):
            log.info("exchange_calendars is not installed: forecast timestamps skip weekends but not holidays "
                     "(pip install exchange_calendars)")
        return None, ""
    if name is not None:
        start = min(index[0], index[-1] - pd.Timedelta(days=DETECT_DAYS))
        return _exchange_for(name, start, index[-1] + pd.Timedelta(days=366)), f"{name} calendar"
    found = detect_calendar(index)
    if found is None:
        return None, ""
    return _exchange_for(found, *_span(index)), f"{found} calendar (detected from the weekdays missing in the history)"


def _has_weekend(index: pd.DatetimeIndex) -> bool:
    start, last = _span(index)
    recent = index[index >= start]
    return bool((recent.day_of_week >= 5).any())


def detect_calendar(index: pd.DatetimeIndex) -> str | None:
    """The exchange of :data:`DETECTED_CALENDARS` whose holidays best explain the weekdays without bars in the
    history's last year, or None (no such weekdays, weekend bars, or no calendar explains them well).

    Scores each calendar by F1 between its closed weekdays and the missing weekdays; it must also close on
    the missing days mostly (``MIN_PRECISION``) and explain at least ``MIN_RECALL`` of them.
    """
    if _exchange_calendars() is None or len(index) < 2 or _has_weekend(index):
        return None
    start, last = _span(index)
    if last - start < pd.Timedelta(days=60):
        return None
    days = index[index >= start].normalize().unique()
    weekdays = pd.bdate_range(start, last)
    missing = weekdays.difference(days)
    if len(missing) < 2:
        return None
    best, best_score = None, 0.0
    for name in DETECTED_CALENDARS:
        try:
            exchange = _exchange_for(name, start, last + pd.Timedelta(days=366))
        except (ValueError, KeyError):  # a span the library does not cover for this exchange
            continue
        if exchange.first > start or exchange.last < last:
            continue
        closed = weekdays.difference(exchange.sessions)
        hits = len(closed.intersection(missing))
        if hits < 2 or hits < MIN_PRECISION * len(closed) or hits < MIN_RECALL * len(missing):
            continue
        score = 2 * hits / (len(closed) + len(missing))
        if score > best_score:
            best, best_score = name, score
        if score == 1.0:  # nothing explains the gaps better
            break
    return best


def _sessions_after(exchange: _Exchange, index: pd.DatetimeIndex, n: int) -> pd.DatetimeIndex:
    """The next ``n`` session dates after the last bar, at the last bar's time of day."""
    last = index[-1]
    exchange = _extend(exchange, last, n)
    later = exchange.sessions[exchange.sessions > last.normalize()][:n]
    if len(later) < n:
        raise ValueError(f"the {exchange.name} calendar of exchange_calendars covers sessions only up to "
                         f"{exchange.last.date()}; ask for fewer bars or pass calendar='none'")
    return pd.DatetimeIndex(later + (last - last.normalize()), name="timestamp").as_unit("ns")


def _extend(exchange: _Exchange, last: pd.Timestamp, n: int) -> _Exchange:
    """The same calendar built far enough ahead for ``n`` sessions after ``last``."""
    need = last + pd.Timedelta(days=int(n * 1.6) + 30)  # about 252 sessions a year, holidays included
    if exchange.last >= need:
        return exchange
    try:
        return _exchange(exchange.name, int(exchange.first.year), int(need.year) + 1)
    except ValueError:  # beyond what the library records for this exchange: use what there is
        return exchange


def _session_filter(exchange: _Exchange, index: pd.DatetimeIndex) -> Callable[[pd.DatetimeIndex], np.ndarray]:
    """Keeps grid points on session dates, and on early-close days only those before the early close (in the
    same relation to the close as the history's latest bars are to the regular close).

    The bars' clock is the exchange's wall clock or UTC, whichever puts the regular open and close nearer the
    history's earliest and latest times of day."""
    exchange = _extend(exchange, index[-1], MAX_PRED_LEN)
    times = index - index.normalize()
    earliest, latest = pd.Timedelta(times.min()), pd.Timedelta(times.max())
    local = (abs(earliest - exchange.regular_open) + abs(latest - exchange.regular_close)
             <= abs(earliest - exchange.regular_open_utc) + abs(latest - exchange.regular_close_utc))
    regular = exchange.regular_close if local else exchange.regular_close_utc
    early = exchange.early_closes if local else exchange.early_closes_utc
    allowance = latest - regular  # e.g. -1 min for bars stamped at their start, +4 h with extended hours

    def keep(points: pd.DatetimeIndex) -> np.ndarray:
        dates = points.normalize()
        ok = dates.isin(exchange.sessions)
        ok &= dates <= exchange.last
        if len(early):
            cut = pd.Series(dates).map(early).to_numpy()
            has = ~pd.isna(cut)
            tod = (points - dates).to_numpy()
            late = np.zeros(len(points), dtype=bool)
            late[has] = tod[has] > (cut[has].astype("timedelta64[ns]") + allowance.to_timedelta64())
            ok &= ~late
        return np.asarray(ok)

    return keep


def _step_text(step: pd.Timedelta) -> str:
    if step == pd.Timedelta(days=1):
        return "1 day"
    try:
        return to_offset(step).freqstr
    except ValueError:
        return str(step)
