"""Great Expectations suites for the feature marts, derived from the feature spec, and Data Docs.

``mart_suite(mart, spec)`` turns a source's feature spec (``reclake.feature_spec``) and
the known layout of a dbt mart (``fct_events``, ``training_examples``, ``user_features``,
``item_features``) into an expectation suite: the mart's columns are present, keys are
unique and not null, labels and ``is_positive`` are 0/1 (or a regression label is
present), spec columns hold their allowed ``values`` and ``min_value``/``max_value``
ranges and are not null unless ``nullable``, aggregate counts are non-negative with
positives <= events and longer windows >= shorter ones, rates lie in [0, 1], and the
event marts' ``event_date`` / ``event_ts`` lie inside the validated days (suite
parameters, so one suite serves every partition).

``validate_table`` runs a suite in the engine: on a table of the DuckDB warehouse, as SQL
through GX's SQL datasource (``monitoring.warehouse_sql``), an event mart's rows limited
to the validated days by the query. ``validate_mart`` runs the same suite on a pandas
frame (small data, tests). Both return a JSON-friendly ``QualityResult``. Without a
``DataDocsSite`` they run in an ephemeral (in-memory) GX context; with one, the suite
and the validation result are stored in that site's GX file data context and its Data
Docs pages are rebuilt, so every validation can be browsed as HTML. ``build_data_docs``
rebuilds a site and returns its ``index.html``.

Every expectation of the suites runs as SQL (GX's SQLAlchemy metrics): none is
pandas-only, so none is validated on a sample.

Great Expectations is slow to import (seconds), so it is imported inside the functions
that use it. Plain Python: no Dagster.

One module on purpose (about 800 lines): the suites derived from the spec, their
validation and the Data Docs site that stores and shows the results are one workflow
over one Great Expectations context.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import math
import os
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from reclake.contracts import BINARY_LABELS, DERIVED_RANGES, LABELS, PRICES
from reclake.feature_spec import FeatureColumn, FeatureSpec
from reclake.settings import Settings

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.data_context import AbstractDataContext

    # Registers a mart's rows in a GX context: yields a batch definition and its batch
    # parameters, and releases what it opened on exit.
    _Batch = Callable[[AbstractDataContext], AbstractContextManager[tuple[Any, dict[str, Any]]]]

logger = logging.getLogger(__name__)

EVENT_MARTS: tuple[str, ...] = ("fct_events", "training_examples")
"""Marts with one row per event, validated a partition window (``event_date`` range) at a time."""
ENTITY_MARTS: dict[str, str] = {"user_features": "user", "item_features": "item"}
"""Marts with one row per id, validated as a whole table, and the entity each describes."""
MARTS: tuple[str, ...] = (*EVENT_MARTS, *ENTITY_MARTS)

# Suite parameters of the event marts: the validated days.
_FIRST_DAY, _LAST_DAY, _WINDOW_END = "first_day", "last_day", "window_end"
_DATASOURCE = "reclake"
_BATCH_DEFINITION = "whole_frame"
_ROW_COUNTS = ("expect_table_row_count_to_be_between", "expect_table_row_count_to_equal")
_SITE_NAME = "local_site"
_SUMMARIES = "validation_summaries.jsonl"
"""Under a site's root: a line per validation result ever stored (its store key, outcome
and counts), so that ``DataDocsSite.histories`` never reads every result of a long history."""
RESULTS_PER_SUITE = Settings.data_docs_results_per_suite
"""Results of each suite a ``DataDocsSite`` keeps in GX's store, and shows, by default:
about three months of a daily pipeline (the four marts' suites, 360 results, add about
0.1 s to each page GX builds; 1,500 added 0.5 s)."""


@dataclass(frozen=True)
class QualityResult:
    """Outcome of validating one mart frame; every field is JSON-friendly.

    Attributes:
        suite: the suite's name, ``<source>.<mart>``.
        success: True when every expectation passed.
        rows: rows validated.
        evaluated: number of expectations evaluated.
        failed: one dict per failed expectation with keys ``expectation_type`` (e.g.
            ``"expect_column_values_to_be_unique"``), ``column`` (the column, a pair as
            ``"a, b"``, or None for table-level checks), ``condition`` (the row filter,
            e.g. ``"label >= 4.0"``, or None), ``observed_value``, ``unexpected_count``,
            ``unexpected_sample`` (a few offending values), ``missing_columns`` (for the
            table's column set) and ``exception`` (GX's message when the check could not
            run, e.g. on a missing column); keys that do not apply are None.
        statistics: GX's counts: ``evaluated_expectations``, ``successful_expectations``,
            ``unsuccessful_expectations``, ``success_percent``.
        docs_page: local path of this validation's Data Docs page when it was recorded
            in a ``DataDocsSite``; None otherwise.
    """

    suite: str
    success: bool
    rows: int
    evaluated: int
    failed: list[dict[str, Any]]
    statistics: dict[str, float]
    docs_page: str | None = None


@dataclass(frozen=True)
class SuiteHistory:
    """The validations a ``DataDocsSite`` holds for one suite.

    Attributes:
        suite: ``<source>.<mart>``.
        runs: validations stored.
        passed_runs: of which every expectation passed.
        latest_run: run name of the newest validation (the validated days, or ``table``).
        latest_time: when the newest validation ran (ISO 8601, UTC).
        latest_success: whether the newest validation passed.
        latest_successful: expectations the newest validation passed.
        latest_evaluated: expectations the newest validation evaluated.
        latest_page: local path of the newest validation's Data Docs page.
    """

    suite: str
    runs: int
    passed_runs: int
    latest_run: str
    latest_time: str
    latest_success: bool
    latest_successful: int
    latest_evaluated: int
    latest_page: str


# ---- mart layout ----------------------------------------------------------------------


def suite_name(mart: str, spec: FeatureSpec) -> str:
    """The suite (and Data Docs page) name of a mart: ``<source>.<mart>``."""
    _check_mart(mart)
    return f"{spec.source}.{mart}"


def mart_columns(mart: str, spec: FeatureSpec) -> tuple[str, ...]:
    """The columns a mart must have for a spec, in table order.

    An entity mart of an id the spec lacks has no rows and no required columns.

    Raises:
        ValueError: an unknown mart.
    """
    _check_mart(mart)
    features = [c.name for c in spec.bronze_feature_columns]
    derived = list(DERIVED_RANGES)
    if mart == "fct_events":
        columns = ["event_id", "event_ts", "event_date", "user_id", "item_id", *LABELS, *PRICES]
        columns += [*features, *derived, "label", "is_positive"]
    elif mart == "training_examples":
        columns = ["event_id", "event_date", "event_ts", *spec.id_columns, *features, *derived]
        columns += [*spec.label_columns, "label", "is_positive"]
        for entity in spec.entities:
            columns += spec.aggregate_columns(entity)
        if spec.has_ids:
            columns.append("user_history")
    else:
        entity = ENTITY_MARTS[mart]
        if entity not in spec.entities:
            return ()
        columns = [f"{entity}_id", *(c.name for c in spec.bronze_feature_columns if c.role == entity)]
        columns += spec.aggregate_columns(entity)
        if entity == "user" and spec.has_ids:
            columns.append("user_history")
    return tuple(dict.fromkeys(columns))


# ---- suites ---------------------------------------------------------------------------


def mart_suite(mart: str, spec: FeatureSpec) -> gx.ExpectationSuite:
    """The expectation suite of one mart, derived from the spec and the mart's layout.

    The event marts' date checks use the suite parameters ``first_day``, ``last_day``
    and ``window_end`` (the day after ``last_day``), which ``validate_mart`` fills in.

    Args:
        mart: one of ``MARTS``.
        spec: the source's feature spec.

    Returns:
        A ``great_expectations.ExpectationSuite`` named ``suite_name(mart, spec)``, not
        registered with any context.

    Raises:
        ValueError: an unknown mart.
    """
    gx = _import_gx()
    name = suite_name(mart, spec)
    if mart in EVENT_MARTS:
        expectations = _event_mart_expectations(mart, spec)
    else:
        expectations = _entity_mart_expectations(ENTITY_MARTS[mart], spec)
    return gx.ExpectationSuite(name=name, expectations=expectations)


def _event_mart_expectations(mart: str, spec: FeatureSpec) -> list[Any]:
    expect = _import_gx().expectations
    expectations = [
        expect.ExpectTableRowCountToBeBetween(min_value=1, notes="a validated window has events"),
        _columns_present(mart, spec),
        expect.ExpectColumnValuesToBeUnique(column="event_id", notes="key"),
    ]
    expectations += [_not_null(c, "key") for c in ("event_id", "event_ts", "event_date")]
    expectations += [
        expect.ExpectColumnValuesToBeBetween(
            column="event_date",
            min_value={"$PARAMETER": _FIRST_DAY},
            max_value={"$PARAMETER": _LAST_DAY},
            notes="inside the validated days",
        ),
        expect.ExpectColumnValuesToBeBetween(
            column="event_ts",
            min_value={"$PARAMETER": _FIRST_DAY},
            max_value={"$PARAMETER": _WINDOW_END},
            strict_max=True,
            notes="inside the validated days",
        ),
    ]
    for name in spec.id_columns:
        expectations.append(_not_null(name, "an id the spec has"))
    if mart == "fct_events":
        absent_ids = [name for name in ("user_id", "item_id") if name not in spec.id_columns]
        expectations += [
            expect.ExpectColumnValuesToBeNull(column=name, notes="an id the spec does not have") for name in absent_ids
        ]
        expectations += [
            expect.ExpectColumnValuesToBeBetween(column=name, min_value=0, notes="prices are non-negative")
            for name in PRICES
            if not _is_spec_column(spec, name)
        ]
    expectations += _label_expectations(mart, spec)
    for name, (low, high) in DERIVED_RANGES.items():
        expectations.append(_not_null(name, "derived from event_ts"))
        expectations.append(
            expect.ExpectColumnValuesToBeBetween(
                column=name, min_value=low, max_value=high, notes="derived from event_ts"
            )
        )
    for column in spec.bronze_feature_columns:
        expectations += _spec_column_expectations(column)
    if mart == "training_examples":
        for entity in spec.entities:
            expectations += _aggregate_expectations(entity, spec)
        if spec.has_ids:
            expectations.append(_not_null("user_history", "the user's recent positive items, padded"))
    return expectations


def _entity_mart_expectations(entity: str, spec: FeatureSpec) -> list[Any]:
    expect = _import_gx().expectations
    if entity not in spec.entities:
        return [expect.ExpectTableRowCountToEqual(value=0, notes=f"the {spec.source} spec has no {entity}_id")]
    key = f"{entity}_id"
    expectations = [
        expect.ExpectTableRowCountToBeBetween(min_value=1, notes=f"one row per known {entity}"),
        _columns_present(f"{entity}_features", spec),
        expect.ExpectColumnValuesToBeUnique(column=key, notes="key"),
        _not_null(key, "key"),
    ]
    for column in spec.bronze_feature_columns:
        if column.role == entity:
            expectations += _spec_column_expectations(column)
    expectations += _aggregate_expectations(entity, spec)
    if entity == "user" and spec.has_ids:
        expectations.append(_not_null("user_history", "the user's recent positive items, padded"))
    return expectations


def _columns_present(mart: str, spec: FeatureSpec) -> Any:
    return _import_gx().expectations.ExpectTableColumnsToMatchSet(
        column_set=list(mart_columns(mart, spec)),
        exact_match=False,
        notes="the mart's layout for this spec; extra columns are allowed",
    )


def _label_expectations(mart: str, spec: FeatureSpec) -> list[Any]:
    """``label`` and ``is_positive`` for both event marts; the raw label columns too.

    ``is_positive`` must be 1 exactly where ``label >= positive_threshold`` (a binary
    label's threshold is 1).
    """
    expect = _import_gx().expectations
    from great_expectations.expectations.row_conditions import Column

    label = spec.label
    threshold = label.positive_threshold if label.kind == "regression" else 1.0
    expectations = [
        _not_null("label", f"the {label.kind} label ({label.column})"),
        _not_null(label.column, "the spec's label"),
        _not_null("is_positive", "label >= positive_threshold"),
        expect.ExpectColumnValuesToBeInSet(column="is_positive", value_set=[0, 1]),
        expect.ExpectColumnValuesToBeInSet(
            column="is_positive",
            value_set=[1],
            row_condition=Column("label") >= threshold,
            notes="positive where label >= positive_threshold",
        ),
        expect.ExpectColumnValuesToBeInSet(
            column="is_positive",
            value_set=[0],
            row_condition=Column("label") < threshold,
            notes="not positive where label < positive_threshold",
        ),
    ]
    if label.kind == "binary":
        expectations.append(expect.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1], notes="binary label"))
    elif label.log:
        expectations.append(
            expect.ExpectColumnValuesToBeBetween(column="label", min_value=0, notes="trained on log1p(label)")
        )
    labels = LABELS if mart == "fct_events" else spec.label_columns
    expectations += [
        expect.ExpectColumnValuesToBeInSet(column=name, value_set=[0, 1], notes="0/1 label")
        for name in labels
        if name in BINARY_LABELS
    ]
    if {"clicked", "converted"} <= set(spec.label_columns):
        expectations.append(
            expect.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="clicked",
                column_B="converted",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                notes="a conversion follows a click",
            )
        )
    return expectations


def _spec_column_expectations(column: FeatureColumn) -> list[Any]:
    """A spec column's rules: allowed ``values``, ``min_value``/``max_value``, ``nullable``."""
    expect = _import_gx().expectations
    where = f"feature spec: columns.{column.name}"
    expectations = []
    if not column.nullable:
        expectations.append(_not_null(column.name, f"{where}: not nullable"))
    if column.values is not None:
        expectations.append(
            expect.ExpectColumnValuesToBeInSet(
                column=column.name, value_set=list(column.values), notes=f"{where}.values"
            )
        )
    if column.min_value is not None or column.max_value is not None:
        expectations.append(
            expect.ExpectColumnValuesToBeBetween(
                column=column.name,
                min_value=column.min_value,
                max_value=column.max_value,
                notes=f"{where}.min_value / max_value",
            )
        )
    return expectations


def _aggregate_expectations(entity: str, spec: FeatureSpec) -> list[Any]:
    """Counts >= 0, positives <= events, rates in [0, 1], longer windows count no less."""
    expect = _import_gx().expectations
    expectations: list[Any] = []
    windows = sorted(spec.aggregates.windows_days)
    for window in windows:
        events, positives, rate = (f"{entity}_{kind}_{window}d" for kind in ("events", "positives", "positive_rate"))
        expectations += [_not_null(name, "aggregate") for name in (events, positives, rate)]
        expectations += [
            expect.ExpectColumnValuesToBeBetween(column=events, min_value=0, notes="a count"),
            expect.ExpectColumnValuesToBeBetween(column=positives, min_value=0, notes="a count"),
            expect.ExpectColumnValuesToBeBetween(column=rate, min_value=0, max_value=1, notes="a smoothed rate"),
            expect.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=events, column_B=positives, or_equal=True, notes="positives are events"
            ),
        ]
    for shorter, longer in zip(windows, windows[1:], strict=False):
        for kind in ("events", "positives"):
            expectations.append(
                expect.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=f"{entity}_{kind}_{longer}d",
                    column_B=f"{entity}_{kind}_{shorter}d",
                    or_equal=True,
                    notes="a longer window holds the shorter one",
                )
            )
    return expectations


