"""The daily partitions every day-shaped asset shares, declared once."""

import datetime as dt

import dagster as dg

from reclake.settings import load_settings

_settings = load_settings()
# Historical sources end: their last partition is partitions_end (end_date is exclusive).
_end = (
    None
    if _settings.partitions_end is None
    else (dt.date.fromisoformat(_settings.partitions_end) + dt.timedelta(days=1)).isoformat()
)
daily_partitions = dg.DailyPartitionsDefinition(start_date=_settings.partitions_start, end_date=_end)

# Backfills of many days run as one run: one dbt invocation, one pass over the files.
single_run_backfill = dg.BackfillPolicy.single_run()


def partition_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The calendar days of the run's partition key or partition range, in order."""
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]
