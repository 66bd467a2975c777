"""Asset-check results per daily partition, for steps that cover several days.

A run over a range of days (``make run``, a single-run backfill) executes a partitioned
check once. Dagster records an ``AssetCheckResult`` from such a step against no
partition, so the UI would show every day of the range as never checked. These helpers
record one evaluation per day instead, each linked to that day's materialization, and
still emit the check's output so that a blocking check gates what depends on it (a
failed blocking evaluation fails the step and stops everything downstream).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)


@dataclass(frozen=True)
class DayOutcome:
    """A check's verdict on one day: passed, what it saw, and one line on why."""

    passed: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None


# Partitions per pair of queries when fetching the newest materializations of many days.
_DAYS_PER_QUERY = 500


def _target_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: Collection[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The newest materialization of each of ``asset_key``'s ``partitions``: what each
    day's evaluation judged (a partition never materialized is absent).

    Two queries per ``_DAYS_PER_QUERY`` days (the newest storage id of each partition,
    then those records), so a check over years of daily partitions does not ask the event
    log once per day (4 ms each on SQLite: 10 s over 2,400 days).
    """
    days = sorted(partitions)
    targets: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for start in range(0, len(days), _DAYS_PER_QUERY):
        newest = instance.event_log_storage.get_latest_storage_id_by_partition(
            asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(days[start : start + _DAYS_PER_QUERY])
        )
        if not newest:
            continue
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=sorted(newest.values())), limit=len(newest)
        ).records
        for record in records:
            targets[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                run_id=record.event_log_entry.run_id, storage_id=record.storage_id, timestamp=record.timestamp
            )
    return targets


def newest_metadata(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> dict[str, Any] | None:
    """The metadata values of the newest materialization of ``asset`` (of its
    ``partition``, if given); None when it was never materialized."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    if not records:
        return None
    materialization = records[0].asset_materialization
    return {key: value.value for key, value in (materialization.metadata or {}).items()}


def evaluations_per_day(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    check_key: dg.AssetCheckKey,
    outcomes: Mapping[str, DayOutcome],
    *,
    blocking: bool,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """One ``AssetCheckEvaluation`` per partition key of ``outcomes``, then the check's output.

    Args:
        context: the executing asset's or check's context.
        check_key: the check being evaluated (declared on the executing step).
        outcomes: partition key (``YYYY-MM-DD``) -> that day's outcome.
        blocking: whether the check is blocking (as declared).
        severity: the severity of a failed evaluation.

    Yields:
        The evaluations, oldest day first, then the ``Output`` Dagster expects for the check.
    """
    targets = _target_materializations(context.instance, check_key.asset_key, outcomes.keys())
    for partition in sorted(outcomes):
        outcome = outcomes[partition]
        yield dg.AssetCheckEvaluation(
            asset_key=check_key.asset_key,
            check_name=check_key.name,
            passed=outcome.passed,
            metadata=dict(outcome.metadata),
            description=outcome.description,
            severity=severity,
            blocking=blocking,
            partition=partition,
            target_materialization_data=targets.get(partition),
        )
    assets_def = context.op_execution_context.assets_def
    yield dg.Output(None, output_name=assets_def.get_output_name_for_asset_check_key(check_key))