def _not_null(column: str, notes: str) -> Any:
    return _import_gx().expectations.ExpectColumnValuesToNotBeNull(column=column, notes=notes)


def _is_spec_column(spec: FeatureSpec, name: str) -> bool:
    return any(c.name == name for c in spec.bronze_feature_columns)


# ---- validation -----------------------------------------------------------------------


def validate_mart(
    frame: pd.DataFrame,
    mart: str,
    spec: FeatureSpec,
    days: Sequence[dt.date] | None = None,
    site: DataDocsSite | None = None,
) -> QualityResult:
    """Validate rows of a mart held in memory against ``mart_suite(mart, spec)``.

    For small frames (tests, samples); the pipeline's checks validate the warehouse
    itself with ``validate_table``.

    Args:
        frame: the mart's rows (for an event mart, the rows of ``days``).
        mart: one of ``MARTS``.
        spec: the source's feature spec.
        days: the validated days (event marts only; required there): every
            ``event_date`` must lie in ``[min(days), max(days)]``.
        site: when given, the suite and the result are stored in this Data Docs site
            and the result's page is built (``QualityResult.docs_page``).

    Returns:
        A ``QualityResult``; bad data is reported in it, not raised.

    Raises:
        TypeError: ``frame`` is not a pandas DataFrame.
        ValueError: an unknown mart, or ``days`` missing for an event mart or given for
            an entity mart.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    _check_arguments(mart, days)
    return _validate(_frame_batch(frame, mart), mart, spec, days, site, rows=len(frame))


def validate_table(
    database: str | os.PathLike[str],
    mart: str,
    spec: FeatureSpec,
    days: Sequence[dt.date] | None = None,
    site: DataDocsSite | None = None,
    table: str | None = None,
) -> QualityResult:
    """Validate a mart in the DuckDB warehouse against ``mart_suite(mart, spec)``, as SQL.

    The suite's metrics are computed by DuckDB on the table (read-only); an event mart's
    rows are those whose ``event_date`` lies in ``[min(days), max(days)]``. Every
    connection to ``database`` is closed on return.

    Args:
        database: the warehouse's DuckDB file.
        mart: one of ``MARTS``.
        spec: the source's feature spec.
        days: the validated days (event marts only; required there).
        site: when given, the suite and the result are stored in this Data Docs site
            and the result's page is built (``QualityResult.docs_page``).
        table: the table or view holding the mart's rows; ``mart`` by default.

    Returns:
        A ``QualityResult`` whose ``rows`` is the row count of the validated rows; bad
        data is reported in it, not raised.

    Raises:
        FileNotFoundError: ``database`` does not exist.
        ValueError: an unknown mart, ``days`` missing for an event mart or given for an
            entity mart, or a ``table`` that is not a plain identifier.
    """
    _check_arguments(mart, days)
    _import_gx()
    from monitoring import warehouse_sql

    @contextmanager
    def batch(context: AbstractDataContext) -> Iterator[tuple[Any, dict[str, Any]]]:
        with warehouse_sql.table_batch(context, database, table or mart, mart, days) as definition:
            yield definition, {}

    return _validate(batch, mart, spec, days, site, rows=None)


def _check_arguments(mart: str, days: Sequence[dt.date] | None) -> None:
    _check_mart(mart)
    if mart in EVENT_MARTS and not days:
        raise ValueError(f"{mart}: pass the validated days (its event_date range)")
    if mart not in EVENT_MARTS and days:
        raise ValueError(f"{mart} is validated as a whole table; days apply to {list(EVENT_MARTS)} only")


def _validate(
    batch: _Batch,
    mart: str,
    spec: FeatureSpec,
    days: Sequence[dt.date] | None,
    site: DataDocsSite | None,
    rows: int | None,
) -> QualityResult:
    """Run the mart's suite on ``batch`` (``rows``: its size, or None to read it from the
    suite's row-count expectation) and describe the outcome."""
    parameters: dict[str, Any] = {}
    run_name = "table"
    if days:
        first, last = min(days), max(days)
        # Plain datetimes: GX renders them as SQL literals (pandas Timestamps it cannot).
        parameters = {
            _FIRST_DAY: dt.datetime.combine(first, dt.time()),
            _LAST_DAY: dt.datetime.combine(last, dt.time()),
            _WINDOW_END: dt.datetime.combine(last + dt.timedelta(days=1), dt.time()),
        }
        # Not "a..b": GX parses run names as times, and dateutil reads "-03-20" as a UTC offset.
        run_name = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
    suite = mart_suite(mart, spec)
    if site is None:
        gx = _import_gx()
        outcome = _run_suite(_quiet(gx.get_context(mode="ephemeral")), batch, suite, parameters, run_name)
        page = None
    else:
        outcome, page = site._record(batch, suite, parameters, run_name)
    if rows is None:
        rows = _observed_rows(outcome)
    return QualityResult(
        suite=suite.name,
        success=bool(outcome.success),
        rows=rows,
        evaluated=int(outcome.statistics["evaluated_expectations"]),
        failed=[_describe_failure(r) for r in outcome.results if not r.success],
        statistics={key: float(value) for key, value in outcome.statistics.items()},
        docs_page=page,
    )


