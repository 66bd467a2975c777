"""Freshness checks: a live source's marts, reports and served model say when they are late.

Each day's partition of the marts and reports is due by 04:00 UTC the next day (the
landing sensor ingests a day minutes after it lands; the schedule runs at 02:00); the
served model is due every ``MODEL_MAX_AGE``. The checks are WARN, evaluated by their own
sensor (not by the jobs: a backfill of old days is not late), which runs for sources
that keep landing days and is stopped for historical ones (``partitions_end`` set).
"""

import datetime as dt
import warnings

import dagster as dg

DAY_DUE_CRON = "0 4 * * *"  # yesterday's partition must be materialized by 04:00 UTC
MODEL_MAX_AGE = dt.timedelta(days=8)  # a week of on_drift policy without an alert, plus a day

# Dagster now also offers FreshnessPolicy on the assets themselves; these checks are the
# form whose evaluation (a sensor) works without Dagster+ and shows as WARN check results.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    daily_freshness_checks = dg.build_time_partition_freshness_checks(
        assets=["training_examples", "drift_report", "served_model_quality"], deadline_cron=DAY_DUE_CRON
    )
    model_freshness_checks = dg.build_last_update_freshness_checks(
        assets=["bento_model"], lower_bound_delta=MODEL_MAX_AGE
    )
FRESHNESS_CHECKS = [*daily_freshness_checks, *model_freshness_checks]


def build_freshness_sensor(live: bool) -> dg.SensorDefinition:
    """The sensor that evaluates the freshness checks: running for a ``live`` source."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=FRESHNESS_CHECKS,
            minimum_interval_seconds=600,
            default_status=dg.DefaultSensorStatus.RUNNING if live else dg.DefaultSensorStatus.STOPPED,
        )
