"""The training window's contract: a pandera schema of what every model may assume of it.

Every model (the pipeline's ranker, the zoo, the retrievers, the benchmarks) trains on
the newest days of ``training_examples`` (``WarehouseResource.training_window``).
``training_window_schema(spec, days)`` derives from the source's feature spec
(``reclake.feature_spec``) a ``pandera.pandas.DataFrameSchema`` of those rows:

- ``event_id``: a string, present, unique; ``event_date`` present and inside the window's
  days; ``event_ts`` present and inside them too (before the day after the last one);
- every model feature (``spec.id_features`` and ``spec.columns``): present in the frame,
  of its spec dtype (strings hold ``str`` of at most ``spec.max_string_length``
  characters, ints whole numbers, floats numbers), not null unless ``nullable``, in its
  allowed ``values`` and ``min_value`` / ``max_value`` range;
- the label (``spec.label``): present and not null; 0/1 when binary, a number when a
  regression label (non-negative when trained on ``log1p``); extra labels 0/1 or null (as
  ``models.inputs.features.label_array`` reads them);
- the point-in-time aggregates of each entity (``spec.aggregate_columns``): counts
  (``events``, ``positives``) whole numbers >= 0, smoothed rates in [0, 1], none null;
  ``user_history``, when the frame has it, not null.

These are the rules the Great Expectations suite of ``training_examples``
(``monitoring.data_quality``) runs as SQL on the warehouse, checked again on the frame the
models actually read. ``validate_training_window`` validates lazily (every failure is
collected, not only the first) with vectorised checks, and summarises the failures per
column and check: failing rows and a few example values. Extra columns are allowed.

Plain Python: pandera and pandas, no Dagster, no TensorFlow.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from reclake.feature_spec import FeatureColumn, FeatureSpec

EXAMPLES_PER_FAILURE = 3
"""Example failing values reported per column and check."""
SAMPLE_SEED = 0
"""Seed of the row sample ``validate_training_window`` draws when ``max_rows`` is set."""


@dataclass(frozen=True)
class ContractFailure:
    """One check that failed on one column.

    Attributes:
        column: the column (None for a check on the whole frame).
        check: pandera's name of the check, e.g. ``isin``, ``not_nullable``,
            ``field_uniqueness``, ``column_in_dataframe``, ``is_integer``.
        rows: validated rows that fail it; None when the check failed for the column as
            a whole (a missing column).
        examples: up to ``EXAMPLES_PER_FAILURE`` distinct failing values, as text.
    """

    column: str | None
    check: str
    rows: int | None
    examples: tuple[str, ...]


@dataclass(frozen=True)
class ContractResult:
    """Outcome of validating a training window against its contract.

    Attributes:
        rows: rows validated (all of them, or the sample).
        window_rows: rows in the window.
        columns: columns the contract checks.
        failures: one entry per failing (column, check), in the frame's column order.
        seconds: wall time of the validation.
    """

    rows: int
    window_rows: int
    columns: int
    failures: tuple[ContractFailure, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def sampled(self) -> bool:
        return self.rows < self.window_rows


# ---- the schema -----------------------------------------------------------------------


def training_window_schema(spec: FeatureSpec, days: Sequence[dt.date]) -> pa.DataFrameSchema:
    """The pandera schema of a training window of ``spec``'s source covering ``days``.

    Args:
        spec: the source's feature spec.
        days: the window's days (its first and last bound ``event_date``).

    Returns:
        A ``pandera.pandas.DataFrameSchema`` named ``<source>.training_window``; it allows
        columns it does not name and coerces nothing.

    Raises:
        ValueError: ``days`` is empty.
    """
    if not days:
        raise ValueError("a training window has at least one day")
    first, last = pd.Timestamp(min(days)), pd.Timestamp(max(days))
    columns: dict[str, pa.Column] = {
        "event_id": pa.Column(checks=_kind_checks("string", spec), nullable=False, unique=True),
        "event_date": pa.Column(checks=[_timestamps_between(first, last + pd.Timedelta(days=1))], nullable=False),
        "event_ts": pa.Column(checks=[_timestamps_between(first, last + pd.Timedelta(days=1))], nullable=False),
    }
    for column in (*spec.id_features, *spec.columns):
        columns[column.name] = _feature_column(column, spec)
    columns[spec.label.column] = _label_column(spec)
    for name in spec.extra_labels:
        # Null where the source has no such log for the day (iPinYou without a conversion log).
        columns[name] = pa.Column(checks=[pa.Check.isin([0, 1])], nullable=True)
    for entity in spec.entities:
        for name in spec.aggregate_columns(entity):
            rate = "_positive_rate_" in name
            checks = (
                [*_kind_checks("float", spec), pa.Check.in_range(0, 1)]
                if rate
                else [*_kind_checks("int", spec), pa.Check.ge(0)]
            )
            columns[name] = pa.Column(checks=checks, nullable=False)
    if spec.has_ids:
        columns["user_history"] = pa.Column(nullable=False, required=False)  # read by history-aware retrievers only
    return pa.DataFrameSchema(columns, name=f"{spec.source}.training_window", strict=False, coerce=False)


def _feature_column(column: FeatureColumn, spec: FeatureSpec) -> pa.Column:
    checks = _kind_checks(column.dtype, spec)
    if column.values is not None:
        checks.append(pa.Check.isin(list(column.values)))
    if column.min_value is not None:
        checks.append(pa.Check.ge(column.min_value))
    if column.max_value is not None:
        checks.append(pa.Check.le(column.max_value))
    return pa.Column(checks=checks, nullable=column.nullable)


def _label_column(spec: FeatureSpec) -> pa.Column:
    if spec.label.kind == "binary":
        return pa.Column(checks=[pa.Check.isin([0, 1])], nullable=False)
    checks = _kind_checks("float", spec)
    if spec.label.log:
        checks.append(pa.Check.ge(0))
    return pa.Column(checks=checks, nullable=False)


def _kind_checks(dtype: str, spec: FeatureSpec) -> list[pa.Check]:
    """Checks that a column holds values of a spec dtype (nulls are left to ``nullable``)."""
    if dtype == "string":
        return [
            pa.Check(_is_string, name="is_string"),
            pa.Check.str_length(max_value=spec.max_string_length),
        ]
    if dtype == "int":
        return [pa.Check(_is_integer, name="is_integer")]
    return [pa.Check(_is_number, name="is_number")]


def _is_string(values: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(values.dtype):
        return pd.Series(True, index=values.index)
    return values.map(type).eq(str)


def _numbers(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=values.index)
    return pd.to_numeric(values, errors="coerce")


def _is_number(values: pd.Series) -> pd.Series:
    return _numbers(values).notna()


def _is_integer(values: pd.Series) -> pd.Series:
    if pd.api.types.is_integer_dtype(values.dtype):
        return pd.Series(True, index=values.index)
    numbers = _numbers(values)
    return numbers.notna() & np.isfinite(numbers) & numbers.eq(np.floor(numbers))


def _timestamps_between(start: pd.Timestamp, end: pd.Timestamp) -> pa.Check:
    """Dates or timestamps in ``[start, end)``: inside the window's days."""

    def inside(values: pd.Series) -> pd.Series:
        stamps = pd.to_datetime(values, errors="coerce")
        return stamps.ge(start) & stamps.lt(end)

    return pa.Check(inside, name="in_window")


