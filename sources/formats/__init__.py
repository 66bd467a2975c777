"""Streaming parsers for public recommender and CTR data sets, into one interaction layout.

Plain Python with no Dagster imports. One module per source reads the source's raw
files in bounded memory (batches of ``chunk_rows`` input rows; only small side files
such as MovieLens users and movies, or iPinYou click BidIDs, are held whole) and
yields ``ParsedChunk(frame, rejects)``. No row is ever dropped silently: every input
row of the main file ends either in ``frame`` or in ``rejects`` (the quarantine layout
``source_file, line_number, field, reason, raw`` of ``sources.bronze_schema``), so for
that file ``input rows == frame rows + reject rows``.

Canonical columns, first in every frame, same dtypes for every source:

| column | dtype | meaning |
|---|---|---|
| ``event_id`` | string | ``<source>-<file stem>-<line number>``, unique within a source |
| ``event_ts`` | datetime64[us] | UTC, naive; synthesized from row order where the source has no time |
| ``user_id`` | string or null | null for Criteo, Avazu, AliExpress |
| ``item_id`` | string or null | null for Criteo, Avazu, AliExpress |
| ``clicked`` | Int64 0/1 or null | |
| ``converted`` | Int64 0/1 or null | |
| ``rating`` | float64 or null | |
| ``price``, ``bid_price``, ``market_price`` | float64 or null | |

Then the source's own id columns and feature columns under their original names
(lowercased, snake_case), as its module's ``SPEC`` (a ``SourceSpec``) lists them.

Sources (``FORMATS``): ``movielens``, ``criteo``, ``avazu``, ``amazon_reviews``,
``ipinyou``, ``multitask`` (AliExpress). Each module exports ``SPEC`` and
``read(path, **options) -> Iterator[ParsedChunk]``; its docstring gives the layout,
the options and what is rejected.

Typical use::

    for chunk in read_source("criteo", "day_0.gz"):
        for day, rows in chunk.frame.groupby(day_of(chunk.frame["event_ts"])):
            ...  # append rows to that day's partition
        ...  # append chunk.rejects to the quarantine
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, Protocol

from sources.formats import amazon_reviews, avazu, criteo, ipinyou, movielens, multitask
from sources.formats.canonical import CANONICAL_COLUMNS, FEATURE_KINDS, ParsedChunk, SourceSpec, day_of
from sources.formats.kcore import k_core_filter
from sources.formats.movielens import ChecksumMismatchError, fetch_movielens
from sources.formats.textfiles import PathLike


class SourceFormat(Protocol):
    """What every source module provides."""

    SPEC: SourceSpec

    def read(self, path: PathLike, **options: Any) -> Iterator[ParsedChunk]: ...


FORMATS: dict[str, SourceFormat] = {
    module.SPEC.name: module for module in (movielens, criteo, avazu, amazon_reviews, ipinyou, multitask)
}


def read_source(name: str, path: PathLike, **options: Any) -> Iterator[ParsedChunk]:
    """Parse ``path`` with the named source's reader.

    Args:
        name: a key of ``FORMATS``.
        path: what that reader takes (a file, or a folder for MovieLens).
        options: that reader's keyword options (``chunk_rows`` for all of them).

            Options named ``*_date`` may be ``YYYY-MM-DD`` strings (as configs write them).

    Raises:
        ValueError: an unknown source name, or a ``*_date`` option that is not a date.
    """
    if name not in FORMATS:
        raise ValueError(f"unknown source format {name!r}; known: {', '.join(sorted(FORMATS))}")
    for key, value in options.items():
        if key.endswith("_date") and isinstance(value, str):
            try:
                options[key] = dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"source {name!r}: option {key} must be a YYYY-MM-DD date, got {value!r}") from None
    return FORMATS[name].read(path, **options)


__all__ = [
    "CANONICAL_COLUMNS",
    "FEATURE_KINDS",
    "FORMATS",
    "ChecksumMismatchError",
    "ParsedChunk",
    "SourceFormat",
    "SourceSpec",
    "day_of",
    "fetch_movielens",
    "k_core_filter",
    "read_source",
]
