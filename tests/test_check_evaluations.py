"""Per-day check evaluations (``assets.checks.evaluations_per_day``) on a real Dagster
instance: one evaluation per day of a run, each linked to that day's newest
materialization, whichever run wrote it."""

import warnings

import dagster as dg

from assets import checks
from assets.checks import DayOutcome, evaluations_per_day

warnings.filterwarnings("ignore", category=dg.PreviewWarning)  # partitioned checks, as definitions.py

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-07")  # the last day is 2024-01-06
FIRST, LAST = "2024-01-01", "2024-01-05"


@dg.asset(partitions_def=DAYS)
def daily_table() -> None:
    """A day of rows (nothing is stored: only its materializations matter here)."""


@dg.asset_check(asset=daily_table, partitions_def=DAYS, blocking=True)
def daily_table_is_even(context: dg.AssetCheckExecutionContext):
    """Passes on days of the month that are even, so each day's verdict is its own."""
    start, end = context.partition_key_range.start, context.partition_key_range.end
    days = [key for key in DAYS.get_partition_keys() if start <= key <= end]
    outcomes = {day: DayOutcome(int(day[-2:]) % 2 == 0, {"day": day}) for day in days}
    yield from evaluations_per_day(context, daily_table_is_even.check_key, outcomes, blocking=False)


def _run(instance: dg.DagsterInstance, selection: list, first: str, last: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        selection,
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )


def _newest_materializations(instance: dg.DagsterInstance) -> dict[str, tuple[str, int]]:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=daily_table.key), limit=100).records
    newest: dict[str, tuple[str, int]] = {}
    for record in records:  # newest first
        newest.setdefault(record.partition_key, (record.event_log_entry.run_id, record.storage_id))
    return newest


def test_each_day_is_linked_to_its_newest_materialization(monkeypatch):
    # Two days per query: the days' records come back over several queries.
    monkeypatch.setattr(checks, "_DAYS_PER_QUERY", 2)
    instance = dg.DagsterInstance.ephemeral()
    _run(instance, [daily_table], FIRST, LAST)
    _run(instance, [daily_table], "2024-01-03", "2024-01-03")
    # A check over six days, one of which (2024-01-06) was never materialized.
    result = _run(instance, [daily_table, daily_table_is_even], FIRST, "2024-01-06")
    evaluations = {e.partition: e for e in result.get_asset_check_evaluations()}

    assert sorted(evaluations) == [f"2024-01-0{d}" for d in range(1, 7)]
    assert [evaluations[day].passed for day in sorted(evaluations)] == [False, True, False, True, False, True]
    newest = _newest_materializations(instance)
    for day, evaluation in evaluations.items():
        target = evaluation.target_materialization_data
        assert (target.run_id, target.storage_id) == newest[day], day
    # The check's own run re-materialized every day: each links to that run.
    assert {evaluation.target_materialization_data.run_id for evaluation in evaluations.values()} == {result.run_id}


def test_a_check_alone_links_to_the_runs_that_wrote_the_days():
    instance = dg.DagsterInstance.ephemeral()
    first = _run(instance, [daily_table], FIRST, LAST)
    rewritten = _run(instance, [daily_table], "2024-01-03", "2024-01-03")
    check_only = dg.AssetSelection.checks(daily_table_is_even)
    result = dg.materialize(
        [daily_table, daily_table_is_even],
        selection=check_only,
        instance=instance,
        tags={"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": "2024-01-06"},
    )
    evaluations = {e.partition: e for e in result.get_asset_check_evaluations()}

    assert len(evaluations) == 6
    runs = {day: (e.target_materialization_data.run_id if e.target_materialization_data else None)
            for day, e in evaluations.items()}  # fmt: skip
    assert runs == {
        "2024-01-01": first.run_id,
        "2024-01-02": first.run_id,
        "2024-01-03": rewritten.run_id,
        "2024-01-04": first.run_id,
        "2024-01-05": first.run_id,
        "2024-01-06": None,  # never materialized: nothing to link
    }
