"""Dates read as written, or refused: real daily US bars reshaped into a European export (day first,
``;`` and decimal commas, German headers), a US export (month first), and files that cannot tell."""

from __future__ import annotations

import pandas as pd
import pytest

from kronos.data.tables import TableError, command_line_option, option_style, read_series

from .conftest import read_bars

GERMAN = {"open": "Eröffnung", "high": "Hoch", "low": "Tief", "close": "Schluss", "volume": "Volumen"}


@pytest.fixture(scope="module")
def aapl() -> pd.DataFrame:
    return read_bars("bokeh_AAPL_1d.csv").tail(400).reset_index(drop=True)


def european(bars: pd.DataFrame, date_format: str = "%d.%m.%Y") -> bytes:
    """The bars as a German broker exports them: Datum;Eröffnung;... with 10.04.2015 dates and decimal commas."""
    frame = pd.DataFrame({"Datum": bars.timestamps.dt.strftime(date_format),
                          **{GERMAN[c]: bars[c] for c in GERMAN}})
    return frame.to_csv(sep=";", decimal=",", index=False).encode("utf-8")


def american(bars: pd.DataFrame, date_format: str = "%m/%d/%Y") -> bytes:
    frame = pd.DataFrame({"Date": bars.timestamps.dt.strftime(date_format),
                          **{c.title(): bars[c] for c in ("open", "high", "low", "close", "volume")}})
    return frame.to_csv(index=False).encode()


def test_a_european_export_is_read_day_first_with_its_prices(aapl, caplog):
    data = european(aapl)
    assert data.startswith("Datum;Eröffnung;Hoch;Tief;Schluss;Volumen\n".encode())
    assert b"," in data.splitlines()[1]  # decimal commas
    with caplog.at_level("INFO", logger="kronos.data.tables"):
        series = read_series(data, "export.csv")[0]
    assert list(series.timestamps) == list(aapl.timestamps)
    assert series.bars[:, 3].tolist() == pytest.approx(aapl.close.tolist(), rel=1e-6)
    assert "read day first" in caplog.text


def test_a_us_export_is_read_month_first(aapl):
    series = read_series(american(aapl), "us.csv")[0]
    assert list(series.timestamps) == list(aapl.timestamps)


def test_day_first_dates_with_a_time_of_day_and_two_digit_years(aapl):
    bars = aapl.assign(timestamps=aapl.timestamps + pd.Timedelta(hours=17, minutes=30))
    series = read_series(european(bars, "%d.%m.%y %H:%M"), "export.csv")[0]
    assert list(series.timestamps) == list(bars.timestamps)


def days_up_to_twelve(bars: pd.DataFrame) -> pd.DataFrame:
    """Only the real bars whose day of the month is 12 or less: no field tells day from month."""
    return bars[bars.timestamps.dt.day <= 12].reset_index(drop=True)


def test_when_no_field_is_above_12_the_reading_in_time_order_is_taken(aapl, caplog):
    bars = days_up_to_twelve(aapl)
    assert bars.timestamps.dt.month.nunique() > 6
    with caplog.at_level("INFO", logger="kronos.data.tables"):
        day_first = read_series(european(bars), "export.csv")[0]
        month_first = read_series(american(bars), "us.csv")[0]
    assert list(day_first.timestamps) == list(bars.timestamps)
    assert list(month_first.timestamps) == list(bars.timestamps)
    assert "only that reading puts the rows in time order" in caplog.text


def test_a_file_that_cannot_tell_is_refused_naming_the_column_and_the_options(aapl):
    # The first trading days of one month: day first (March 1, 2, 5 ...) and month first (January 3,
    # February 3, May 3 ...) are both valid and both in time order.
    bars = aapl[(aapl.timestamps >= "2012-03-01") & (aapl.timestamps <= "2012-03-12")]
    with pytest.raises(TableError) as caught:
        read_series(european(bars), "export.csv")
    message = str(caught.value)
    assert "export.csv: column 'date'" in message and "both readings are in time order" in message
    assert "dayfirst=True" in message and "dayfirst=False" in message and "date_format='%d.%m.%Y'" in message
    assert "sort" not in message
    with option_style(command_line_option):
        assert "--dayfirst, --no-dayfirst or --date-format %d.%m.%Y" in caught.value.phrased()
    # Told, it reads as asked.
    told = read_series(european(bars), "export.csv", dayfirst=True)[0]
    assert list(told.timestamps) == list(bars.timestamps)
    formatted = read_series(european(bars), "export.csv", date_format="%d.%m.%Y")[0]
    assert list(formatted.timestamps) == list(bars.timestamps)


def test_a_misread_is_never_offered_sort(aapl):
    # Month-first dates forced day first, where every field is <= 12: out of order only because misread.
    bars = days_up_to_twelve(aapl)
    with pytest.raises(TableError) as caught:
        read_series(american(bars), "us.csv", dayfirst=True)
    message = str(caught.value)
    assert "in order read month first" in message and "dayfirst=False" in message
    assert "sort" not in message


def test_a_forced_reading_that_gives_month_13_names_the_row_and_the_other_reading(aapl):
    with pytest.raises(TableError) as caught:
        read_series(european(aapl), "export.csv", dayfirst=False)
    message = str(caught.value)
    assert "export.csv: column 'date' row 0:" in message and "dayfirst=True" in message


def test_a_value_not_matching_date_format_names_it(aapl):
    with pytest.raises(TableError) as caught:
        read_series(american(aapl), "us.csv", date_format="%d.%m.%Y")
    assert "us.csv: column 'date' row 0:" in str(caught.value) and "date_format" in str(caught.value)


def test_dates_mixing_both_orders_are_refused(aapl):
    data = european(aapl.iloc[:30]).decode().splitlines()
    day, month, year = data[1].split(";")[0].split(".")
    data[1] = data[1].replace(f"{day}.{month}.{year}", f"{month}.13.{year}", 1)
    data[2] = data[2].replace(data[2].split(";")[0], "25.01.2013", 1)
    with pytest.raises(TableError, match="mixes day-first dates .* and month-first dates"):
        read_series("\n".join(data).encode(), "mixed.csv")


@pytest.mark.parametrize("options, words", [
    ({"dayfirst": "yes"}, "dayfirst must be True, False or None"),
    ({"date_format": "dd.mm.yyyy"}, "date_format must be a strftime format"),
    ({"date_format": "%d.%m.%Y", "dayfirst": True}, "not both"),
])
def test_bad_date_options_are_one_line(aapl, options, words):
    with pytest.raises(TableError, match=words):
        read_series(european(aapl), "export.csv", **options)


def test_forecast_df_takes_the_date_options(tiny_predictor, aapl, one_thread):
    import io

    bars = aapl[(aapl.timestamps >= "2012-03-01") & (aapl.timestamps <= "2012-03-12")]
    frame = pd.read_csv(io.BytesIO(european(bars)), sep=";", decimal=",")  # Datum stays text
    with pytest.raises(TableError, match="dayfirst="):
        tiny_predictor.forecast_df(frame, pred_len=2, timestamp_column="Datum")
    out = tiny_predictor.forecast_df(frame, pred_len=2, timestamp_column="Datum", dayfirst=True, sample_count=2,
                                     seed=0, calibrate=False, calendar="XNYS")
    assert sorted(set(pd.to_datetime(out.timestamp))) == [pd.Timestamp("2012-03-13"), pd.Timestamp("2012-03-14")]
