"""The bronze ``events`` contract: columns, their kinds, and the value rules of each.

Everything here is generated from the feature spec and ``reclake.contracts`` and says
*what* bronze accepts; ``sources.engine_validation`` turns it into DuckDB SQL that
checks a whole landing day at once. Rules of a source's bronze:

- types: strings are JSON strings; numbers are finite (integers whole and within 64
  bits); timestamps are ISO-8601 (converted to UTC);
- keys: ``event_id`` unique within the day and across nearby days; every required
  column present and non-null; ids neither blank nor null-like (``"null"``, ``"  "``);
- values: timestamps inside the partition day, 0/1 binary labels, non-negative prices,
  the spec's allowed values and ranges, no conversion without a click.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from reclake.contracts import BINARY_LABELS, EVENT_COLUMN_KINDS, PANDAS_DTYPES, PRICES
from reclake.feature_spec import FeatureSpec

_SPEC_KINDS = {"string": "string", "int": "int", "float": "float"}


def bronze_columns(spec: FeatureSpec) -> dict[str, str]:
    """Column -> kind (``string``, ``timestamp``, ``int``, ``float``) of a source's bronze.

    The canonical columns first, then the spec's stored (not derived) feature columns
    that are not canonical, in spec order.
    """
    columns = dict(EVENT_COLUMN_KINDS)
    for column in spec.bronze_feature_columns:
        columns.setdefault(column.name, _SPEC_KINDS[column.dtype])
    return columns


def required_columns(spec: FeatureSpec) -> tuple[str, ...]:
    """Columns no bronze row may leave empty: keys, the ids the source has, the label and
    the spec's non-nullable columns."""
    required = ["event_id", "event_ts", *spec.id_columns, spec.label.column]
    required += [c.name for c in spec.bronze_feature_columns if not c.nullable]
    return tuple(dict.fromkeys(required))


# Columns that carry where a record came from; they travel with rows, never into bronze.
SOURCE_FILE, LINE_NUMBER, RAW = "_source_file", "_line_number", "_raw"
QUARANTINE_COLUMNS = ["source_file", "line_number", "field", "reason", "raw"]

# Ids that are present but say "no value": rejected, never new users or items.
ID_COLUMNS = ("event_id", "user_id", "item_id")
NULL_LIKE = ("", "null", "none", "nan", "nil", "undefined", "n/a")
# How much of an offending value a reason quotes.
QUOTE_CHARS = 40


def quote(value: object) -> str:
    """``value`` as text for a reason, cut to ``QUOTE_CHARS`` characters."""
    text = str(value)
    return text if len(text) <= QUOTE_CHARS else f"{text[:QUOTE_CHARS]}... ({len(text)} chars)"


@dataclass(frozen=True)
class ValueRule:
    """One rule a typed, non-null value must keep.

    Attributes:
        check: ``not_empty`` (strings), ``zero_or_one``, ``min`` / ``max`` (inclusive
            ``bound``), ``one_of`` (``bound``: the allowed values) or ``in_day``
            (``bound``: the partition day; timestamps in ``[day, day + 1)``).
        bound: the rule's argument.
    """

    check: str
    bound: Any = None


@dataclass(frozen=True)
class ColumnContract:
    """What bronze accepts in one column.

    Attributes:
        name: the column.
        kind: ``string``, ``timestamp``, ``int`` or ``float``.
        required: a missing or null value rejects the row (else it stays null).
        is_id: blank or null-like text rejects the row.
        max_length: the longest string accepted.
        rules: value rules, checked in order; the first broken one is the reason.
    """

    name: str
    kind: str
    required: bool
    is_id: bool
    max_length: int
    rules: tuple[ValueRule, ...]


def bronze_contract(spec: FeatureSpec, day: dt.date) -> tuple[ColumnContract, ...]:
    """The contract of one day of a source's bronze, column by column in bronze order."""
    required = set(required_columns(spec))
    spec_columns = {c.name: c for c in spec.bronze_feature_columns}
    contract = []
    for name, kind in bronze_columns(spec).items():
        rules: list[ValueRule] = []
        if kind == "string" and name in required:
            rules.append(ValueRule("not_empty"))
        if name in BINARY_LABELS:
            rules.append(ValueRule("zero_or_one"))
        if name in PRICES:
            rules.append(ValueRule("min", 0.0))
        if name == "event_ts":
            rules.append(ValueRule("in_day", day))
        column = spec_columns.get(name)
        if column is not None:
            if column.values is not None:
                rules.append(ValueRule("one_of", tuple(column.values)))
            if column.min_value is not None:
                rules.append(ValueRule("min", column.min_value))
            if column.max_value is not None:
                rules.append(ValueRule("max", column.max_value))
        contract.append(
            ColumnContract(name, kind, name in required, name in ID_COLUMNS, spec.max_string_length, tuple(rules))
        )
    return tuple(contract)


def implied_labels(spec: FeatureSpec) -> tuple[tuple[str, str, str], ...]:
    """(label, label it needs, reason) triples: a row whose first label exceeds the
    second is rejected on the first (a conversion without a click)."""
    if "clicked" in spec.label_columns and "converted" in spec.label_columns:
        return (("converted", "clicked", "converted without a click"),)
    return ()


_ONE_VALUE = {"string": "", "timestamp": pd.Timestamp(0), "int": 0, "float": 0.0}


def _arrow_schema(kinds: dict[str, str]) -> pa.Schema:
    """The Arrow schema (with pandas metadata) of a frame of these column kinds."""
    one_row = pd.DataFrame({c: pd.Series([_ONE_VALUE[k]]).astype(PANDAS_DTYPES[k]) for c, k in kinds.items()})
    return pa.Schema.from_pandas(one_row, preserve_index=False)


def bronze_arrow_schema(spec: FeatureSpec) -> pa.Schema:
    """The Arrow schema of bronze Parquet files: ``bronze_columns`` order, kinds as
    ``PANDAS_DTYPES``, with the pandas metadata that restores them when read back."""
    return _arrow_schema(bronze_columns(spec))


QUARANTINE_SCHEMA = pa.Schema.from_pandas(
    pd.DataFrame({c: [0 if c == "line_number" else ""] for c in QUARANTINE_COLUMNS}), preserve_index=False
)
"""The Arrow schema of quarantine Parquet files (``QUARANTINE_COLUMNS``)."""


@dataclass(frozen=True)
class ValidatedEvents:
    """Result of validating a day's records.

    Attributes:
        valid: typed bronze frame (``bronze_columns(spec)`` order and dtypes).
        quarantined: one row per rejected record, columns ``QUARANTINE_COLUMNS``.
    """

    valid: pd.DataFrame
    quarantined: pd.DataFrame


def validate_events(records: pd.DataFrame, day: dt.date, spec: FeatureSpec) -> ValidatedEvents:
    """Validate already-parsed records of one source and day, with the same rules and
    engine as ingestion (``sources.engine_validation.validate_records``).

    Args:
        records: one row per record; bronze columns (any may be missing or mistyped)
            plus ``_source_file``, ``_line_number`` and ``_raw`` saying where each came from.
        day: the partition day; every ``event_ts`` must fall inside it.
        spec: the source's feature spec.

    Returns:
        ``ValidatedEvents``: the good rows, typed, and the rejected rows with the field
        and reason for each.
    """
    from sources.engine_validation import validate_records  # the engine builds on this contract

    return validate_records(records, day, spec)
