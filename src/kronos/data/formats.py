"""Table files in: CSV (separator and decimal comma found from the header), Parquet, JSON records or columns,
JSON lines, each possibly gzipped, from a path, ``-`` (standard input) or bytes, as a raw DataFrame.

Turning the frame into bars is :mod:`kronos.data.tables`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import TableError, first_line

PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_SUFFIXES = (".json",)
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
DATA_SUFFIXES = (*TEXT_SUFFIXES, *PARQUET_SUFFIXES, *JSON_SUFFIXES, *JSON_LINES_SUFFIXES)
FOLDER_SUFFIXES = (".csv", ".tsv", *PARQUET_SUFFIXES, *JSON_SUFFIXES, *JSON_LINES_SUFFIXES)  # files taken from folders
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"


def source_name(source: Any) -> str:
    """How messages name a source: its path, ``standard input`` for ``-``, else ``input``."""
    if isinstance(source, (str, os.PathLike)):
        return "standard input" if str(source) == STDIN else str(source)
    return "input"


def _decode(data: bytes, name: str) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:4096]:
        raise TableError(name, "is not a text table (CSV or JSON) nor Parquet: it holds binary data")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _sniff_csv(text: str) -> dict[str, Any]:
    """``sep``, ``decimal`` and ``thousands`` for ``pd.read_csv`` from the header and the first lines."""
    lines = [line for line in text[:65536].splitlines() if line.strip()][:50]
    header = lines[0] if lines else ""
    counts = {sep: header.count(sep) for sep in ("\t", ";", ",")}
    sep = max(counts, key=lambda s: (counts[s], s == ","))  # ties: comma
    if counts[sep] == 0:
        sep = ","
    kwargs: dict[str, Any] = {"sep": sep}
    body = "\n".join(lines[1:])
    # Commas between digits in a file not separated by commas are decimal commas, unless dots are decimal too.
    if sep != "," and re.search(r"\d,\d", body) and not re.search(r"\d\.\d+(" + re.escape(sep) + r"|$)", body,
                                                                 flags=re.M):
        kwargs["decimal"] = ","
        if re.search(r"\d{1,3}(\.\d{3})+,\d", body):
            kwargs["thousands"] = "."
    return kwargs


def _read_json(text: str, name: str, lines: bool | None) -> pd.DataFrame:
    """Records (``[{column: value}, ...]``, also wrapped as ``{"bars": [...]}``), columns (``{column: [values]}``)
    or, with ``lines`` (or when the whole text is not one JSON value), one record per line."""
    value = None
    if not lines:
        try:
            value = json.loads(text)
        except ValueError as exc:
            if lines is False:
                raise TableError(name, f"could not read as JSON: {first_line(exc)}") from None
            lines = True
    if lines:
        try:
            value = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise TableError(name, f"could not read as JSON or JSON lines: {first_line(exc)}") from None
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, list) and inner and all(isinstance(v, dict) for v in inner):
            value = inner  # {"bars": [{...}, ...]}
    if isinstance(value, list):
        if not all(isinstance(v, dict) for v in value):
            raise TableError(name, "JSON must be a list of records ({column: value}) or a mapping of columns "
                                   "({column: [values]})")
        return pd.DataFrame.from_records(value)
    if isinstance(value, dict):
        try:
            return pd.DataFrame(value)
        except ValueError as exc:
            raise TableError(name, f"JSON columns could not form a table: {first_line(exc)}") from None
    raise TableError(name, f"JSON must be a list of records or a mapping of columns, got {type(value).__name__}")


def parse_table(data: bytes, name: str = "input", kind: str | None = None) -> pd.DataFrame:
    """A DataFrame from the bytes of a table; ``kind`` is csv, parquet, json or jsonl (default: from content)."""
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise TableError(name, f"could not decompress gzip data: {first_line(exc)}") from None
    if not data.strip():
        raise TableError(name, "is empty")
    if kind is None:
        if data[:4] == PARQUET_MAGIC:
            kind = "parquet"
        else:
            start = data.lstrip()[:1]
            kind = "json" if start in (b"[", b"{") else "csv"
    if kind == "parquet":
        try:
            return pd.read_parquet(io.BytesIO(data))
        except ImportError as exc:
            raise ImportError("reading Parquet needs pyarrow: pip install 'kronos-kline[parquet]'") from exc
        except Exception as exc:  # pyarrow's own errors as well as ValueError, OSError
            raise TableError(name, f"could not read as Parquet: {first_line(exc)}") from None
    text = _decode(data, name)
    if kind in ("json", "jsonl"):
        return _read_json(text, name, True if kind == "jsonl" else None)
    try:
        frame = pd.read_csv(io.StringIO(text), skipinitialspace=True, **_sniff_csv(text))
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TableError(name, f"could not read as CSV: {first_line(exc)}") from None
    if frame.empty and len(frame.columns) == 0:
        raise TableError(name, "is empty")
    return frame


def read_table(source: str | os.PathLike | bytes, name: str | None = None) -> pd.DataFrame:
    """Read a table from a path (format from the extension, else the content), ``-`` (standard input) or bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return parse_table(bytes(source), name or "input")
    if str(source) == STDIN:
        return parse_table(sys.stdin.buffer.read(), name or "standard input")
    path = Path(source).expanduser()
    label = name or str(source)
    if not path.exists():
        raise FileNotFoundError(f"{label}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{label}: is a directory, expected a CSV, Parquet or JSON file")
    suffix = table_suffix(path)
    kind = ("parquet" if suffix in PARQUET_SUFFIXES else "json" if suffix in JSON_SUFFIXES
            else "jsonl" if suffix in JSON_LINES_SUFFIXES else None)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TableError(label, f"could not be read: {exc.strerror or first_line(exc)}") from None
    return parse_table(data, label, kind)


def expand_paths(paths: Sequence[str | os.PathLike] | str | os.PathLike, option: str = "data") -> list[Path]:
    """Files and folders (their table files, sorted) -> list of files; ``option`` names the argument in errors."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise TableError(None, "give at least one file or folder", "{0}", [(option, None)])
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and table_suffix(p) in FOLDER_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {path} has no {'/'.join(FOLDER_SUFFIXES)} files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return list(dict.fromkeys(files))


def table_suffix(path: Path) -> str:
    """A file's table suffix in lower case, looking through ``.gz``: ``prices.CSV.gz`` -> ``.csv``."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[-1] == ".gz":
        return suffixes[0]
    return path.suffix.lower()


def table_stem(path: str | os.PathLike) -> str:
    """A file's name without its table suffix (and ``.gz``): ``prices.csv.gz`` -> ``prices``."""
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in DATA_SUFFIXES else name
