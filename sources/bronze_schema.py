"""The bronze ``events`` contract: column types, value rules and row-level validation.

``validate_events`` turns loosely typed landing records into a typed bronze frame and
a list of rejected rows, each naming its file, line, field and reason. It never drops a
row silently: ``len(valid) + len(rejected) == len(records)``.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

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


def bronze_events_schema(spec: FeatureSpec, day: dt.date) -> pa.DataFrameSchema:
    """Value rules for one day of a source's typed bronze events (types are enforced
    before this): unique event ids, timestamps inside the day, non-empty ids, 0/1
    labels, non-negative prices, and the spec's allowed values and ranges."""
    start = pd.Timestamp(day)
    required = set(required_columns(spec))
    columns: dict[str, pa.Column] = {}
    for name, kind in bronze_columns(spec).items():
        checks: list[pa.Check] = []
        if kind == "string" and name in required:
            checks.append(pa.Check.str_length(min_value=1))
        if name in BINARY_LABELS:
            checks.append(pa.Check.isin([0, 1]))
        if name in PRICES:
            checks.append(pa.Check.ge(0))
        if name == "event_ts":
            checks.append(pa.Check.in_range(start, start + pd.Timedelta(days=1), include_max=False))
        spec_column = next((c for c in spec.bronze_feature_columns if c.name == name), None)
        if spec_column is not None:
            if spec_column.values is not None:
                checks.append(pa.Check.isin(list(spec_column.values)))
            if spec_column.min_value is not None:
                checks.append(pa.Check.ge(spec_column.min_value))
            if spec_column.max_value is not None:
                checks.append(pa.Check.le(spec_column.max_value))
        columns[name] = pa.Column(
            PANDAS_DTYPES[kind],
            checks,
            nullable=name not in required,
            unique=name == "event_id",
            report_duplicates="exclude_first",
        )
    frame_checks = []
    if "clicked" in spec.label_columns and "converted" in spec.label_columns:
        frame_checks.append(
            pa.Check(
                lambda frame: ~(frame["converted"].fillna(0) > frame["clicked"].fillna(0)),
                name="converted_implies_clicked",
            )
        )
    return pa.DataFrameSchema(columns, checks=frame_checks, strict="filter", name=f"bronze_{spec.source}")


# Checks that span columns report every column; this says which field to blame.
_FRAME_CHECK_FIELD = {"converted_implies_clicked": "converted"}


@dataclass(frozen=True)
class ValidatedEvents:
    """Result of validating a day's records.

    Attributes:
        valid: typed bronze frame (``bronze_columns(spec)`` order and dtypes).
        quarantined: one row per rejected record, columns ``QUARANTINE_COLUMNS``.
    """

    valid: pd.DataFrame
    quarantined: pd.DataFrame


# Ids that are present but say "no value": rejected, never new users or items.
_ID_COLUMNS = ("event_id", "user_id", "item_id")
_NULL_LIKE = frozenset({"", "null", "none", "nan", "nil", "undefined", "n/a"})
# Integers beyond this do not fit bronze's 64-bit integer columns.
_INT64_LIMIT = 2.0**63
# How much of an offending value a reason quotes.
QUOTE_CHARS = 40


def quote(value: object) -> str:
    """``value`` as text for a reason, cut to ``QUOTE_CHARS`` characters."""
    text = str(value)
    return text if len(text) <= QUOTE_CHARS else f"{text[:QUOTE_CHARS]}... ({len(text)} chars)"


def _parse_column(
    values: pd.Series, kind: str, required: bool, is_id: bool, max_length: int
) -> tuple[pd.Series, pd.Series]:
    """Convert one column to its kind; returns (parsed, reason-or-None per row).

    Every value is checked before any cast: strings for length and (ids) blank or
    null-like text, numbers for finiteness and (integers) the 64-bit range. A missing
    value is a problem only in a required column; elsewhere it stays null.
    """
    missing = values.isna()
    quoted = values.map(quote)
    if kind == "string":
        is_text = values.map(lambda v: isinstance(v, str))
        text = values.where(is_text, "")
        parsed = values.where(missing, values.astype(str))
        lengths = text.str.len()
        null_like = (
            is_text & text.str.strip().str.lower().isin(_NULL_LIKE) if is_id else pd.Series(False, index=values.index)
        )
        reason = np.select(
            [~missing & ~is_text, lengths > max_length, null_like],
            ["expected a string, got " + quoted, "longer than " + str(max_length) + " characters: " + quoted,
             "blank or null-like id: " + values.map(repr)],
            None,
        )  # fmt: skip
    elif kind == "timestamp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stamps = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
        parsed = stamps.dt.tz_convert(None).astype("datetime64[us]")
        bad = ~missing & parsed.isna()
        reason = np.where(bad, "not an ISO-8601 timestamp: " + quoted, None)
    else:
        numbers = pd.to_numeric(values.where(~values.map(lambda v: isinstance(v, bool))), errors="coerce")
        not_number = ~missing & numbers.isna()
        infinite = numbers.notna() & ~np.isfinite(numbers)
        fractional = out_of_range = pd.Series(False, index=values.index)
        if kind == "int":
            finite = numbers.where(~infinite)
            fractional = finite.notna() & (finite % 1 != 0)
            out_of_range = finite.abs() >= _INT64_LIMIT
        noun = "an integer" if kind == "int" else "a number"
        reason = np.select(
            [not_number | fractional, infinite, out_of_range],
            [f"not {noun}: " + quoted, "not a finite number: " + quoted, "outside the 64-bit integer range: " + quoted],
            None,
        )
        parsed = numbers.where(pd.isna(reason))
    reason = np.where(missing, "missing or null" if required else None, reason)
    return parsed, pd.Series(reason, index=values.index)


