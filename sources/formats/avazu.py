"""Avazu mobile-ads click logs (Kaggle CTR prediction challenge).

Layout: comma-separated, no quoting, header
``id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,
app_category,device_id,device_ip,device_model,device_type,device_conn_type,C14..C21``
(the test file has no ``click``). Plain or ``.gz``.

``hour`` is ``YYMMDDHH`` in UTC (as the challenge page states): ``event_ts`` is the
start of that hour, so every row of an hour shares one timestamp; partition by
``day_of(event_ts)``. ``hour_of_day`` (0..23) is kept as a feature. ``clicked`` =
``click`` (null for the test file). ``id`` (a 20-digit ad id) is kept as an id column.
The other fields are anonymised categorical values, kept as strings under their
lowercased names (``c1``, ``c14``..``c21``). No user, item, rating or prices.

Rejected: wrong field count, empty ``id``, ``click`` not 0/1, ``hour`` not a valid
``YYMMDDHH``, bytes that are not UTF-8.
"""

from __future__ import annotations

from collections.abc import Iterator

from sources.formats.canonical import DEFAULT_CHUNK_ROWS, ParsedChunk, SourceSpec, assemble, event_ids
from sources.formats.fields import cell_columns, parse_compact_time, parse_flag, parse_string, structural_problems
from sources.formats.textfiles import LineBatch, PathLike, file_name, file_stem, iter_line_batches, read_header

NAME = "avazu"
CATEGORICAL_COLUMNS: list[str] = [
    "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
    "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
    *(f"C{n}" for n in range(14, 22)),
]  # fmt: skip
TRAIN_COLUMNS: list[str] = ["id", "click", "hour", *CATEGORICAL_COLUMNS]
TEST_COLUMNS: list[str] = ["id", "hour", *CATEGORICAL_COLUMNS]
SPEC = SourceSpec(
    name=NAME,
    label_columns=("clicked",),
    id_columns=("id",),
    features={"hour_of_day": "numerical", **{c.lower(): "categorical" for c in CATEGORICAL_COLUMNS}},
)
_ENCODING = "utf-8"


def read(path: PathLike, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[ParsedChunk]:
    """Parse one Avazu CSV (train or test layout) into chunks of at most ``chunk_rows`` rows.

    Args:
        path: ``train.csv``, ``test.csv``, a sample, ``.gz`` or not; local path or fsspec URL.
        chunk_rows: input rows per chunk.

    Yields:
        ``ParsedChunk`` per batch of input rows; at least one.

    Raises:
        ValueError: when the header is neither the train nor the test layout.
    """
    header = read_header(path, _ENCODING)
    names = [] if header is None else header.split(",")
    if names not in (TRAIN_COLUMNS, TEST_COLUMNS):
        raise ValueError(
            f"{file_name(path)}: expected the Avazu header {','.join(TRAIN_COLUMNS)!r} "
            f"(or the test layout without 'click'), found {header!r}"
        )
    for lines in iter_line_batches(path, encoding=_ENCODING, chunk_rows=chunk_rows, skip_header=True):
        yield _parse(lines.split(",", len(names)), names, file_stem(path))


def _parse(batch: LineBatch, names: list[str], stem: str) -> ParsedChunk:
    problems = structural_problems(batch, len(names), _ENCODING)
    cells = cell_columns(batch, names)
    event_ts = parse_compact_time(cells["hour"], "hour", problems, layout="%y%m%d%H", digits=8)
    columns = {
        "event_id": event_ids(NAME, stem, batch.line_numbers),
        "event_ts": event_ts,
        "clicked": parse_flag(cells["click"], "click", problems) if "click" in cells else None,
        "id": parse_string(cells["id"], "id", problems, required=True),
        "hour_of_day": event_ts.dt.hour.astype("Int64"),
        **{c.lower(): parse_string(cells[c], c, problems) for c in CATEGORICAL_COLUMNS},
    }
    return ParsedChunk(
        frame=assemble(SPEC, {k: v for k, v in columns.items() if v is not None}, ~problems.bad),
        rejects=problems.rejects(batch.source_file, batch.line_numbers, batch.raws),
    )
