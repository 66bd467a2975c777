"""The daily partitions every day-shaped asset shares, declared once."""

import datetime as dt

import dagster as dg

from reclake.settings import load_settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=load_settings().partitions_start)

# Backfills of many days run as one run: one dbt invocation, one pass over the files.
single_run_backfill = dg.BackfillPolicy.single_run()


def partition_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The calendar days of the run's partition key or partition range, in order."""
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]
