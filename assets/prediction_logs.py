"""Monitoring: the serving process's prediction logs of a day, validated into one Parquet file."""

import dagster as dg
import pandas as pd

from assets.partitions import day_range_backfill, partition_days
from resources.lake import LakeResource
from resources.pipeline import PipelineResource
from serving.prediction_log_reader import compact_prediction_logs


def prediction_logs(
    context: dg.AssetExecutionContext, lake: LakeResource, pipeline: PipelineResource
) -> dg.MaterializeResult:
    """The requests the model service answered, one Parquet file per day.

    The service's ``serving.prediction_log.PredictionLogger`` lands JSON-lines parts under
    ``landing/prediction_logs/<source>/dt=YYYY-MM-DD/``; this reads a day's parts,
    validates every line against ``PREDICTION_LOG_COLUMNS`` and writes the good rows to
    ``prediction_logs/<source>/dt=.../predictions.parquet`` (``features`` as JSON text,
    ``scores`` and ``items`` as lists) and the rejected lines, with file, line, field and
    reason, to ``quarantine/prediction_logs/<source>/dt=.../``. A day without traffic
    materializes with 0 rows.
    """
    store = lake.get_lake()
    days = []
    for day in partition_days(context):
        summary = compact_prediction_logs(store.root, pipeline.source, day, store.storage_options)
        status = "compacted" if summary.files else "no logs"
        context.log.info(
            f"{day} ({status}): {len(summary.files)} file(s), {summary.rows} rows, "
            f"{summary.quarantined_rows} quarantined"
        )
        context.add_asset_metadata(
            {
                "dagster/row_count": summary.rows,
                "status": status,
                "rows": summary.rows,
                "requests_per_endpoint": dg.MetadataValue.json(summary.requests_per_endpoint),
                "model_versions": dg.MetadataValue.json(summary.model_versions),
                "arms": dg.MetadataValue.json(summary.arms),
                "quarantined_rows": summary.quarantined_rows,
                "files_read": len(summary.files),
                "parquet_path": lake.file_link(summary.parquet_url),
                "quarantine_file": summary.quarantine_url or "",
            },
            partition_key=day.isoformat(),
        )
        days.append(
            {
                "day": day.isoformat(),
                "status": status,
                "rows": summary.rows,
                "quarantined_rows": summary.quarantined_rows,
                "files_read": len(summary.files),
            }
        )
    # Shared by every day of the run; each day's own figures are set above.
    return dg.MaterializeResult(metadata={"run_days": dg.MetadataValue.md(pd.DataFrame(days).to_markdown(index=False))})


def build_prediction_logs_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``prediction_logs`` on the source's daily ``partitions`` (no upstream asset: the
    service writes its landing files)."""
    return dg.asset(
        partitions_def=partitions,
        backfill_policy=day_range_backfill,
        group_name="monitoring",
        kinds={"python", "parquet"},
    )(prediction_logs)