def validate_events(
    records: pd.DataFrame,
    day: dt.date,
    spec: FeatureSpec,
    days_holding: Callable[[pd.Series], pd.Series] | None = None,
) -> ValidatedEvents:
    """Type and validate loosely typed event records of one source for one partition day.

    Args:
        records: one row per landing record; bronze columns as parsed from the file
            (any may be missing or mistyped) plus ``_source_file``, ``_line_number`` and
            ``_raw`` saying where each came from.
        day: the partition day; every ``event_ts`` must fall inside it.
        spec: the source's feature spec: which columns bronze keeps and their rules.
        days_holding: given event ids, the other day (``YYYY-MM-DD``) whose bronze
            already holds each, or None (``sources.event_ids.EventIdIndex.other_days``);
            such rows are rejected as ``duplicate of <day>``. None: not checked.

    Returns:
        ``ValidatedEvents``: the good rows, typed, and the rejected rows with the field
        and reason for each.
    """
    problems: dict[int, list[tuple[str, str]]] = {}
    typed = pd.DataFrame(index=records.index)
    kinds = bronze_columns(spec)
    required = set(required_columns(spec))
    schema = bronze_events_schema(spec, day)
    for column, kind in kinds.items():
        values = records[column] if column in records else pd.Series(None, index=records.index, dtype=object)
        parsed, reasons = _parse_column(
            values.astype(object), kind, required=column in required, is_id=column in _ID_COLUMNS,
            max_length=spec.max_string_length,
        )  # fmt: skip
        typed[column] = parsed
        for row in reasons[reasons.notna()].index:
            problems.setdefault(row, []).append((column, reasons[row]))

    candidates = typed.drop(index=list(problems)).astype({c: PANDAS_DTYPES[k] for c, k in kinds.items()})
    try:
        valid = schema.validate(candidates, lazy=True)
    except pa.errors.SchemaErrors as errors:
        for row, field, reason in _failures(errors.failure_cases):
            problems.setdefault(row, []).append((field, reason))
        valid = candidates.drop(index=[r for r in problems if r in candidates.index])
        valid = schema.validate(valid)
    if days_holding is not None and len(valid):
        elsewhere = days_holding(valid["event_id"])
        for row, other_day in elsewhere[elsewhere.notna()].items():
            problems.setdefault(row, []).append(("event_id", f"duplicate of {other_day}"))
        valid = valid.drop(index=elsewhere[elsewhere.notna()].index)

    rejected_rows = sorted(problems)
    quarantined = pd.DataFrame(
        {
            "source_file": records.loc[rejected_rows, SOURCE_FILE].astype(str).to_numpy(),
            "line_number": records.loc[rejected_rows, LINE_NUMBER].astype("int64").to_numpy(),
            "field": [", ".join(dict.fromkeys(f for f, _ in problems[r])) for r in rejected_rows],
            "reason": ["; ".join(f"{f}: {why}" for f, why in problems[r]) for r in rejected_rows],
            "raw": records.loc[rejected_rows, RAW].astype(str).to_numpy(),
        },
        columns=QUARANTINE_COLUMNS,
    )
    return ValidatedEvents(valid=valid[list(kinds)].reset_index(drop=True), quarantined=quarantined)


def _failures(failure_cases: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(row, field, reason) for each row-level pandera failure."""
    out: list[tuple[int, str, str]] = []
    seen: set[tuple[int, str]] = set()
    for case in failure_cases.itertuples(index=False):
        if case.index is None or pd.isna(case.index):
            raise ValueError(f"bronze schema failed as a whole: {case.check} on {case.column}")
        field = _FRAME_CHECK_FIELD.get(str(case.check), str(case.column))
        key = (int(case.index), field)
        if key in seen:
            continue
        seen.add(key)
        reason = (
            "duplicate event_id"
            if case.check == "field_uniqueness"
            else f"failed {case.check} (value {quote(repr(case.failure_case))})"
        )
        if case.check == "converted_implies_clicked":
            reason = "converted without a click"
        out.append((int(case.index), field, reason))
    return out