# ---- validation -----------------------------------------------------------------------


def validate_training_window(
    examples: pd.DataFrame,
    spec: FeatureSpec,
    days: Sequence[dt.date],
    max_rows: int | None = None,
) -> ContractResult:
    """Validate a training window against ``training_window_schema(spec, days)``.

    Args:
        examples: the window's rows (``training_examples`` of ``days``).
        spec: the source's feature spec.
        days: the window's days.
        max_rows: validate a sample of at most this many rows, drawn with ``SAMPLE_SEED``
            (uniqueness is then checked within the sample only); None: every row.

    Returns:
        A ``ContractResult``; bad rows are reported in it, not raised.

    Raises:
        TypeError: ``examples`` is not a pandas DataFrame.
    """
    if not isinstance(examples, pd.DataFrame):
        raise TypeError(f"examples must be a pandas DataFrame, got {type(examples).__name__}")
    started = time.perf_counter()
    schema = training_window_schema(spec, days)
    rows = examples
    if max_rows is not None and len(examples) > max_rows:
        rows = examples.sample(n=max_rows, random_state=SAMPLE_SEED)
    try:
        schema.validate(rows, lazy=True)
        failures: tuple[ContractFailure, ...] = ()
    except SchemaErrors as errors:
        failures = summarise_failures(errors.failure_cases, list(rows.columns))
    return ContractResult(
        rows=len(rows),
        window_rows=len(examples),
        columns=len(schema.columns),
        failures=failures,
        seconds=time.perf_counter() - started,
    )


def summarise_failures(failure_cases: pd.DataFrame, column_order: Sequence[str] = ()) -> tuple[ContractFailure, ...]:
    """One ``ContractFailure`` per (column, check) of pandera's ``SchemaErrors.failure_cases``.

    Args:
        failure_cases: pandera's frame of failures (columns ``column``, ``check``,
            ``failure_case``, ``index``).
        column_order: the frame's columns, to order the failures as the frame does
            (columns it lacks come last).

    Returns:
        The failures, each with its count of failing rows and a few example values.
    """
    cases = failure_cases.copy()
    missing = cases["check"].astype(str).eq("column_in_dataframe")
    cases.loc[missing, "column"] = cases.loc[missing, "failure_case"]  # name the missing column itself
    cases["column"] = cases["column"].where(cases["column"].notna(), None)
    position = {name: index for index, name in enumerate(column_order)}
    failures = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        column = None if pd.isna(column) else str(column)
        indexed = group["index"].dropna()
        examples = [_example(value) for value in group["failure_case"]]
        failures.append(
            ContractFailure(
                column=column,
                check=str(check),
                rows=int(indexed.nunique()) if len(indexed) else None,
                examples=tuple(dict.fromkeys(examples))[:EXAMPLES_PER_FAILURE],
            )
        )
    failures.sort(key=lambda f: (position.get(f.column, len(position)), str(f.column), f.check))
    return tuple(failures)


def _example(value: object) -> str:
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return "null"
    return str(value)
