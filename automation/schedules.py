"""The daily schedule over the ingest-to-serve job."""

import dagster as dg

from automation.jobs import ingest_to_serve_job

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
