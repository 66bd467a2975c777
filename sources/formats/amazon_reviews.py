"""Amazon product reviews (McAuley lab releases of 2018 and 2023) as rating interactions.

Layouts read, each plain or ``.gz``:

- JSON lines (``*.jsonl``, ``*.json``), one review per line, with either the 2023
  field names (``rating, title, text, asin, parent_asin, user_id, timestamp`` in
  milliseconds, ``helpful_vote, verified_purchase``) or the 2018 names (``overall,
  reviewerID, asin, unixReviewTime`` in seconds, ``summary, reviewText, vote`` (a
  string such as ``"1,234"``), ``verified``). A file's layout is taken from its first
  JSON object (within its first 1,000 lines): 2018 when that has ``reviewerID``,
  ``overall`` or ``unixReviewTime``, 2023 otherwise. Other fields (images, style, reviewer name, ...) are not kept.
- CSV (``*.csv``), RFC 4180 quoting (review text may hold commas, quotes and line
  breaks), with a header naming columns of either layout (e.g. the 2023 benchmark
  files ``user_id,parent_asin,rating,timestamp``). Headerless files (the 2018
  "ratings only" files) are read with ``csv_header=RATINGS_ONLY_2018_HEADER``.

Output, one row per review, under the 2023 names whatever the layout: ``user_id``,
``item_id`` (``parent_asin`` when present, else ``asin``; 2023 reviews of one product's
variants share a ``parent_asin``), ``rating`` (1..5), ``event_ts``; ``asin`` and
``parent_asin`` as id columns; features ``title``, ``text`` (text), ``helpful_vote``
(Int64; null when the 2018 ``vote`` is absent) and ``verified_purchase`` (Int64 0/1).
``clicked``, ``converted`` and prices are null (prices live in the metadata files).

Rejected: a line that is not a JSON object, a CSV record that cannot be parsed or has
the wrong field count, a missing ``user_id`` / item / ``rating`` / ``timestamp``, a
rating outside 1..5, a timestamp that is not an integer, a non-string id or text, a
vote that is not a non-negative integer, a verified flag that is not a boolean.
A reject's ``field`` uses the file's own field name (``reviewerID`` in 2018 files).

Review data is usually k-core filtered before training: ``sources.formats.k_core_filter``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sources.formats.canonical import DEFAULT_CHUNK_ROWS, ParsedChunk, SourceSpec, assemble, event_ids
from sources.formats.fields import (
    RowProblems,
    parse_bool,
    parse_epoch,
    parse_float,
    parse_int,
    parse_string,
)
from sources.formats.textfiles import (
    PathLike,
    batched,
    file_name,
    file_stem,
    iter_csv_records,
    iter_line_batches,
    plain_name,
)

NAME = "amazon_reviews"
OUTPUT_FIELDS = (
    "user_id",
    "asin",
    "parent_asin",
    "rating",
    "timestamp",
    "title",
    "text",
    "helpful_vote",
    "verified_purchase",
)
SPEC = SourceSpec(
    name=NAME,
    label_columns=("rating",),
    id_columns=("user_id", "item_id", "asin", "parent_asin"),
    features={"title": "text", "text": "text", "helpful_vote": "numerical", "verified_purchase": "numerical"},
)
# The 2018 "ratings only" CSV files have no header: item, user, rating, unix seconds.
RATINGS_ONLY_2018_HEADER = ("asin", "reviewerID", "overall", "unixReviewTime")
_ENCODING = "utf-8"
_STRING_FIELDS = ("user_id", "asin", "parent_asin", "title", "text")


@dataclass(frozen=True)
class _Layout:
    """One release's field names (source name -> output name) and time unit."""

    release: str
    fields: dict[str, str]
    micros_per_unit: int

    def source_name(self, output: str) -> str:
        """The file's own name for an output field (for reject messages)."""
        return next((source for source, out in self.fields.items() if out == output), output)


