"""Monitoring: a daily Evidently drift report of the features against a reference window,
also kept as a snapshot in the lake's Evidently workspace for its UI's dashboards."""

import datetime as dt
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.model_monitoring import evidently_project
from assets.partitions import day_range_backfill, partition_days
from monitoring.drift import build_drift_report, monitored_columns
from monitoring.workspace import project_url
from resources.lake import LakeResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource


def drift_report(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    pipeline: PipelineResource,
):
    """An Evidently data-drift report per day: that day's features against the days before it.

    The reference is the ``drift_reference_days`` days before the partition (fewer for
    the first days). The very first day has no reference: it is recorded with
    ``status: no reference`` and no report. A trailing aggregate whose window is longer
    than the history before the reference starts still grows by construction, so it is
    left out of that day's report (the metadata lists the aggregates compared). A run over a long history (a backfill) reports its
    newest ``drift_days_per_run`` days. Reports are HTML files in the lake under
    ``reports/drift/dt=YYYY-MM-DD/drift_report.html``; each day's snapshot also goes to
    the source's project in the lake's Evidently workspace (on S3 too; replacing the
    day's earlier one), which ``make reports`` serves with dashboards over time
    (``evidently_url`` links the project there, at ``LakeResource.evidently_ui_url``).
    """
    store = lake.get_lake()
    spec = pipeline.feature_spec()
    drift_project = evidently_project(store, pipeline, spec)
    first_loaded = warehouse.event_dates("training_examples")[0]
    days = partition_days(context)
    reported = set(days[-pipeline.drift_days_per_run :])
    # Only what any day's report may compare is read (not the histories and ids).
    read_columns = ["event_date", *(name for names in monitored_columns(spec) for name in names)]
    run_days: list[dict] = []  # each day's status and drifted share, for the run's summary
    for day in days:
        if day not in reported:
            run_days.append({"day": day.isoformat(), "status": "skipped", "drifted_share": ""})
            context.add_asset_metadata(
                partition_key=day.isoformat(),
                metadata={"status": f"skipped: a run reports its newest {pipeline.drift_days_per_run} days"},
            )
            continue
        first_reference = day - dt.timedelta(days=pipeline.drift_reference_days)
        frame = warehouse.read_days("training_examples", first_reference, day, read_columns)
        dates = pd.to_datetime(frame["event_date"]).dt.date
        current, reference = frame[dates == day], frame[dates < day]
        if current.empty or reference.empty:
            status = "no rows" if current.empty else "no reference"
            context.log.warning(f"{day}: {status}; no drift report")
            run_days.append({"day": day.isoformat(), "status": status, "drifted_share": ""})
            context.add_asset_metadata(
                partition_key=day.isoformat(),
                metadata={"status": status, "current_rows": len(current)},
            )
            continue
        history_days = (min(dates[dates < day]) - first_loaded).days
        numerical, categorical = monitored_columns(spec, history_days=history_days)
        url = store.drift_report_file(day)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "drift_report.html"
            summary = build_drift_report(current, reference, numerical, categorical, local)
            store.upload_file(str(local), url)
        evidently_links = {}
        if drift_project is not None:
            drift_project.add(day, summary.snapshot)
            if lake.evidently_ui_url:
                evidently_links["evidently_url"] = dg.MetadataValue.url(
                    project_url(lake.evidently_ui_url, drift_project.id)
                )
        context.log.info(f"{day}: drifted columns {summary.drifted_columns}")
        run_days.append({"day": day.isoformat(), "status": "reported", "drifted_share": summary.drifted_share})
        context.add_asset_metadata(
            partition_key=day.isoformat(),
            metadata={
                "status": "reported",
                **lake.report_links("report", url),
                **evidently_links,
                "drifted_share": summary.drifted_share,
                "drifted_columns": dg.MetadataValue.json(summary.drifted_columns),
                "dataset_drift": summary.dataset_drift,
                "column_scores": dg.MetadataValue.json(summary.column_scores),
                "reference_days": f"{min(dates[dates < day])} .. {day - dt.timedelta(days=1)}",
                "current_rows": summary.current_rows,
                "reference_rows": summary.reference_rows,
                "sampled_rows": dg.MetadataValue.json(
                    {"current": summary.current_sampled, "reference": summary.reference_sampled}
                ),
                "drift_methods": dg.MetadataValue.json(sorted(set(summary.column_methods.values()))),
                "aggregates_compared": dg.MetadataValue.json(
                    [c for c in numerical + categorical if c in {a.name for a in spec.aggregate_features}]
                ),
            },
        )

    # Shared by every day of the run; each day's own figures are set above.
    lines = ["| day | status | drifted share |", "|---|---|---|"]
    lines += [f"| {d['day']} | {d['status']} | {d['drifted_share']} |" for d in run_days]
    yield dg.MaterializeResult(metadata={"run_days": dg.MetadataValue.md("\n".join(lines))})


def build_drift_report_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``drift_report`` on the source's daily ``partitions``."""
    return dg.asset(
        partitions_def=partitions,
        backfill_policy=day_range_backfill,
        group_name="monitoring",
        deps=[dg.AssetKey("training_examples")],
        kinds={"evidently", "html"},
        pool="duckdb_warehouse",
    )(drift_report)
