"""The daily schedules: the ingest-to-serve job, and the synthetic demo's own feed."""

import dagster as dg

from automation.jobs import ingest_to_serve_job, landing_job

# Fires at 02:00 UTC every day for the day that just ended (the previous partition),
# once late log files have had two hours to land. Stopped by default: the landing
# sensor already reacts to each day as it arrives; turn this on where logs land on a
# fixed daily clock instead.
daily_ingest_schedule = dg.build_schedule_from_partitioned_job(
    ingest_to_serve_job,
    hour_of_day=2,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

# The synthetic demo as a live feed: shortly after midnight UTC the generator lands the
# day that just ended, the landing sensor launches ingest_to_serve_job for it, and a new
# model is served and a new drift report written with nobody at the keyboard. Stopped by
# default (it trains a model a day); one click in the UI's Automation tab starts it.
synthetic_feed_schedule = dg.build_schedule_from_partitioned_job(
    landing_job,
    name="synthetic_feed_schedule",
    hour_of_day=0,
    minute_of_hour=10,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
