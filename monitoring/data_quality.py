"""Great Expectations checks for the `training_examples` mart.

The suite encodes the rules of `training_examples` in docs/data-contracts.md and is run
directly on a pandas DataFrame through an ephemeral (in-memory) GX context: nothing is
written to disk and no GX project folder is needed.

Great Expectations is slow to import, so it is imported inside the functions that use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from reclake.contract import DEVICES, HOURS_OF_DAY, SLOT_POSITIONS

if TYPE_CHECKING:
    import great_expectations as gx

TRAINING_EXAMPLES_COLUMNS: tuple[str, ...] = (
    "event_id",
    "event_date",
    "event_ts",
    "user_id",
    "item_id",
    "user_segment",
    "device",
    "slot_position",
    "category",
    "price",
    "hour_of_day",
    "day_of_week",
    "user_impressions_7d",
    "user_clicks_7d",
    "user_ctr_7d",
    "item_impressions_7d",
    "item_clicks_7d",
    "item_ctr_7d",
    "clicked",
    "converted",
)
"""Every column of `training_examples`, as listed in the data contract."""


_NOT_NULL_COLUMNS = ("event_id", "event_ts", "user_id", "item_id", "device", "clicked", "converted")
_BINARY_COLUMNS = ("clicked", "converted")
_CTR_COLUMNS = ("user_ctr_7d", "item_ctr_7d")
_SUITE_NAME = "training_examples"


@dataclass(frozen=True)
class QualityResult:
    """Outcome of validating one `training_examples` frame.

    Attributes:
        success: True when every expectation passed.
        evaluated: Number of expectations evaluated.
        failed: One dict per failed expectation with keys `expectation_type`
            (e.g. `"expect_column_values_to_be_unique"`), `column` (the column, the
            pair as `"a, b"`, or None for table-level checks), `observed_value`,
            `unexpected_count`, `unexpected_sample` (a few offending values) and
            `exception` (GX's message when the check could not run, e.g. a missing
            column); keys that do not apply are None.
        statistics: GX's counts: `evaluated_expectations`, `successful_expectations`,
            `unsuccessful_expectations`, `success_percent`.
    """

    success: bool
    evaluated: int
    failed: list[dict[str, Any]]
    statistics: dict[str, float]


def training_examples_suite() -> gx.ExpectationSuite:
    """Build the expectation suite for the `training_examples` mart.

    Returns:
        A `great_expectations.ExpectationSuite` (not registered with any context).
    """
    gx = _import_gx()
    expect = gx.expectations
    expectations: list[Any] = [expect.ExpectTableRowCountToBeBetween(min_value=1)]
    expectations += [expect.ExpectColumnToExist(column=c) for c in TRAINING_EXAMPLES_COLUMNS]
    expectations.append(expect.ExpectColumnValuesToBeUnique(column="event_id"))
    expectations += [expect.ExpectColumnValuesToNotBeNull(column=c) for c in _NOT_NULL_COLUMNS]
    expectations += [expect.ExpectColumnValuesToBeInSet(column=c, value_set=[0, 1]) for c in _BINARY_COLUMNS]
    expectations.append(
        expect.ExpectColumnPairValuesAToBeGreaterThanB(column_A="clicked", column_B="converted", or_equal=True)
    )
    expectations += [expect.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in _CTR_COLUMNS]
    expectations += [
        expect.ExpectColumnValuesToBeBetween(column="price", min_value=0),
        expect.ExpectColumnValuesToBeBetween(column="hour_of_day", min_value=min(HOURS_OF_DAY), max_value=max(HOURS_OF_DAY)),
        expect.ExpectColumnValuesToBeBetween(column="day_of_week", min_value=0, max_value=6),
        expect.ExpectColumnValuesToBeBetween(
            column="slot_position", min_value=min(SLOT_POSITIONS), max_value=max(SLOT_POSITIONS)
        ),
        expect.ExpectColumnValuesToBeInSet(column="device", value_set=list(DEVICES)),
    ]
    return gx.ExpectationSuite(name=_SUITE_NAME, expectations=expectations)


def validate_training_examples(df: pd.DataFrame) -> QualityResult:
    """Validate a `training_examples` frame against `training_examples_suite()`.

    Args:
        df: Rows of the `training_examples` mart (all contract columns).

    Returns:
        A `QualityResult`; bad data is reported in it, not raised.

    Raises:
        TypeError: If `df` is not a pandas DataFrame.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    gx = _import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("reclake")
        .add_dataframe_asset(_SUITE_NAME)
        .add_batch_definition_whole_dataframe("whole_frame")
        .get_batch(batch_parameters={"dataframe": df})
    )
    outcome = batch.validate(training_examples_suite())

    statistics = {key: float(value) for key, value in outcome.statistics.items()}
    return QualityResult(
        success=bool(outcome.success),
        evaluated=int(outcome.statistics["evaluated_expectations"]),
        failed=[_describe_failure(r) for r in outcome.results if not r.success],
        statistics=statistics,
    )


def _import_gx():
    """Import great_expectations with usage statistics switched off."""
    # Older GX 1.x releases send usage statistics unless this is False.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def _describe_failure(result: Any) -> dict[str, Any]:
    """Turn one failed `ExpectationValidationResult` into a plain, JSON-friendly dict."""
    kwargs = result.expectation_config.kwargs
    if "column" in kwargs:
        column = kwargs["column"]
    elif "column_A" in kwargs:
        column = f"{kwargs['column_A']}, {kwargs['column_B']}"
    else:
        column = None
    details = result.result or {}
    exception = result.exception_info or {}
    if "exception_message" not in exception:
        # Metric errors come keyed by metric id; take the first message.
        exception = next((v for v in exception.values() if isinstance(v, dict)), {})
    return {
        "expectation_type": result.expectation_config.type,
        "column": column,
        "observed_value": _to_builtin(details.get("observed_value")),
        "unexpected_count": _to_builtin(details.get("unexpected_count")),
        "unexpected_sample": _to_builtin(details.get("partial_unexpected_list")),
        "exception": exception.get("exception_message"),
    }


def _to_builtin(value: Any) -> Any:
    """Convert numpy scalars (also inside lists and tuples) to plain Python values."""
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value
