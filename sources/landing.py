"""Read one day of a landing zone into lines for the validation engine, keeping every
line accounted for.

Landing files are gzipped or plain JSON lines (``*.jsonl``, ``*.json``, ``*.ndjson``, each
optionally ``.gz``, in any letter case) or Parquet (``*.parquet``). Names starting with
``_`` or ``.`` are markers (``_SUCCESS``, ``.crc``) and are skipped, as everywhere in the
lake. Files are read whole through the lake (local or object storage), split into lines
by Arrow, and handed to ``sources.engine_validation`` as bytes with their file and line
number; nothing here looks at a line on its own. What is rejected here, per file:

- a compressed file cut short keeps the lines before the cut, and the rest is one
  ``truncated file`` reject naming the last good line;
- an unreadable Parquet file, or a file of another type, is one reject naming it.

A Parquet file's rows become JSON lines (one per row, numbered from 1), so that they go
through the same rules as JSON lines.
"""

from __future__ import annotations

import datetime as dt
import io
import posixpath
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reclake.lake import Lake, is_marker_file
from sources.bronze_schema import QUARANTINE_SCHEMA
from sources.engine_validation import LINES_SCHEMA, connect, stage_lines

JSON_LINES_SUFFIXES = (".jsonl", ".json", ".ndjson")
LANDING_SUFFIXES = (*JSON_LINES_SUFFIXES, *(s + ".gz" for s in JSON_LINES_SUFFIXES), ".parquet")
# Compressed bytes fed to the decompressor at a time: a cut keeps everything before it.
_GZIP_BLOCK = 1 << 20


class NoLandingDataError(FileNotFoundError):
    """Raised when a day has no landing files at all."""


@dataclass(frozen=True)
class LandingDay:
    """The raw content of one landing day.

    Attributes:
        lines: every line of every file, ``engine_validation.LINES_SCHEMA`` (blank lines
            included: the engine skips them); None when they were staged into DuckDB
            (``stage_landing_day``).
        rejects: what could not be read into lines (whole files, the rest of a cut file),
            ``bronze_schema.QUARANTINE_SCHEMA``.
        files: the landing files read, in order.
    """

    lines: pa.Table | None
    rejects: pa.Table
    files: list[str]


def read_landing_day(
    lake: Lake, source: str, day: dt.date, connection: duckdb.DuckDBPyConnection | None = None
) -> LandingDay:
    """Read every landing file of ``source`` for ``day`` into one table of lines.

    Args:
        lake: the lake.
        source: the source.
        day: the partition day.
        connection: DuckDB connection (``engine_validation.connect()``) that turns
            Parquet rows into JSON lines; None: a new one.

    Raises:
        NoLandingDataError: when the day has no landing files.
    """
    files = landing_files(lake, source, day)
    tables, rejects = [], []
    for lines, reject in _read_files(lake, files, connection or connect()):
        tables.extend([lines] if lines is not None else [])
        rejects.extend([reject] if reject is not None else [])
    lines = pa.concat_tables(tables) if tables else LINES_SCHEMA.empty_table()
    return LandingDay(lines=lines, rejects=pa.Table.from_pylist(rejects, schema=QUARANTINE_SCHEMA), files=files)


def stage_landing_day(lake: Lake, source: str, day: dt.date, connection: duckdb.DuckDBPyConnection) -> LandingDay:
    """Read every landing file of ``source`` for ``day`` into the DuckDB table
    ``landing_lines`` of ``connection`` (``LINES_SCHEMA``), one file at a time.

    The day's lines are then held by DuckDB, under its memory limit and spilled to disk
    above it, never all at once in Python: a day of any size is read in the memory of
    its largest file. Returns the ``LandingDay`` with ``lines`` None.

    Raises:
        NoLandingDataError: when the day has no landing files.
    """
    files = landing_files(lake, source, day)
    connection.execute("drop table if exists landing_lines")
    stage_lines(connection, LINES_SCHEMA.empty_table())  # the table, even for a day of rejected files
    rejects = []
    for lines, reject in _read_files(lake, files, connection):
        if lines is not None:
            stage_lines(connection, lines)
        rejects.extend([reject] if reject is not None else [])
    return LandingDay(lines=None, rejects=pa.Table.from_pylist(rejects, schema=QUARANTINE_SCHEMA), files=files)