def _observed_rows(outcome: Any) -> int:
    """The row count a suite's table-level row-count expectation observed (0 when it could not run)."""
    for result in outcome.results:
        if result.expectation_config.type in _ROW_COUNTS:
            return int((result.result or {}).get("observed_value") or 0)
    return 0


def _frame_batch(frame: pd.DataFrame, mart: str) -> _Batch:
    """A pandas frame as a GX dataframe asset named ``mart`` (datasource ``reclake``)."""

    @contextmanager
    def batch(context: AbstractDataContext) -> Iterator[tuple[Any, dict[str, Any]]]:
        sources = context.data_sources
        try:
            source = sources.get(_DATASOURCE)
        except KeyError:
            source = sources.add_pandas(_DATASOURCE)
        try:
            asset = source.get_asset(mart)
        except LookupError:
            asset = source.add_dataframe_asset(mart)
        try:
            batch_definition = asset.get_batch_definition(_BATCH_DEFINITION)
        except KeyError:
            batch_definition = asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION)
        yield batch_definition, {"dataframe": frame}

    return batch


def _run_suite(
    context: AbstractDataContext,
    batch: _Batch,
    suite: gx.ExpectationSuite,
    parameters: dict[str, Any],
    run_name: str,
) -> Any:
    """Register ``batch``, ``suite`` and a validation definition of them in ``context`` and run it.

    Returns:
        The ``ExpectationSuiteValidationResult`` (also stored in the context's store).
    """
    gx = _import_gx()
    with batch(context) as (batch_definition, batch_parameters):
        definition = _replace_definition(context, suite, batch_definition)
        return definition.run(
            batch_parameters=batch_parameters or None,
            expectation_parameters=parameters or None,
            run_id=gx.RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC)),
        )


