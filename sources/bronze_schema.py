"""The bronze ``events`` contract: column types, value rules and row-level validation.

``validate_events`` turns loosely typed landing records into a typed bronze frame and
a list of rejected rows, each naming its file, line, field and reason. It never drops a
row silently: ``len(valid) + len(rejected) == len(records)``.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from reclake.contract import DEVICES, SLOT_POSITIONS

# Column -> kind, in bronze order. The one place that lists the bronze columns.
BRONZE_COLUMNS: dict[str, str] = {
    "event_id": "string",
    "event_ts": "timestamp",
    "user_id": "string",
    "item_id": "string",
    "user_segment": "string",
    "device": "string",
    "slot_position": "int",
    "category": "string",
    "price": "float",
    "bid_price": "float",
    "market_price": "float",
    "clicked": "int",
    "converted": "int",
}
_PANDAS_DTYPES = {"string": "object", "timestamp": "datetime64[us]", "int": "int64", "float": "float64"}

# Columns that carry where a record came from; they travel with rows, never into bronze.
SOURCE_FILE, LINE_NUMBER, RAW = "_source_file", "_line_number", "_raw"
QUARANTINE_COLUMNS = ["source_file", "line_number", "field", "reason", "raw"]


def bronze_events_schema(day: dt.date) -> pa.DataFrameSchema:
    """Value rules for one day of typed bronze events (types are enforced before this)."""
    start = pd.Timestamp(day)
    return pa.DataFrameSchema(
        {
            "event_id": pa.Column(str, unique=True, report_duplicates="exclude_first"),
            "event_ts": pa.Column(
                "datetime64[us]",
                pa.Check.in_range(start, start + pd.Timedelta(days=1), include_max=False),
            ),
            "user_id": pa.Column(str, pa.Check.str_length(min_value=1)),
            "item_id": pa.Column(str, pa.Check.str_length(min_value=1)),
            "user_segment": pa.Column(str, pa.Check.str_length(min_value=1)),
            "device": pa.Column(str, pa.Check.isin(list(DEVICES))),
            "slot_position": pa.Column("int64", pa.Check.in_range(min(SLOT_POSITIONS), max(SLOT_POSITIONS))),
            "category": pa.Column(str, pa.Check.str_length(min_value=1)),
            "price": pa.Column("float64", pa.Check.ge(0)),
            "bid_price": pa.Column("float64", pa.Check.ge(0)),
            "market_price": pa.Column("float64", pa.Check.ge(0)),
            "clicked": pa.Column("int64", pa.Check.isin([0, 1])),
            "converted": pa.Column("int64", pa.Check.isin([0, 1])),
        },
        checks=[
            pa.Check(
                lambda frame: frame["converted"] <= frame["clicked"],
                name="converted_implies_clicked",
            )
        ],
        strict="filter",
        name="bronze_events",
    )


# Checks that span columns report every column; this says which field to blame.
_FRAME_CHECK_FIELD = {"converted_implies_clicked": "converted"}


@dataclass(frozen=True)
class ValidatedEvents:
    """Result of validating a day's records.

    Attributes:
        valid: typed bronze frame (``BRONZE_COLUMNS`` order and dtypes).
        quarantined: one row per rejected record, columns ``QUARANTINE_COLUMNS``.
    """

    valid: pd.DataFrame
    quarantined: pd.DataFrame


def _parse_column(values: pd.Series, kind: str) -> tuple[pd.Series, pd.Series]:
    """Convert one column to its kind; returns (parsed, reason-or-None per row)."""
    missing = values.isna()
    if kind == "string":
        parsed = values.where(missing, values.astype(str))
        bad = ~missing & ~values.map(lambda v: isinstance(v, str))
        reason = np.where(bad, "expected a string, got " + values.astype(str).str[:40], None)
    elif kind == "timestamp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stamps = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
        parsed = stamps.dt.tz_convert(None).astype("datetime64[us]")
        bad = ~missing & parsed.isna()
        reason = np.where(bad, "not an ISO-8601 timestamp: " + values.astype(str).str[:40], None)
    else:
        numbers = pd.to_numeric(values.where(~values.map(lambda v: isinstance(v, bool))), errors="coerce")
        bad = ~missing & numbers.isna()
        if kind == "int":
            fractional = numbers.notna() & (numbers % 1 != 0)
            bad |= fractional
        parsed = numbers
        reason = np.where(bad, f"not {'an integer' if kind == 'int' else 'a number'}: " + values.astype(str).str[:40], None)
    reason = np.where(missing, "missing or null", reason)
    return parsed, pd.Series(reason, index=values.index)


def validate_events(records: pd.DataFrame, day: dt.date) -> ValidatedEvents:
    """Type and validate loosely typed event records for one partition day.

    Args:
        records: one row per landing record; bronze columns as parsed from the file
            (any may be missing or mistyped) plus ``_source_file``, ``_line_number`` and
            ``_raw`` saying where each came from.
        day: the partition day; every ``event_ts`` must fall inside it.

    Returns:
        ``ValidatedEvents``: the good rows, typed, and the rejected rows with the field
        and reason for each.
    """
    problems: dict[int, list[tuple[str, str]]] = {}
    typed = pd.DataFrame(index=records.index)
    for column, kind in BRONZE_COLUMNS.items():
        values = records[column] if column in records else pd.Series(None, index=records.index, dtype=object)
        parsed, reasons = _parse_column(values.astype(object), kind)
        typed[column] = parsed
        for row in reasons[reasons.notna()].index:
            problems.setdefault(row, []).append((column, reasons[row]))

    candidates = typed.drop(index=list(problems)).astype(
        {c: _PANDAS_DTYPES[k] for c, k in BRONZE_COLUMNS.items()}
    )
    try:
        valid = bronze_events_schema(day).validate(candidates, lazy=True)
    except pa.errors.SchemaErrors as errors:
        for row, field, reason in _failures(errors.failure_cases):
            problems.setdefault(row, []).append((field, reason))
        valid = candidates.drop(index=[r for r in problems if r in candidates.index])
        valid = bronze_events_schema(day).validate(valid)

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
    return ValidatedEvents(valid=valid[list(BRONZE_COLUMNS)].reset_index(drop=True), quarantined=quarantined)


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
        reason = "duplicate event_id" if case.check == "field_uniqueness" else f"failed {case.check} (value {case.failure_case!r})"
        if case.check == "converted_implies_clicked":
            reason = "converted without a click"
        out.append((int(case.index), field, reason))
    return out
