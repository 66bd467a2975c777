"""AliExpress multi-task (click and conversion) search logs, as released label-encoded.

Layout: comma-separated, no quoting, header ``search_id, categorical_1..categorical_16,
numerical_1..numerical_63, click, conversion``. Plain or ``.gz``. Each row is one item
shown in a search session (``search_id``); ``conversion`` is a purchase after a click.

Output: ``clicked`` = ``click``, ``converted`` = ``conversion``; ``search_id`` kept as an
id column; ``categorical_*`` as categorical strings (already label-encoded integers),
``numerical_*`` as float64. The release has no user or item ids (null here), no
ratings and no prices.

The release has no timestamps either: ``event_ts`` is synthesized from row order with
``RowOrderClock(start_date, rows_per_day)``. The default ``rows_per_day`` of 86,400,000
spaces rows one millisecond apart, so a file of fewer than 86.4 million rows (every
released country file) lies within ``start_date``, in file order. Give the test file a
later ``start_date`` than the train file to keep them in separate partitions.

Rejected: wrong field count, empty ``search_id``, a ``categorical_*`` that is not an
integer, a ``numerical_*`` that is not a finite number, ``click`` / ``conversion`` not
0/1, a conversion without a click, bytes that are not UTF-8.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd

from sources.formats.canonical import DEFAULT_CHUNK_ROWS, ParsedChunk, RowOrderClock, SourceSpec, assemble, event_ids
from sources.formats.fields import cell_columns, parse_flag, parse_float, parse_int, parse_string, structural_problems
from sources.formats.textfiles import LineBatch, PathLike, file_name, file_stem, iter_line_batches, read_header

NAME = "multitask"
CATEGORICAL_COLUMNS: list[str] = [f"categorical_{n}" for n in range(1, 17)]
NUMERICAL_COLUMNS: list[str] = [f"numerical_{n}" for n in range(1, 64)]
COLUMNS: list[str] = ["search_id", *CATEGORICAL_COLUMNS, *NUMERICAL_COLUMNS, "click", "conversion"]
SPEC = SourceSpec(
    name=NAME,
    label_columns=("clicked", "converted"),
    id_columns=("search_id",),
    features={
        **{c: "categorical" for c in CATEGORICAL_COLUMNS},
        **{c: "numerical" for c in NUMERICAL_COLUMNS},
    },
)

# The release has no dates; day 0 of the synthesized clock is this fixed anchor.
DEFAULT_START_DATE = dt.date(2018, 1, 1)
DEFAULT_ROWS_PER_DAY = 86_400_000
_ENCODING = "utf-8"


def read(
    path: PathLike,
    *,
    start_date: dt.date = DEFAULT_START_DATE,
    rows_per_day: int = DEFAULT_ROWS_PER_DAY,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[ParsedChunk]:
    """Parse one AliExpress multi-task CSV into chunks of at most ``chunk_rows`` input rows.

    Args:
        path: a train or test CSV (``.gz`` or not); local path or fsspec URL.
        start_date: the day of the first row.
        rows_per_day: rows per synthesized day.
        chunk_rows: input rows per chunk.

    Yields:
        ``ParsedChunk`` per batch of input rows; at least one.

    Raises:
        ValueError: when the header is not the AliExpress layout.
    """
    clock = RowOrderClock(start_date, rows_per_day)
    header = read_header(path, _ENCODING)
    if header is None or header.split(",") != COLUMNS:
        raise ValueError(
            f"{file_name(path)}: expected the AliExpress header search_id, categorical_1..16, "
            f"numerical_1..63, click, conversion; found {None if header is None else header[:120]!r}"
        )
    next_row = 0
    for lines in iter_line_batches(path, encoding=_ENCODING, chunk_rows=chunk_rows, skip_header=True):
        timestamps = clock.timestamps(np.arange(next_row, next_row + len(lines)))
        next_row += len(lines)
        yield _parse(lines.split(",", len(COLUMNS)), timestamps, file_stem(path))


def _parse(batch: LineBatch, timestamps: pd.Series, stem: str) -> ParsedChunk:
    problems = structural_problems(batch, len(COLUMNS), _ENCODING)
    cells = cell_columns(batch, COLUMNS)
    clicked = parse_flag(cells["click"], "click", problems)
    converted = parse_flag(cells["conversion"], "conversion", problems)
    problems.flag(
        (converted.fillna(0) > clicked.fillna(1)).to_numpy(dtype=bool), "conversion", "conversion without a click"
    )
    columns = {
        "event_id": event_ids(NAME, stem, batch.line_numbers),
        "event_ts": timestamps,
        "clicked": clicked,
        "converted": converted,
        "search_id": parse_string(cells["search_id"], "search_id", problems, required=True),
    }
    for column in CATEGORICAL_COLUMNS:
        parse_int(cells[column], column, problems)
        columns[column] = parse_string(cells[column], column, problems)
    for column in NUMERICAL_COLUMNS:
        columns[column] = parse_float(cells[column], column, problems)
    return ParsedChunk(
        frame=assemble(SPEC, columns, ~problems.bad),
        rejects=problems.rejects(batch.source_file, batch.line_numbers, batch.raws),
    )