LAYOUT_2023 = _Layout("2023", {name: name for name in OUTPUT_FIELDS}, micros_per_unit=1_000)
LAYOUT_2018 = _Layout(
    "2018",
    {
        "reviewerID": "user_id",
        "asin": "asin",
        "overall": "rating",
        "unixReviewTime": "timestamp",
        "summary": "title",
        "reviewText": "text",
        "vote": "helpful_vote",
        "verified": "verified_purchase",
    },
    micros_per_unit=1_000_000,
)
_MARKERS_2018 = frozenset({"reviewerID", "overall", "unixReviewTime"})


def _layout_of(field_names: Sequence[str]) -> _Layout:
    """The 2018 layout when any of its distinctive names is present, else 2023."""
    return LAYOUT_2018 if _MARKERS_2018 & set(field_names) else LAYOUT_2023


def read(
    path: PathLike, *, csv_header: Sequence[str] | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[ParsedChunk]:
    """Parse one reviews file into chunks of at most ``chunk_rows`` input rows.

    Args:
        path: ``*.jsonl``/``*.json``/``*.csv``, optionally ``.gz``; local path or fsspec URL.
        csv_header: for a CSV without a header row, its column names (either layout).
        chunk_rows: input rows (JSON lines, CSV records) per chunk.

    Yields:
        ``ParsedChunk`` per batch of input rows; at least one.

    Raises:
        ValueError: an unsupported file type, or a CSV header lacking the user, item,
            rating or time column.
    """
    name = plain_name(path)
    if name.endswith((".jsonl", ".json")):
        yield from _read_json_lines(path, chunk_rows)
    elif name.endswith(".csv"):
        yield from _read_csv(path, csv_header, chunk_rows)
    else:
        raise ValueError(f"{file_name(path)}: expected a .jsonl, .json or .csv file (optionally .gz)")


def _json_layout(path: PathLike) -> _Layout:
    """The layout of the file's first JSON object (2023 when its first 1,000 lines hold none)."""
    for lines in iter_line_batches(path, encoding=_ENCODING, chunk_rows=1_000):
        for text in lines.texts:
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                return _layout_of(list(record))
        break
    return LAYOUT_2023


def _read_json_lines(path: PathLike, chunk_rows: int) -> Iterator[ParsedChunk]:
    layout = _json_layout(path)
    for lines in iter_line_batches(path, encoding=_ENCODING, chunk_rows=chunk_rows):
        problems = RowProblems(len(lines))
        problems.flag_line(~lines.decoded, f"not valid {_ENCODING}")
        records: list[dict | None] = []
        broken: dict[int, str] = {}
        for row, text in enumerate(lines.texts):
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                record, broken[row] = None, f"invalid JSON: {error.msg} (column {error.colno})"
            if record is not None and not isinstance(record, dict):
                record, broken[row] = None, f"expected a JSON object, got {type(record).__name__}"
            records.append(record)
        problems.flag_line(np.isin(np.arange(len(records)), list(broken)), broken)
        cells, wrong_types = _json_cells(records, layout)
        for field, rows in wrong_types.items():
            problems.flag(
                np.isin(np.arange(len(records)), rows), layout.source_name(field), "not a string", cells[field]
            )
        yield _parse(cells, problems, layout, lines.source_file, lines.numbers, lines.texts, file_stem(path))


def _json_cells(records: list[dict | None], layout: _Layout) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """Output-field cells (strings or ``None``) of each record, and rows with non-string ids/text."""
    columns: dict[str, list[str | None]] = {field: [] for field in OUTPUT_FIELDS}
    wrong_types: dict[str, list[int]] = {}
    for row, record in enumerate(records):
        found = {} if record is None else {layout.fields[k]: v for k, v in record.items() if k in layout.fields}
        for field in OUTPUT_FIELDS:
            value = found.get(field)
            if value is not None and field in _STRING_FIELDS and not isinstance(value, str):
                wrong_types.setdefault(field, []).append(row)
            columns[field].append(_as_text(value))
    return pd.DataFrame(columns, dtype="object"), wrong_types


def _as_text(value: object) -> str | None:
    """A JSON value as the text a CSV would hold (booleans as ``true``/``false``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def _read_csv(path: PathLike, csv_header: Sequence[str] | None, chunk_rows: int) -> Iterator[ParsedChunk]:
    records = iter_csv_records(path, _ENCODING)
    if csv_header is None:
        first = next(records, None)
        header = [] if first is None or first.fields is None else [f.lstrip("\ufeff") for f in first.fields]
    else:
        header = list(csv_header)
    layout = _layout_of(header)
    outputs = [layout.fields.get(column) for column in header]
    missing = [layout.source_name(f) for f in ("user_id", "rating", "timestamp") if f not in outputs]
    if "asin" not in outputs and "parent_asin" not in outputs:
        missing.append("asin or parent_asin")
    if missing:
        raise ValueError(f"{file_name(path)}: CSV header {header} lacks {', '.join(missing)}")
    for batch in batched(records, chunk_rows):
        problems = RowProblems(len(batch))
        problems.flag_line(np.array([not r.decoded for r in batch], dtype=bool), f"not valid {_ENCODING}")
        problems.flag_line(np.array([r.fields is None for r in batch], dtype=bool), [r.error or "" for r in batch])
        problems.flag_line(
            np.array([r.fields is not None and len(r.fields) != len(header) for r in batch], dtype=bool),
            [f"expected {len(header)} fields, got {len(r.fields or [])}" for r in batch],
        )
        rows = [
            r.fields if r.fields is not None and len(r.fields) == len(header) else [None] * len(header) for r in batch
        ]
        raw = pd.DataFrame(rows, columns=range(len(header)), dtype="object")
        cells = pd.DataFrame(
            {
                field: raw[outputs.index(field)].where(raw[outputs.index(field)] != "", None)
                if field in outputs
                else pd.Series([None] * len(batch), dtype="object")
                for field in OUTPUT_FIELDS
            }
        )
        numbers = np.array([r.number for r in batch], dtype="int64")
        yield _parse(cells, problems, layout, file_name(path), numbers, [r.text for r in batch], file_stem(path))


def _parse(
    cells: pd.DataFrame,
    problems: RowProblems,
    layout: _Layout,
    source_file: str,
    numbers: np.ndarray,
    raws: list[str],
    stem: str,
) -> ParsedChunk:
    """Validate and type one batch's output-field cells (strings or ``None``)."""
    name = layout.source_name
    user_id = parse_string(cells["user_id"], name("user_id"), problems, required=True)
    asin = parse_string(cells["asin"], name("asin"), problems)
    parent_asin = parse_string(cells["parent_asin"], name("parent_asin"), problems)
    item_id = parent_asin.where(parent_asin.notna(), asin)
    problems.flag(item_id.isna().to_numpy(), name("asin"), "missing (no asin or parent_asin)")
    votes = cells["helpful_vote"].str.replace(",", "", regex=False) if layout is LAYOUT_2018 else cells["helpful_vote"]
    columns = {
        "event_id": event_ids(NAME, stem, numbers),
        "event_ts": parse_epoch(
            cells["timestamp"], name("timestamp"), problems, micros_per_unit=layout.micros_per_unit
        ),
        "user_id": user_id,
        "item_id": item_id,
        "rating": parse_float(cells["rating"], name("rating"), problems, required=True, minimum=1, maximum=5),
        "asin": asin,
        "parent_asin": parent_asin,
        "title": parse_string(cells["title"], name("title"), problems),
        "text": parse_string(cells["text"], name("text"), problems),
        "helpful_vote": parse_int(votes, name("helpful_vote"), problems, minimum=0),
        "verified_purchase": parse_bool(cells["verified_purchase"], name("verified_purchase"), problems),
    }
    return ParsedChunk(
        frame=assemble(SPEC, columns, ~problems.bad), rejects=problems.rejects(source_file, numbers, raws)
    )
