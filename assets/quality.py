"""Great Expectations on the feature marts: one blocking check per mart, and Data Docs.

Each check validates its mart with the suite ``monitoring.data_quality`` derives from the
source's feature spec, in the engine: the expectations run as SQL on the DuckDB warehouse
(read-only), nothing is copied into pandas. ``fct_events`` and ``training_examples`` are
validated for the days of the run's partition window (the query keeps to those days),
with a result recorded per day; ``user_features`` and ``item_features`` as whole tables
(they hold the latest state per id), so those two checks are unpartitioned. Every
validation is recorded in the Data Docs site under ``PipelineResource.data_docs_dir``
and its page linked from the check's metadata, so a failed check can be inspected even
though it stops the assets downstream of it.

``data_docs`` rebuilds the whole site after the marts and reports, per mart, how the
newest validation went and how many of the stored ones passed. It is unpartitioned: the
site covers every validated day. Like every asset downstream of a blocking check, it does
not run when a check fails; the failing check's own metadata links its page.
"""

import datetime as dt
import functools
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from assets.checks import DayOutcome, evaluations_per_day
from assets.partitions import describe_days, partition_days
from monitoring.data_quality import MARTS, DataDocsSite, QualityResult, validate_table
from monitoring.report_server import DATA_DOCS_ROUTE
from resources.lake import LakeResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource

_FAILURES_IN_DESCRIPTION = 5


def _suite_check(mart: str, description: str, **options: Any):
    """The decorator of a mart's blocking Great Expectations check, ``<mart>_expectations``
    (``options``: e.g. ``partitions_def``); it queues on the warehouse's pool."""
    return dg.asset_check(
        asset=dg.AssetKey(mart),
        name=f"{mart}_expectations",
        blocking=True,
        description=description,
        compute_kind="greatexpectations",
        pool="duckdb_warehouse",
        **options,
    )


