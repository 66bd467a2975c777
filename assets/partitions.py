"""The daily partitions every day-shaped asset shares, built from the settings, and helpers
for the days a run covers."""

import datetime as dt

import dagster as dg

from reclake.settings import Settings


def settings_partitions(settings: Settings) -> tuple[dt.datetime, dt.datetime | None]:
    """(start, end) of the daily partitions ``settings`` describe; end is exclusive, None
    when open-ended (historical sources end the day after ``partitions_end``)."""
    start = dt.datetime.fromisoformat(settings.partitions_start).replace(tzinfo=dt.UTC)
    if settings.partitions_end is None:
        return start, None
    end = dt.datetime.fromisoformat(settings.partitions_end).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    return start, end


def daily_partitions_for(settings: Settings) -> dg.DailyPartitionsDefinition:
    """The daily partitions every day-shaped asset of ``settings``' source shares."""
    start, end = settings_partitions(settings)
    return dg.DailyPartitionsDefinition(
        start_date=start.strftime("%Y-%m-%d"), end_date=end and end.strftime("%Y-%m-%d")
    )


# The most days one run covers. When Dagster (1.13) creates a run over a range of days it
# writes a row per day for each of the run's asset checks (about 1 s per check at 2,400
# days; the main job has 60): a year per run keeps a run's start within seconds. Longer
# histories run as several runs: `make run` (automation/main_run.py) and the UI's
# backfills (`day_range_backfill`) alike.
MAX_DAYS_PER_RUN = 365

# Backfills of up to MAX_DAYS_PER_RUN days run as one run (one dbt invocation, one pass
# over the files); longer ones as one run per MAX_DAYS_PER_RUN days, oldest first.
day_range_backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_DAYS_PER_RUN)


def partition_range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """Run tags that make one run of a partitioned job cover ``first .. last`` (inclusive),
    as a single-run backfill does."""
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def partition_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The calendar days of the run's partition key or partition range, in order."""
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def describe_days(days: list[dt.date]) -> str:
    """``2024-03-01`` for one day, ``2024-03-01 .. 2024-03-07`` for several (in order)."""
    return days[0].isoformat() if len(days) == 1 else f"{days[0]} .. {days[-1]}"
