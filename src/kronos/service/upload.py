"""Guards on an uploaded table's raw bytes, checked before any parser sees them.

A CSV of a million commas is one header line of a million columns, and pandas spends minutes and
gigabytes on it; a small Parquet file can decompress to gigabytes. So the bytes are measured first,
with vectorised scans only: the header's column count, the longest line and the number of lines of
a CSV; the schema and row-group sizes (metadata only) of a Parquet file. The parse itself then runs
in a worker thread (:func:`parse_upload_in_thread`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

PARQUET_MAGIC = b"PAR1"
NEWLINE = ord("\n")
T = TypeVar("T")


class UploadRefused(ValueError):
    """A table refused before parsing; ``status`` is 413 (too big) or 422 (malformed)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


def check_table_bytes(data: bytes, name: str, *, max_bytes: int, max_columns: int, max_line_bytes: int,
                      max_rows: int, max_unpacked_bytes: int) -> None:
    """Raise :class:`UploadRefused` naming the limit when ``data`` is too big or too wide to parse."""
    if len(data) > max_bytes:
        raise UploadRefused(413, f"{name} is {len(data)} bytes; this server accepts at most {max_bytes} "
                                 "(max_body_bytes)")
    if data[:4] == PARQUET_MAGIC:
        _check_parquet(data, name, max_columns, max_rows, max_unpacked_bytes)
        return
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == NEWLINE)
    bounds = np.concatenate(([-1], ends, [len(raw)]))
    lengths = np.diff(bounds) - 1  # bytes per line, without its newline
    if lengths.max(initial=0) > max_line_bytes:
        line = int(np.argmax(lengths))
        raise UploadRefused(422, f"{name} line {line + 1} is {int(lengths[line])} bytes long; this server reads "
                                 f"lines of at most {max_line_bytes} bytes (max_line_bytes)")
    nonblank = np.flatnonzero(lengths > 1)  # a line holding more than a lone "\r"
    if len(nonblank) == 0:
        raise UploadRefused(422, f"{name}: is empty")
    first = int(nonblank[0])
    header = data[int(bounds[first]) + 1:int(bounds[first + 1])]
    columns = header.count(b",") + 1
    if columns > max_columns:
        raise UploadRefused(422, f"{name} header has {columns} columns; this server reads at most {max_columns} "
                                 "(max_columns): a timestamp, open, high, low, close, volume, amount and a few more")
    if len(nonblank) - 1 > max_rows:
        raise UploadRefused(413, f"{name} has {len(nonblank) - 1} data lines; this server accepts at most "
                                 f"{max_rows} bars (max_rows)")


def _check_parquet(data: bytes, name: str, max_columns: int, max_rows: int, max_unpacked_bytes: int) -> None:
    """Schema and sizes from the footer; then the columns as Arrow data with text kept dictionary-encoded,
    to bound what a dictionary of a few long strings repeated on every row would expand to in pandas."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        return  # the reader reports that pyarrow is needed
    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
    except Exception as exc:  # pyarrow raises several types for a corrupt footer
        raise UploadRefused(422, f"{name}: could not read as Parquet: {str(exc).splitlines()[0][:200]}") from exc
    if meta.num_columns > max_columns:
        raise UploadRefused(422, f"{name} has {meta.num_columns} columns; this server reads at most {max_columns} "
                                 "(max_columns)")
    if meta.num_rows > max_rows:
        raise UploadRefused(413, f"{name} has {meta.num_rows} rows; this server accepts at most {max_rows} bars "
                                 "(max_rows)")
    stored = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if stored > max_unpacked_bytes:
        raise UploadRefused(413, f"{name} unpacks to {stored} bytes; this server accepts at most "
                                 f"{max_unpacked_bytes}")
    try:
        schema = pq.read_schema(io.BytesIO(data))
        text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_binary(f.type)
                or pa.types.is_large_string(f.type) or pa.types.is_large_binary(f.type)]
        table = pq.read_table(io.BytesIO(data), read_dictionary=text)
    except Exception as exc:
        raise UploadRefused(422, f"{name}: could not read as Parquet: {str(exc).splitlines()[0][:200]}") from exc
    expanded = 0
    for field, column in zip(table.schema, table.columns):
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if pa.types.is_nested(kind):
            raise UploadRefused(422, f"{name} column '{field.name}' has type {kind}; bars are numbers, text or "
                                     "timestamps")
        if pa.types.is_dictionary(field.type):
            longest = max((pc.max(pc.binary_length(chunk.dictionary)).as_py() or 0 for chunk in column.chunks),
                          default=0)
            expanded += len(column) * (longest + 16)
        else:
            expanded += column.nbytes
    if expanded > max_unpacked_bytes:
        raise UploadRefused(413, f"{name} unpacks to about {expanded} bytes; this server accepts at most "
                                 f"{max_unpacked_bytes}")


async def in_worker(function: Callable[..., T], *args: Any) -> T:
    """Run CPU-heavy request work (parsing, calendars, charts) in a thread, keeping the event loop free."""
    return await asyncio.to_thread(function, *args)
