"""The landing sensor: a day that arrives in the landing zone starts its run."""

import datetime as dt

import dagster as dg

from assets.partitions import partition_range_tags
from automation.arrivals import Arrival, decide_arrivals
from resources.lake import LakeResource
from resources.pipeline import PipelineResource


def build_landing_sensor(daily_partitions: dg.PartitionsDefinition, job, *, interval_s: int) -> dg.SensorDefinition:
    """The landing sensor of a source whose days are ``daily_partitions``, evaluated every
    ``interval_s`` seconds (``Settings.landing_sensor_interval_s``): landed days outside
    them are reported and ignored; each new day runs ``job`` (``ingest_to_serve_job``, or
    ``ingest_to_monitor_job`` with ``retrain_policy: on_drift``)."""

    @dg.sensor(
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Watches landing/<source>/dt=YYYY-MM-DD/ and runs {job.name} once per "
        "new or re-delivered day; the cursor remembers what it has launched. A re-delivered or late "
        "day's run also covers the ingested days within the features' longest window after it.",
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, lake: LakeResource, pipeline: PipelineResource
    ) -> dg.SensorResult:
        landed = lake.get_lake().landed_days(pipeline.source)
        valid_keys = set(daily_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
        in_range = {day: fp for day, fp in landed.items() if day.isoformat() in valid_keys}
        skipped = sorted(set(landed) - set(in_range))
        ingested = {
            dt.date.fromisoformat(key)
            for key in context.instance.get_materialized_partitions(dg.AssetKey("raw_events"))
        }
        lookback = max(pipeline.feature_spec().aggregates.windows_days)
        arrivals, cursor = decide_arrivals(in_range, context.cursor, ingested, lookback_days=lookback)
        if skipped:
            context.log.warning(f"landed days outside the partitions, ignored: {[d.isoformat() for d in skipped]}")
        return dg.SensorResult(run_requests=[_run_request(arrival) for arrival in arrivals], cursor=cursor)

    return landing_sensor


def _run_request(arrival: Arrival) -> dg.RunRequest:
    """One run for the arrival's day, or over its range when later days depend on it."""
    tags = {"reclake/trigger": "landing_sensor"}
    if arrival.last_day == arrival.day:
        return dg.RunRequest(run_key=arrival.run_key, partition_key=arrival.day.isoformat(), tags=tags)
    return dg.RunRequest(run_key=arrival.run_key, tags={**tags, **partition_range_tags(arrival.day, arrival.last_day)})