def _replace_definition(context: AbstractDataContext, suite: gx.ExpectationSuite, batch_definition: Any) -> Any:
    """Store ``suite`` and a validation definition of the same name, replacing older ones.

    Replacing rather than ``add_or_update`` on purpose: GX's update matches every new
    expectation against every stored one, which takes seconds for a suite of ~100.
    """
    gx = _import_gx()
    from great_expectations.exceptions import DataContextError

    for collection in (context.validation_definitions, context.suites):
        try:
            collection.delete(suite.name)
        except DataContextError:
            pass
    stored = context.suites.add(suite)
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=stored)
    )


# ---- Data Docs ------------------------------------------------------------------------


class DataDocsSite:
    """A GX file data context in a local folder, holding suites, validation results and
    their static Data Docs HTML.

    Layout under ``root``: ``gx/`` is the GX project (``expectations/``,
    ``uncommitted/validations/``); the site is ``gx/uncommitted/data_docs/local_site/``
    with ``index.html``. Writers from several processes are serialized by a lock file
    (``root/.lock``), so parallel asset checks can record into one site.

    Histories of any length cost the same per validation. GX lists and parses every
    stored result's key several times whenever it builds a page, and lists every result
    in the index; reading every result to count them took 7 s at 1,500 results of one
    suite (a year of daily runs stores about 1,500 over the four marts). So GX's store
    keeps the newest ``results_per_suite`` results of each suite, and each new result
    moves the older ones to ``archive_dir`` (same relative paths, the files as GX wrote
    them: nothing is deleted). The site then shows the newest ones: GX removes the page
    of a result that left its store when it next builds the index, so a Dagster check's
    link to a page older than that leads nowhere (its metadata still names the failed
    expectations). ``validation_summaries.jsonl`` keeps a line per result ever recorded
    (its store key, outcome and counts), archived or not, from which ``histories``
    counts without reading results (a result of the training mart's suite is about 75 KB).

    Args:
        root: the local folder (created when missing).
        results_per_suite: results of each suite kept in GX's store and listed in the
            index (``RESULTS_PER_SUITE``: about three months of daily runs).
    """

    def __init__(self, root: str | os.PathLike[str], results_per_suite: int = RESULTS_PER_SUITE) -> None:
        if results_per_suite < 1:
            raise ValueError(f"results_per_suite must be at least 1, got {results_per_suite}")
        self.root = Path(root).expanduser().resolve()
        self.results_per_suite = results_per_suite

    @property
    def archive_dir(self) -> Path:
        """Where results beyond the newest ``results_per_suite`` of their suite are moved."""
        return self.root / "archive" / "validations"

    @property
    def site_dir(self) -> Path:
        """The folder of the static HTML site."""
        return self.root / "gx" / "uncommitted" / "data_docs" / _SITE_NAME

    @property
    def index_path(self) -> Path:
        return self.site_dir / "index.html"

    def _record(
        self,
        batch: _Batch,
        suite: gx.ExpectationSuite,
        parameters: dict[str, Any],
        run_name: str,
    ) -> tuple[Any, str]:
        """Validate ``batch`` with ``suite`` in this site's context, store the result and
        build its page, the suite's page and the index (``validate_mart`` and
        ``validate_table`` call this).

        Returns:
            The ``ExpectationSuiteValidationResult`` and the local path of its page.
        """
        with self._context() as context:
            outcome = _run_suite(context, batch, suite, parameters, run_name)
            identifier = _result_identifier(context, outcome)
            self._append_summaries([_summarise(identifier, outcome)])
            self._archive_older(context)
            try:
                context.build_data_docs(
                    site_names=[_SITE_NAME],
                    resource_identifiers=[identifier, identifier.expectation_suite_identifier],
                )
            except Exception as error:  # a rendering bug must not hide the validation result
                logger.warning("Data Docs page of %s not built: %s", suite.name, error)
            return outcome, self._page(context, identifier)

    def build(self) -> Path:
        """Rebuild every page (suites, validations, index) from what the site stores.

        Returns:
            The path of ``index.html``.
        """
        with self._context() as context:
            context.build_data_docs(site_names=[_SITE_NAME])
        return self.index_path

    def refresh(self) -> Path:
        """Render the newest stored validation of each suite, its suite's page and the
        index: what the checks of the latest run stored. Its cost grows with the number of
        suites, not with the history (``build`` renders every stored validation again:
        after a year of daily runs, about 1,500 pages per run).

        Returns:
            The path of ``index.html``.
        """
        with self._context() as context:
            newest: dict[str, Any] = {}
            for key in context.validation_results_store.list_keys():
                name = key.expectation_suite_identifier.name
                if name not in newest or key.run_id.run_time > newest[name].run_id.run_time:
                    newest[name] = key
            if not newest:  # nothing stored yet: an empty site with its index
                context.build_data_docs(site_names=[_SITE_NAME])
                return self.index_path
            identifiers = [*newest.values(), *(key.expectation_suite_identifier for key in newest.values())]
            context.build_data_docs(site_names=[_SITE_NAME], resource_identifiers=identifiers)
        return self.index_path

    def histories(self, source: str | None = None) -> list[SuiteHistory]:
        """What the site recorded per suite, archived results included, from the summary
        lines alone (a result in GX's store without one, from an older site, is read once
        and summarised); neither GX's store nor the archive is read in full.

        Args:
            source: only suites of this source (``<source>.<mart>``); None: all.

        Returns:
            One ``SuiteHistory`` per suite with stored validations, sorted by suite name.
        """
        from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

        with self._context() as context:
            summaries = self._summaries(context, context.validation_results_store.list_keys())
            by_suite: dict[str, list[dict[str, Any]]] = {}
            for key, summary in summaries.items():
                by_suite.setdefault(_suite_of(key), []).append(summary)
            histories = []
            for name, lines in sorted(by_suite.items()):
                if source is not None and not name.startswith(f"{source}."):
                    continue
                latest = max(lines, key=lambda line: line["key"][-2])  # the run time, as GX writes it
                key = ValidationResultIdentifier.from_tuple(tuple(latest["key"]))
                histories.append(
                    SuiteHistory(
                        suite=name,
                        runs=len(lines),
                        passed_runs=sum(line["success"] for line in lines),
                        latest_run=str(key.run_id.run_name),
                        latest_time=key.run_id.run_time.isoformat(),
                        latest_success=latest["success"],
                        latest_successful=latest["successful"],
                        latest_evaluated=latest["evaluated"],
                        latest_page=self._page(context, key),
                    )
                )
            return histories

    def _summaries(self, context: AbstractDataContext, stored: list[Any]) -> dict[tuple[str, ...], dict[str, Any]]:
        """Every summary line by store key, after summarising the results of ``stored``
        (keys in GX's store) that have none: a site from before the lines (callers hold
        the site's lock)."""
        summaries = self._read_summaries()
        store = context.validation_results_store
        added = [_summarise(key, store.get(key)) for key in stored if _key_id(key) not in summaries]
        self._append_summaries(added)
        summaries.update((tuple(line["key"]), line) for line in added)
        return summaries

    def _archive_older(self, context: AbstractDataContext) -> None:
        """Move each suite's results beyond its newest ``results_per_suite`` from GX's
        store to ``archive_dir``, each summarised first (callers hold the site's lock)."""
        store = context.validation_results_store
        by_suite: dict[str, list[Any]] = {}
        for key in store.list_keys():
            by_suite.setdefault(key.expectation_suite_identifier.name, []).append(key)
        older = [
            key
            for keys in by_suite.values()
            for key in sorted(keys, key=lambda key: key.run_id.run_time, reverse=True)[self.results_per_suite :]
        ]
        if not older:
            return
        self._summaries(context, older)  # each result's line is written as it is stored, but older sites'
        for key in older:
            url = store.store_backend.get_url_for_key(key.to_tuple())
            stored = Path(urllib.parse.unquote(url.removeprefix("file://")))
            *folders, batch = _key_id(key)
            archived = self.archive_dir.joinpath(*folders, f"{batch}.json")
            archived.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stored, archived)  # the file as GX wrote it: it leaves GX's store
            for folder in (stored.parent, stored.parent.parent):  # its run time's, then run name's
                if any(folder.iterdir()):
                    break
                folder.rmdir()

    def _read_summaries(self) -> dict[tuple[str, ...], dict[str, Any]]:
        """The summary lines by store key (a torn line, from a writer killed mid-write,
        is skipped: its result is summarised again while GX's store holds it)."""
        path = self.root / _SUMMARIES
        if not path.is_file():
            return {}
        summaries = {}
        for line in path.read_text().splitlines():
            try:
                summary = json.loads(line)
            except json.JSONDecodeError:
                continue
            summaries[tuple(summary["key"])] = summary
        return summaries

    def _append_summaries(self, summaries: list[dict[str, Any]]) -> None:
        """Append summary lines (callers hold the site's lock)."""
        if not summaries:
            return
        with open(self.root / _SUMMARIES, "a") as file:
            file.writelines(json.dumps(summary) + "\n" for summary in summaries)

    @contextmanager
    def _context(self) -> Iterator[AbstractDataContext]:
        """The site's file data context, held under the site's lock."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                gx = _import_gx()
                yield _quiet(gx.get_context(mode="file", project_root_dir=str(self.root)))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _page(self, context: AbstractDataContext, identifier: Any) -> str | None:
        """Local path of a stored result's page; None when GX could not render it."""
        url = context.get_docs_sites_urls(resource_identifier=identifier, site_name=_SITE_NAME)[0]["site_url"]
        return None if url is None else urllib.parse.unquote(url.removeprefix("file://"))


