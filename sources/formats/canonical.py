"""The canonical interaction layout every source parser emits, and its building blocks.

A parser turns a source's raw rows into frames whose first columns are
``CANONICAL_COLUMNS`` (same names, same dtypes for every source), followed by the
source's own id columns and feature columns as its ``SourceSpec`` lists them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reclake.contracts import event_pandas_dtypes
from sources.bronze_schema import QUARANTINE_COLUMNS

# Column -> pandas dtype, in output order: the event contract (reclake/contracts.py).
CANONICAL_COLUMNS: dict[str, str] = event_pandas_dtypes()

# Feature kind -> the dtypes its column may have.
FEATURE_KINDS: dict[str, tuple[str, ...]] = {
    "categorical": ("object",),
    "text": ("object",),
    "numerical": ("Int64", "float64"),
    "timestamp": ("datetime64[us]",),
}

DEFAULT_CHUNK_ROWS = 100_000
MICROSECONDS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class SourceSpec:
    """What one source contributes beyond the canonical columns.

    Attributes:
        name: the source name; also the prefix of every ``event_id``.
        label_columns: the canonical label columns this source fills (a subset of
            ``clicked``, ``converted``, ``rating``); the others stay null.
        id_columns: identifier columns: the canonical ``user_id`` / ``item_id`` when
            the source fills them, then the source's own identifiers (kept under
            their original names, after the canonical columns). Not model features.
        features: feature column -> kind (``categorical`` and ``text``: strings;
            ``numerical``: Int64 for integer fields, float64 otherwise; ``timestamp``).
    """

    name: str
    label_columns: tuple[str, ...]
    id_columns: tuple[str, ...]
    features: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown_labels = set(self.label_columns) - {"clicked", "converted", "rating"}
        if unknown_labels:
            raise ValueError(f"{self.name}: label columns must be canonical labels, got {sorted(unknown_labels)}")
        unknown_kinds = {c: k for c, k in self.features.items() if k not in FEATURE_KINDS}
        if unknown_kinds:
            raise ValueError(
                f"{self.name}: unknown feature kinds {unknown_kinds}; expected one of {list(FEATURE_KINDS)}"
            )
        clashes = set(self.features) & (set(CANONICAL_COLUMNS) | set(self.id_columns))
        if clashes:
            raise ValueError(f"{self.name}: feature columns reuse canonical or id names: {sorted(clashes)}")

    @property
    def own_id_columns(self) -> tuple[str, ...]:
        """The id columns that are not canonical columns, in output order."""
        return tuple(c for c in self.id_columns if c not in CANONICAL_COLUMNS)

    @property
    def columns(self) -> list[str]:
        """Every output column, in order: canonical, own ids, features."""
        return [*CANONICAL_COLUMNS, *self.own_id_columns, *self.features]


@dataclass(frozen=True)
class ParsedChunk:
    """One bounded piece of a parsed source.

    Attributes:
        frame: the rows that parsed, with ``SourceSpec.columns`` in order.
        rejects: the rows that did not, one per row, columns ``QUARANTINE_COLUMNS``
            (``source_file, line_number, field, reason, raw``).
    """

    frame: pd.DataFrame
    rejects: pd.DataFrame


def day_of(event_ts: pd.Series) -> pd.Series:
    """The UTC partition day (a ``datetime.date``) of each timestamp.

    Split a chunk into daily partitions with ``chunk.frame.groupby(day_of(chunk.frame["event_ts"]))``.
    """
    return event_ts.dt.date


def empty_rejects() -> pd.DataFrame:
    """A reject frame with no rows, in the quarantine layout."""
    return pd.DataFrame(
        {
            "source_file": pd.Series(dtype="object"),
            "line_number": pd.Series(dtype="int64"),
            "field": pd.Series(dtype="object"),
            "reason": pd.Series(dtype="object"),
            "raw": pd.Series(dtype="object"),
        },
        columns=QUARANTINE_COLUMNS,
    )


def event_ids(source: str, file_stem: str, line_numbers: np.ndarray) -> pd.Series:
    """Deterministic event ids ``<source>-<file stem>-<line>``, unique within a source."""
    return pd.Series([f"{source}-{file_stem}-{n}" for n in line_numbers], dtype="object")


def assemble(spec: SourceSpec, columns: Mapping[str, pd.Series], keep: np.ndarray) -> pd.DataFrame:
    """Build the output frame of a batch from its parsed columns.

    Args:
        spec: the source's spec; decides which columns exist and in what order.
        columns: parsed column name -> values (one per batch row). Canonical columns
            the source does not fill may be left out and come out null.
        keep: boolean mask of the batch rows that parsed.

    Returns:
        The kept rows, ``spec.columns`` in order, with canonical dtypes enforced.

    Raises:
        ValueError: when a spec column is missing or has a dtype its kind does not allow
            (a parser bug, not bad data).
    """
    size = len(keep)
    out: dict[str, pd.Series] = {}
    for name, dtype in CANONICAL_COLUMNS.items():
        values = columns.get(name)
        out[name] = pd.Series(
            [None] * size if values is None else values, dtype="object" if dtype == "object" else None
        )
        out[name] = out[name].reset_index(drop=True).astype(dtype)
    for name in spec.own_id_columns:
        out[name] = _column(spec, columns, name).reset_index(drop=True).astype("object")
    for name, kind in spec.features.items():
        values = _column(spec, columns, name).reset_index(drop=True)
        if str(values.dtype) not in FEATURE_KINDS[kind]:
            raise ValueError(f"{spec.name}: feature {name!r} ({kind}) has dtype {values.dtype}")
        out[name] = values
    lengths = {name: len(values) for name, values in out.items() if len(values) != size}
    if lengths:
        raise ValueError(f"{spec.name}: columns of the wrong length (batch has {size} rows): {lengths}")
    return pd.DataFrame(out).loc[keep].reset_index(drop=True)


def _column(spec: SourceSpec, columns: Mapping[str, pd.Series], name: str) -> pd.Series:
    if name not in columns:
        raise ValueError(f"{spec.name}: parser produced no column {name!r}")
    return columns[name]


@dataclass(frozen=True)
class RowOrderClock:
    """Synthesized timestamps for sources that log none, from row order alone.

    Data row ``r`` of a file (0-based, header and blank lines not counted, rejected
    rows counted) falls on day ``start_date + r // rows_per_day`` at
    ``(r % rows_per_day) * (86,400,000,000 // rows_per_day)`` microseconds after
    midnight UTC. The same row always gets the same timestamp, however the file is
    chunked, and order within the file is preserved.

    Attributes:
        start_date: the day of row 0.
        rows_per_day: rows per synthetic day, 1 to 86,400,000,000.
    """

    start_date: dt.date
    rows_per_day: int

    def __post_init__(self) -> None:
        if not 1 <= self.rows_per_day <= MICROSECONDS_PER_DAY:
            raise ValueError(f"rows_per_day must be between 1 and {MICROSECONDS_PER_DAY}, got {self.rows_per_day}")

    def timestamps(self, row_indices: np.ndarray) -> pd.Series:
        """The timestamp of each 0-based data-row index."""
        rows = np.asarray(row_indices, dtype="int64")
        step = MICROSECONDS_PER_DAY // self.rows_per_day
        offsets = (rows // self.rows_per_day) * MICROSECONDS_PER_DAY + (rows % self.rows_per_day) * step
        start = np.datetime64(self.start_date, "us")
        return pd.Series(start + offsets.astype("timedelta64[us]"), dtype="datetime64[us]")
