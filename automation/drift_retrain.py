"""The drift sensor: a day whose feature drift or served-model quality crosses an alert
threshold retrains the model, whatever the landing cadence."""

import datetime as dt

import dagster as dg

from assets.checks import newest_metadata
from automation.jobs import retrain_job
from resources.monitoring import MonitoringResource

WATCHED = ("drift_report", "served_model_quality")  # the assets whose days can raise an alert
_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _newest_model_day(instance: dg.DagsterInstance) -> dt.date | None:
    """The newest day the newest trained model has seen (its held-out test day)."""
    evaluated_on = (newest_metadata(instance, "recommender_model") or {}).get("evaluated_on")
    return dt.date.fromisoformat(evaluated_on) if evaluated_on is not None else None


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrains (retrain_job) when a day's drift_report or served_model_quality crosses an alert "
    "threshold (MonitoringResource) and the newest model has not seen that day; one run per alert day, judged "
    "once no run is in progress. Champion/challenger still decides what is served.",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext, monitoring: MonitoringResource) -> dg.SensorResult:
    # A run in progress may be the one that retrains on the alert's day (with the daily
    # policy, the landed day's own run trains after judging it): judge alerts when it ends.
    if context.instance.get_run_records(filters=dg.RunsFilter(statuses=_IN_PROGRESS), limit=1):
        return dg.SensorResult(skip_reason=dg.SkipReason("a run is in progress; alerts are judged when it ends"))
    after = int(context.cursor or 0)
    alerts: dict[str, list[str]] = {}
    newest_seen = after
    for asset in WATCHED:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), after_storage_id=after), limit=1000, ascending=True
        ).records
        for record in records:
            newest_seen = max(newest_seen, record.storage_id)
            materialization = record.asset_materialization
            metadata = {key: value.value for key, value in (materialization.metadata or {}).items()}
            raised = monitoring.day_alerts(asset, metadata)
            if raised and materialization.partition:
                alerts.setdefault(materialization.partition, []).extend(f"{asset}: {a}" for a in raised)
    if not alerts:
        return dg.SensorResult(cursor=str(newest_seen), skip_reason=dg.SkipReason("no alert on a new day"))
    day = max(alerts)  # one retrain covers every alert: it trains on the newest window
    seen = _newest_model_day(context.instance)
    if seen is not None and dt.date.fromisoformat(day) <= seen:
        reason = f"alert on {day}, but the newest model ({seen}) has seen it already: {alerts[day]}"
        context.log.info(reason)
        return dg.SensorResult(cursor=str(newest_seen), skip_reason=dg.SkipReason(reason))
    context.log.info(f"alert on {day}: {alerts[day]}; retraining")
    request = dg.RunRequest(
        run_key=f"drift-retrain-{day}",
        tags={"reclake/trigger": "drift_retrain_sensor", "reclake/alert_day": day,
              "reclake/alerts": "; ".join(alerts[day])[:1000]},
    )  # fmt: skip
    return dg.SensorResult(run_requests=[request], cursor=str(newest_seen))