def build_data_docs(root: str | os.PathLike[str]) -> Path:
    """Rebuild the Data Docs of the site in ``root`` (see ``DataDocsSite``).

    Returns:
        The path of the site's ``index.html``.
    """
    return DataDocsSite(root).build()


# ---- helpers --------------------------------------------------------------------------


def _check_mart(mart: str) -> None:
    if mart not in MARTS:
        raise ValueError(f"unknown mart {mart!r}; expected one of {list(MARTS)}")


def _import_gx():
    """Import great_expectations with usage statistics switched off."""
    # Older GX 1.x releases send usage statistics unless this is False.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def _quiet(context: AbstractDataContext) -> AbstractDataContext:
    """Switch off GX's progress bars (they flood logs) for this context."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _key_id(key: Any) -> tuple[str, ...]:
    """A validation result's store key as a tuple of strings (as its summary line keeps it)."""
    return tuple(str(part) for part in key.to_tuple())


def _suite_of(key: tuple[str, ...]) -> str:
    """The suite name of a result's store key (the parts before run name, run time and batch)."""
    return ".".join(key[:-3])


def _summarise(key: Any, result: Any) -> dict[str, Any]:
    """The summary line of the stored validation ``result`` under ``key``: the key, the
    outcome and the expectation counts."""
    return {
        "key": list(_key_id(key)),
        "success": bool(result.success),
        "successful": int(result.statistics["successful_expectations"]),
        "evaluated": int(result.statistics["evaluated_expectations"]),
    }