def _event_mart_check(mart: str, description: str, partitions: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    """The blocking Great Expectations check of an event mart, with a result per day of ``partitions``.

    The run's days are validated in one suite run, as SQL on the warehouse. A pass holds
    for each day: every expectation but the window's row count is row- or column-wise,
    so it holds on any subset of the rows. A failure is validated again day by day (the
    query filtered to that day) to name the failing days; when no single day fails (an
    event id on two days), every day of the run carries the failure of the days together.
    """

    @_suite_check(mart, description, partitions_def=partitions)
    def _check(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        pipeline: PipelineResource,
        lake: LakeResource,
    ):
        spec = pipeline.feature_spec()
        site = pipeline.data_docs_site()
        metadata_of = functools.partial(_check_metadata, site=site, lake=lake)
        days = partition_days(context)
        rows_of = _rows_per_day(warehouse, mart, days)
        context.log.info(f"{mart}: validating {sum(rows_of.values())} rows of {days[0]} .. {days[-1]} in DuckDB")
        together = validate_table(warehouse.path, mart, spec, days=days, site=site)
        outcomes: dict[str, DayOutcome] = {}
        for day in days:
            rows = rows_of.get(day, 0)
            if together.success:
                outcome = DayOutcome(
                    True, {**metadata_of(together, describe_days(days)), "rows": rows}, _summary(together)
                )
            elif rows == 0:
                outcome = DayOutcome(True, {"rows": 0, "status": "no rows"}, "no rows on this day: nothing to validate")
            else:
                alone = validate_table(warehouse.path, mart, spec, days=[day], site=site)
                outcome = DayOutcome(alone.success, metadata_of(alone, day.isoformat()), _summary(alone))
            outcomes[day.isoformat()] = outcome
        if not together.success and all(outcome.passed for outcome in outcomes.values()):
            metadata = metadata_of(together, describe_days(days))
            reason = f"fails over {describe_days(days)} together, though no single day does: {_summary(together)}"
            outcomes = {key: DayOutcome(False, metadata, reason) for key in outcomes}
        failed = sorted(key for key, outcome in outcomes.items() if not outcome.passed)
        context.log.info(f"{mart}: {len(outcomes) - len(failed)} of {len(outcomes)} day(s) passed {together.suite}")
        check_key = dg.AssetCheckKey(dg.AssetKey(mart), f"{mart}_expectations")
        yield from evaluations_per_day(context, check_key, outcomes, blocking=True)

    return _check


def _entity_mart_check(mart: str, description: str) -> dg.AssetChecksDefinition:
    """The blocking Great Expectations check of an entity mart: unpartitioned by design,
    since the table holds the newest state per id, whatever days the run built."""

    @_suite_check(mart, description)
    def _check(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        pipeline: PipelineResource,
        lake: LakeResource,
    ) -> dg.AssetCheckResult:
        site = pipeline.data_docs_site()
        result = validate_table(warehouse.path, mart, pipeline.feature_spec(), site=site)
        context.log.info(f"{mart}: validated the whole table ({result.rows} rows) in DuckDB")
        return dg.AssetCheckResult(
            passed=result.success,
            description=_summary(result),
            metadata=_check_metadata(result, "whole table", site=site, lake=lake),
        )

    return _check


user_features_expectations = _entity_mart_check(
    "user_features",
    "Great Expectations suite from the feature spec on the whole user_features table: one row per "
    "user_id, the user columns' rules and the aggregates (empty when the source has no users). "
    "Unpartitioned by design: the table is the newest state per user, not a day's rows.",
)
item_features_expectations = _entity_mart_check(
    "item_features",
    "Great Expectations suite from the feature spec on the whole item_features table: one row per "
    "item_id, the item columns' rules and the aggregates (empty when the source has no items). "
    "Unpartitioned by design: the table is the newest state per item, not a day's rows.",
)


def build_event_mart_checks(partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """The event marts' checks (``fct_events``, ``training_examples``) on the source's daily ``partitions``."""
    return [
        _event_mart_check(
            "fct_events",
            "Great Expectations suite from the feature spec on fct_events, a result per day: unique event ids, "
            "days inside the partition, ids present or null as the spec says, 0/1 labels and is_positive, "
            "non-negative prices, allowed values, ranges and nullability of the spec columns.",
            partitions,
        ),
        _event_mart_check(
            "training_examples",
            "Great Expectations suite from the feature spec on training_examples, a result per day: the "
            "fct_events rules plus every label, the aggregates (counts >= 0, positives <= events, longer "
            "windows >= shorter, rates in [0, 1]) and user_history.",
            partitions,
        ),
    ]


@dg.asset(
    group_name="quality",
    deps=[dg.AssetKey(mart) for mart in MARTS],
    kinds={"greatexpectations", "html"},
)
def data_docs(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, lake: LakeResource
) -> dg.MaterializeResult:
    """Great Expectations Data Docs of every mart validation the checks recorded.

    The checks render their own pages as they validate; this asset renders the newest
    validation of each suite and the index again (``DataDocsSite.refresh``: a page a
    check could not render gets another chance), never the whole history.
    The site lives in ``PipelineResource.data_docs_dir`` (local); when the lake is on S3
    a copy of the HTML goes to ``Lake.data_docs_dir()`` too. Metadata: the index page,
    and per mart the newest validation's outcome and how many stored validations passed.
    """
    site = pipeline.data_docs_site()
    index = site.refresh()
    spec = pipeline.feature_spec()
    histories = {history.suite: history for history in site.histories(source=spec.source)}
    metadata: dict[str, Any] = {"index": dg.MetadataValue.path(str(index))}
    served = lake.reports_page(f"{DATA_DOCS_ROUTE}/index.html")
    if served is not None:
        metadata["index_url"] = served
    rows = ["| mart | newest run | newest result | expectations passed | runs passed |", "|---|---|---|---|---|"]
    for mart in MARTS:
        history = histories.get(f"{spec.source}.{mart}")
        if history is None:
            rows.append(f"| {mart} | not validated yet | | | |")
            continue
        outcome = "passed" if history.latest_success else "failed"
        rows.append(
            f"| {mart} | {history.latest_run} | {outcome} | {history.latest_successful}/{history.latest_evaluated} "
            f"| {history.passed_runs}/{history.runs} |"
        )
        metadata[f"{mart}_latest_success"] = history.latest_success
        metadata[f"{mart}_runs_passed"] = history.passed_runs
        metadata[f"{mart}_runs"] = history.runs
    metadata["marts"] = dg.MetadataValue.md("\n".join(rows))
    store = lake.get_lake()
    if not store.is_local:
        url = store.data_docs_dir()
        store.upload_dir(str(site.site_dir), url)
        metadata["index_copy"] = dg.MetadataValue.url(f"{url}/index.html")
    context.log.info(f"Data Docs of {len(histories)} {spec.source} suite(s) at {index}")
    return dg.MaterializeResult(metadata=metadata)


def _rows_per_day(warehouse: WarehouseResource, mart: str, days: list[dt.date]) -> dict[dt.date, int]:
    """How many rows of ``mart`` each of ``days`` holds (days without rows are left out)."""
    counts = warehouse.query(
        f"select event_date, count(*) as n from {mart} where event_date between ? and ? group by event_date",
        [days[0], days[-1]],
    )
    return {pd.Timestamp(day).date(): int(n) for day, n in zip(counts["event_date"], counts["n"], strict=True)}


def _summary(result: QualityResult) -> str:
    """One line naming the failed expectations (the first few)."""
    if result.success:
        return f"{result.suite}: all {result.evaluated} expectations passed on {result.rows} rows"
    names = [
        f"{failure['expectation_type']}({failure['column'] or 'table'})"
        for failure in result.failed[:_FAILURES_IN_DESCRIPTION]
    ]
    more = len(result.failed) - len(names)
    return (
        f"{result.suite}: {len(result.failed)} of {result.evaluated} expectations failed on {result.rows} rows: "
        + ", ".join(names)
        + (f" and {more} more" if more else "")
    )


def _site_page(site: DataDocsSite, lake: LakeResource, page: str) -> dict[str, Any]:
    """``data_docs_page`` (the local file) and ``data_docs_url`` (the report server's copy)."""
    links: dict[str, Any] = {"data_docs_page": dg.MetadataValue.path(page)}
    served = lake.reports_page(f"{DATA_DOCS_ROUTE}/{Path(page).relative_to(site.site_dir).as_posix()}")
    if served is not None:
        links["data_docs_url"] = served
    return links


def _check_metadata(result: QualityResult, scope: str, site: DataDocsSite, lake: LakeResource) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "suite": result.suite,
        "validated": scope,
        "rows": result.rows,
        "evaluated_expectations": result.evaluated,
        "failed_expectations": dg.MetadataValue.json(result.failed),
        "success_percent": float(result.statistics.get("success_percent") or 0.0),
    }
    if result.docs_page is not None:
        metadata.update(_site_page(site, lake, result.docs_page))
    return metadata
