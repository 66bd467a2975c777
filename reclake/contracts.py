"""The event contract, declared once: the canonical columns every source's events carry.

Every source's bronze ``events`` (and so ``fct_events``) starts with these columns, in
this order; a source that lacks one leaves it null, and the feature spec appends the
source's own columns after them. What reads this:

- ``sources.bronze_schema`` builds the bronze rules (run as SQL by ``sources.engine_validation``) from it (types, binary
  labels, non-negative prices): the authoritative row-level check;
- ``sources.formats.canonical`` gives the parsers' output these columns and dtypes;
- ``monitoring.data_quality`` builds the Great Expectations suites' column expectations;
- ``reclake.feature_spec`` passes the list to dbt (the ``canonical_columns`` var), whose
  staging model selects them.
"""

from __future__ import annotations

EVENT_COLUMN_KINDS: dict[str, str] = {
    "event_id": "string",
    "event_ts": "timestamp",
    "user_id": "string",
    "item_id": "string",
    "clicked": "int",
    "converted": "int",
    "rating": "float",
    "price": "float",
    "bid_price": "float",
    "market_price": "float",
}
"""Canonical column -> kind (``string``, ``timestamp``, ``int``, ``float``), in bronze order."""

PANDAS_DTYPES: dict[str, str] = {"string": "object", "timestamp": "datetime64[us]", "int": "Int64", "float": "float64"}
"""Kind -> the pandas dtype a column of that kind has in memory (strings are ``object``
columns holding ``str`` or ``None``)."""

BINARY_LABELS: tuple[str, ...] = ("clicked", "converted")
"""Canonical labels that are 0 or 1."""

LABELS: tuple[str, ...] = (*BINARY_LABELS, "rating")
"""Every canonical label column."""

PRICES: tuple[str, ...] = ("price", "bid_price", "market_price")
"""Canonical prices: non-negative when present."""

DERIVED_RANGES: dict[str, tuple[int, int]] = {"hour_of_day": (0, 23), "day_of_week": (0, 6)}
"""Columns dbt derives from ``event_ts`` for every source, with their inclusive ranges."""


SQL_TYPES: dict[str, str] = {"string": "string", "timestamp": "timestamp", "int": "bigint", "float": "double"}
"""Kind -> the SQL type dbt casts a column of that kind to (DuckDB and Spark alike)."""


def event_sql_types() -> dict[str, str]:
    """Canonical column -> SQL type, in bronze order (dbt's ``canonical_columns`` var)."""
    return {name: SQL_TYPES[kind] for name, kind in EVENT_COLUMN_KINDS.items()}


def event_pandas_dtypes() -> dict[str, str]:
    """Canonical column -> pandas dtype, in bronze order."""
    return {name: PANDAS_DTYPES[kind] for name, kind in EVENT_COLUMN_KINDS.items()}