def _result_identifier(context: AbstractDataContext, outcome: Any) -> Any:
    """The store key of a validation result that ``ValidationDefinition.run`` just stored,
    built from the result as GX keys it (its suite, run and batch): no listing of every
    stored key, which would read the whole history's folder names."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=outcome.suite_name),
        run_id=outcome.meta["run_id"],
        batch_identifier=outcome.batch_id,
    )
    if not context.validation_results_store.has_key(key):
        raise RuntimeError(f"the result of {outcome.suite_name} run {key.run_id} is not stored under {key.to_tuple()}")
    return key


def _describe_failure(result: Any) -> dict[str, Any]:
    """Turn one failed ``ExpectationValidationResult`` into a plain, JSON-friendly dict."""
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
    mismatched = (details.get("details") or {}).get("mismatched") or {}
    return {
        "expectation_type": result.expectation_config.type,
        "column": column,
        "condition": _describe_condition(kwargs.get("row_condition")),
        "observed_value": _to_builtin(details.get("observed_value")),
        "unexpected_count": _to_builtin(details.get("unexpected_count")),
        "unexpected_sample": _to_builtin(details.get("partial_unexpected_list")),
        "missing_columns": _to_builtin(mismatched.get("missing")),
        "exception": exception.get("exception_message"),
    }


def _describe_condition(condition: Any) -> str | None:
    """``"label >= 4.0"`` for a comparison row condition; its plain form otherwise."""
    if not condition:
        return None
    if isinstance(condition, dict) and condition.get("type") == "comparison":
        return f"{condition['column']['name']} {condition['operator']} {condition['parameter']}"
    return str(condition)


def _to_builtin(value: Any) -> Any:
    """Convert numpy and pandas values (also inside lists and tuples) to plain Python ones."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_to_builtin(v) for v in value]
    if isinstance(value, (pd.Timestamp, dt.date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
