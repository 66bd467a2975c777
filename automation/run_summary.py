"""Run the main job over the configured source's days and summarise what it produced."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import dagster as dg

from reclake.lake import Lake
from reclake.settings import Settings

MAIN_JOB = "reclake_main_job"


def _metadata_value(value: Any) -> Any:
    return value.value if isinstance(value, dg.MetadataValue) else value


def step_durations(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds each step of a run took, from its start and end events."""
    started: dict[str, float] = {}
    durations: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            durations[event.step_key] = round(entry.timestamp - started.get(event.step_key, entry.timestamp), 2)
    return durations


def check_outcomes(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    """``asset/check`` -> passed, for every asset check evaluated in a run (the last word wins)."""
    outcomes: dict[str, bool] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        key = evaluation.asset_check_key
        outcomes[f"{key.asset_key.to_user_string()}/{key.name}"] = evaluation.passed
    return outcomes


def run_main_job(settings: Settings, instance: dg.DagsterInstance) -> tuple[dict[str, Any], str]:
    """Materialize every asset for the source's days (``Settings.run_days``) as one run
    and write the summary.

    Returns:
        The summary (keys ``model_version``, ``metrics``, ``savedmodel_path``,
        ``bento_model_tag``, ``drift_report_path``, ``partitions``, plus
        ``stage_seconds`` and ``run_id``) and the URL of ``run_summary.json``.

    Raises:
        RuntimeError: when the run fails, naming the failed steps.
    """
    from definitions import build_definitions

    days = settings.run_days()
    defs = build_definitions(settings)
    job = defs.resolve_job_def(MAIN_JOB)
    result = job.execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        tags={
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
        },
        raise_on_error=False,
    )
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        raise RuntimeError(f"run {result.run_id} failed in steps {failed}; `make ui` shows the logs")

    latest: dict[str, dict[str, Any]] = {}
    by_partition: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        name = materialization.asset_key.to_user_string()
        metadata = {k: _metadata_value(v) for k, v in materialization.metadata.items()}
        latest[name] = metadata
        if materialization.partition:
            by_partition[name][materialization.partition] = metadata

    checks = check_outcomes(instance, result.run_id)
    model = latest["recommender_model"]
    drift = by_partition["drift_report"].get(days[-1].isoformat(), {})
    summary = {
        "model_version": model["model_version"],
        "metrics": model["metrics"],
        "savedmodel_path": model["savedmodel_path"],
        "bento_model_tag": latest["bento_model"]["bento_model_tag"],
        "drift_report_path": drift.get("report_path"),
        "partitions": [d.isoformat() for d in days],
        "stage_seconds": step_durations(instance, result.run_id),
        "checks": {"passed": sum(checks.values()), "failed": sorted(k for k, ok in checks.items() if not ok)},
        "run_id": result.run_id,
    }
    lake = Lake.open(settings.lake_root, settings.s3_endpoint_url)
    url = lake.run_summary_file()
    lake.write_bytes(url, json.dumps(summary, indent=2).encode())
    return summary, url

