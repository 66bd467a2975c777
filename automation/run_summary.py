"""Run the main job over the configured source's days and summarise what it produced."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import dagster as dg

from assets.partitions import partition_range_tags
from assets.progress import readable
from reclake.lake import Lake
from reclake.settings import Settings

MAIN_JOB = "reclake_main_job"
# The feature path alone: the older years of a long history (automation.main_run).
HISTORY_JOB = "history_job"


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
    """``asset/check`` -> passed, for every asset check evaluated in a run: a check
    evaluated per day passed when every day did."""
    outcomes: dict[str, bool] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        key = evaluation.asset_check_key
        name = f"{key.asset_key.to_user_string()}/{key.name}"
        outcomes[name] = outcomes.get(name, True) and evaluation.passed
    return outcomes


def warning_checks(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """``asset/check`` names whose every failed evaluation in the run had WARN severity
    (drift, calibration, freshness): a warning to read, not a failed run."""
    failed_severities: dict[str, set] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed:
            key = evaluation.asset_check_key
            name = f"{key.asset_key.to_user_string()}/{key.name}"
            failed_severities.setdefault(name, set()).add(evaluation.severity)
    return {name for name, severities in failed_severities.items() if severities == {dg.AssetCheckSeverity.WARN}}


def main_job_tags(days: list) -> dict[str, str]:
    """The run tags that make one run of a daily job cover ``days`` (a single-run backfill)."""
    return partition_range_tags(days[0], days[-1])


def run_main_job(settings: Settings, instance: dg.DagsterInstance) -> tuple[dict[str, Any], str]:
    """Materialize every asset for the source's days (``Settings.run_days``) as one run in
    this process, and write the summary. ``make run`` launches the same run through the
    instance instead (``automation.main_run``); this is for tests and benchmarks that
    build Definitions for settings of their own.

    Returns:
        ``summarise_run``'s summary and URL.

    Raises:
        RuntimeError: when the run fails, naming the failed steps.
    """
    from definitions import build_definitions

    defs = build_definitions(settings)
    job = defs.resolve_job_def(MAIN_JOB)
    result = job.execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        tags=main_job_tags(settings.run_days()),
        raise_on_error=False,
    )
    if not result.success:
        raise RuntimeError(f"run {result.run_id} failed in steps {failed_steps(instance, result.run_id)}")
    return summarise_run(settings, instance, result.run_id)


def failed_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The steps of a run that failed."""
    return [
        entry.dagster_event.step_key
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        if entry.dagster_event is not None
    ]


def summarise_run(
    settings: Settings, instance: dg.DagsterInstance, run_id: str, history_run_ids: Sequence[str] = ()
) -> tuple[dict[str, Any], str]:
    """What a finished main-job run produced, from the instance's event log; written to
    ``run_summary.json`` in the lake root. ``history_run_ids``: the history-job runs that
    built the older days before it (a long history); their days count in ``events_per_day``.

    Returns:
        The summary (the run's configuration: ``source``, ``ranker_config`` (and with
        ``auto`` the ``ranker_choice``: candidates, choice, margin, and for a source with
        ids the ``retriever_choice``), ``events_per_day``; ``model_version``, ``metrics``, ``savedmodel_path``,
        ``bento_model_tag``, ``drift_report_path`` and ``drift_report_url`` (on the report
        server of ``make ui``), ``partitions``, plus
        ``stage_seconds``, ``checks``, ``run_id`` and ``history_run_ids``) and the URL of
        ``run_summary.json``.
    """
    run = instance.get_run_by_id(run_id)
    days = settings.run_days()
    latest: dict[str, dict[str, Any]] = {}
    by_partition: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    rows_per_day: dict[str, int] = {}
    for each_run in [*history_run_ids, run_id]:  # oldest first: the main run's values are the latest
        for entry in instance.all_logs(each_run, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.dagster_event.event_specific_data.materialization
            name = materialization.asset_key.to_user_string()
            metadata = {k: _metadata_value(v) for k, v in materialization.metadata.items()}
            latest[name] = metadata
            if materialization.partition:
                by_partition[name][materialization.partition] = metadata
    for day, metadata in by_partition.get("raw_events", {}).items():
        if "dagster/row_count" in metadata:
            rows_per_day[day] = int(metadata["dagster/row_count"])

    checks = check_outcomes(instance, run_id)
    warned = warning_checks(instance, run_id)
    model = latest["recommender_model"]
    drift = by_partition["drift_report"].get(days[-1].isoformat(), {})
    summary = {
        "source": settings.source,
        "ranker_config": settings.ranker_config,
        # With ranker_config: auto, the candidates' figures, the choice and its margin.
        **({"ranker_choice": model["ranker_choice"]} if "ranker_choice" in model else {}),
        # ... and, for a source with ids, the retrieval's (popularity_won says when the baseline beat it).
        **({"retriever_choice": model["retriever_choice"]} if "retriever_choice" in model else {}),
        "partitions": [d.isoformat() for d in days],
        "events_per_day": rows_per_day,
        "model_version": model["model_version"],
        "metrics": {name: readable(value) for name, value in model["metrics"].items()},
        "savedmodel_path": model["savedmodel_path"],
        "bento_model_tag": latest["bento_model"]["bento_model_tag"],
        "drift_report_path": drift.get("report_path"),
        "drift_report_url": drift.get("report_url"),
        "stage_seconds": step_durations(instance, run_id),
        "checks": {
            "passed": sum(checks.values()),
            "failed": sorted(k for k, ok in checks.items() if not ok and k not in warned),
            "warned": sorted(k for k, ok in checks.items() if not ok and k in warned),
        },
        "run_id": run_id,
        "history_run_ids": list(history_run_ids),
        "job": run.job_name if run else MAIN_JOB,
    }
    lake = Lake.open(settings.lake_root, settings.s3_endpoint_url)
    url = lake.run_summary_file()
    lake.write_bytes(url, json.dumps(summary, indent=2).encode())
    return summary, url
