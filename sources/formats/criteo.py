"""Criteo display-advertising click logs (Kaggle challenge and terabyte release).

Layouts read:

- raw: tab-separated, no header, 40 fields per line: ``label`` (0/1), ``I1``..``I13``
  (integers, mostly counts; may be negative) and ``C1``..``C26`` (categorical values
  hashed to 8 hex digits); an empty field is a missing value. Plain or ``.gz``. Either
  one file of consecutive days (Kaggle ``train.txt``: 45,840,617 rows, 7 days, rows in
  chronological order) or one file per day (terabyte ``day_0`` .. ``day_23``).
- CSV: the same 40 fields comma-separated after a header ``label,I1,..,C26``, with
  integers possibly written as floats (``260.0``). Chosen by a ``.csv`` / ``.csv.gz`` name.

Output: ``clicked`` = ``label``; features ``i1``..``i13`` (numerical, Int64) and
``c1``..``c26`` (categorical); no user, item, rating or prices.

Criteo logs carry no timestamps. ``event_ts`` is synthesized from row order (see
``RowOrderClock``): data row ``r`` of a single file falls on day
``start_date + r // rows_per_day``; every row of a terabyte ``day_N`` file falls on day
``start_date + N``. Within a day, rows are spread evenly over 24 hours in file order.

Rejected: wrong field count, label not 0/1, an I-field that is not an integer
(fractional values included), bytes that are not UTF-8.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import numpy as np
import pandas as pd

from sources.formats.canonical import (
    DEFAULT_CHUNK_ROWS,
    ParsedChunk,
    RowOrderClock,
    SourceSpec,
    assemble,
    event_ids,
)
from sources.formats.fields import cell_columns, parse_flag, parse_int, parse_string, structural_problems
from sources.formats.textfiles import (
    LineBatch,
    PathLike,
    file_name,
    file_stem,
    iter_line_batches,
    plain_name,
    read_header,
)

NAME = "criteo"
RAW_COLUMNS: list[str] = ["label", *(f"I{n}" for n in range(1, 14)), *(f"C{n}" for n in range(1, 27))]
SPEC = SourceSpec(
    name=NAME,
    label_columns=("clicked",),
    id_columns=(),
    features={
        **{f"i{n}": "numerical" for n in range(1, 14)},
        **{f"c{n}": "categorical" for n in range(1, 27)},
    },
)

# Criteo publishes no calendar dates; day 0 of the synthesized clock is this fixed anchor.
DEFAULT_START_DATE = dt.date(2014, 1, 1)
# Kaggle train.txt: 45,840,617 rows over 7 days; ceil(45,840,617 / 7) keeps the 7th day last.
KAGGLE_ROWS_PER_DAY = 6_548_660
# Terabyte day files hold about 180 million rows each (4.37 billion over 24 days); the
# clock spacing must leave room for the largest day, hence this upper bound.
TERABYTE_ROWS_PER_DAY = 250_000_000
_DAY_FILE = re.compile(r"day_(\d+)")
_ENCODING = "utf-8"


def read(
    path: PathLike,
    *,
    start_date: dt.date = DEFAULT_START_DATE,
    rows_per_day: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[ParsedChunk]:
    """Parse one Criteo file into chunks of at most ``chunk_rows`` input rows.

    Args:
        path: a raw TSV file (``train.txt``, ``day_3``, ``day_3.gz``, ...) or a headered
            CSV (``*.csv``, ``*.csv.gz``); local path or fsspec URL.
        start_date: the calendar day of the first day.
        rows_per_day: rows per synthesized day. Default: ``KAGGLE_ROWS_PER_DAY`` for a
            single file, ``TERABYTE_ROWS_PER_DAY`` for a ``day_N`` file.
        chunk_rows: input rows per chunk.

    Yields:
        ``ParsedChunk`` per batch of input rows; at least one.

    Raises:
        ValueError: a CSV whose header is not ``label,I1..I13,C1..C26``, or a ``day_N``
            file with more than ``rows_per_day`` rows (its clock would leave the day).
    """
    name = plain_name(path)
    day_file = _DAY_FILE.fullmatch(name)
    if day_file:
        day = start_date + dt.timedelta(days=int(day_file.group(1)))
        clock = RowOrderClock(day, rows_per_day or TERABYTE_ROWS_PER_DAY)
    else:
        clock = RowOrderClock(start_date, rows_per_day or KAGGLE_ROWS_PER_DAY)
    is_csv = name.endswith(".csv")
    if is_csv:
        _check_header(path, read_header(path, _ENCODING))
    next_row = 0
    for lines in iter_line_batches(path, encoding=_ENCODING, chunk_rows=chunk_rows, skip_header=is_csv):
        rows = np.arange(next_row, next_row + len(lines))
        next_row += len(lines)
        if day_file and next_row > clock.rows_per_day:
            raise ValueError(
                f"{file_name(path)} has more than rows_per_day={clock.rows_per_day} rows; "
                "pass a larger rows_per_day so that the whole file fits in its day"
            )
        batch = lines.split("," if is_csv else "\t", len(RAW_COLUMNS))
        yield _parse(batch, clock.timestamps(rows), file_stem(path), float_notation=is_csv)


def _check_header(path: PathLike, header: str | None) -> None:
    expected = ",".join(RAW_COLUMNS)
    if header != expected:
        raise ValueError(f"{file_name(path)}: expected the Criteo CSV header {expected!r}, found {header!r}")


def _parse(batch: LineBatch, timestamps: pd.Series, stem: str, *, float_notation: bool) -> ParsedChunk:
    problems = structural_problems(batch, len(RAW_COLUMNS), _ENCODING)
    cells = cell_columns(batch, RAW_COLUMNS)
    columns = {
        "event_id": event_ids(NAME, stem, batch.line_numbers),
        "event_ts": timestamps,
        "clicked": parse_flag(cells["label"], "label", problems, float_notation=float_notation),
    }
    for n in range(1, 14):
        columns[f"i{n}"] = parse_int(cells[f"I{n}"], f"I{n}", problems, float_notation=float_notation)
    for n in range(1, 27):
        columns[f"c{n}"] = parse_string(cells[f"C{n}"], f"C{n}", problems)
    return ParsedChunk(
        frame=assemble(SPEC, columns, ~problems.bad),
        rejects=problems.rejects(batch.source_file, batch.line_numbers, batch.raws),
    )