def landing_files(lake: Lake, source: str, day: dt.date) -> list[str]:
    """The landing files of ``source`` for ``day``, markers left out, in read order.

    Raises:
        NoLandingDataError: when there are none.
    """
    folder = lake.landing_dir(source, day)
    files = [f for f in lake.list_files(folder) if not is_marker_file(posixpath.basename(f))]
    if not files:
        raise NoLandingDataError(f"no landing files for source {source!r} on {day}: looked in {folder}")
    return files


def _read_files(
    lake: Lake, files: list[str], connection: duckdb.DuckDBPyConnection
) -> Iterator[tuple[pa.Table | None, dict | None]]:
    """Each file's lines (``LINES_SCHEMA``, or None) and its reject (or None), file by file."""
    for index, url in enumerate(files):
        name = posixpath.basename(url)
        if not name.lower().endswith(LANDING_SUFFIXES):
            reason = f"not a landing file (read: {', '.join(LANDING_SUFFIXES)}): not read"
            yield None, _reject(name, 0, "<file>", reason)
        elif name.lower().endswith(".parquet"):
            try:
                yield _read_parquet_records(lake, url, index, connection), None
            except Exception as error:  # noqa: BLE001 - any unreadable file is one reject, named
                yield None, _reject(name, 0, "<file>", f"unreadable Parquet file: {error}")
        else:
            yield _read_jsonl_lines(lake, url, index)


def _read_jsonl_lines(lake: Lake, url: str, index: int) -> tuple[pa.Table, dict | None]:
    """The lines of one JSON-lines file (gzipped when its name ends in .gz), and the
    reject of a compressed file cut short (or None)."""
    name = posixpath.basename(url)
    data, error = lake.read_bytes(url), None
    if name.lower().endswith(".gz"):
        data, error = _gunzip(data)
    lines = pc.split_pattern(pa.array([data], pa.large_binary()), b"\n").flatten()
    if error is not None:
        lines = lines.slice(0, len(lines) - 1)  # the line the cut ran through
    table = _lines_table(lines, name, index)
    if error is None:
        return table, None
    reason = f"truncated file: unreadable after line {len(lines)} ({type(error).__name__}: {error})"
    return table, _reject(name, len(lines) + 1, "<file>", reason)


def _gunzip(data: bytes) -> tuple[bytes, Exception | None]:
    """Decompress gzip data (any number of members); returns what was read before an
    error and the error (EOFError for a file cut short), or None."""
    out: list[bytes] = []
    while data:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            for start in range(0, len(data), _GZIP_BLOCK):
                out.append(decompressor.decompress(data[start : start + _GZIP_BLOCK]))
                if decompressor.eof:
                    break
        except zlib.error as error:
            return b"".join(out), error
        if not decompressor.eof:
            return b"".join(out), EOFError("Compressed file ended before the end-of-stream marker was reached")
        data = decompressor.unused_data
        if not data.strip(b"\0"):  # padding after the last member, as gzip allows
            break
    return b"".join(out), None


def _read_parquet_records(lake: Lake, url: str, index: int, connection: duckdb.DuckDBPyConnection) -> pa.Table:
    """A Parquet landing file's rows as JSON lines (NaN read as null, timestamps as ISO
    text), numbered from 1."""
    table = pq.read_table(io.BytesIO(lake.read_bytes(url)))
    for position, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            column = table.column(position)
            table = table.set_column(position, field, pc.if_else(pc.is_nan(column), None, column))
    connection.register("parquet_landing", table)
    try:
        lines = connection.sql("select to_json(landing_row) from parquet_landing as landing_row").to_arrow_table()
    finally:
        connection.unregister("parquet_landing")
    return _lines_table(lines.column(0).cast(pa.large_binary()), posixpath.basename(url), index)


def _lines_table(lines: pa.Array | pa.ChunkedArray, name: str, index: int) -> pa.Table:
    count = len(lines)
    return pa.table(
        {
            "file_index": pa.array(np.full(count, index, dtype=np.int32)),
            "source_file": pa.repeat(pa.scalar(name, pa.string()), count),
            "line_number": pa.array(np.arange(1, count + 1, dtype=np.int64)),
            "line": lines,
        },
        schema=LINES_SCHEMA,
    )


def _reject(file: str, line: int, field: str, reason: str) -> dict:
    return {"source_file": file, "line_number": line, "field": field, "reason": reason, "raw": ""}
