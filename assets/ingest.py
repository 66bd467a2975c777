"""Landing and bronze: raw logs arrive per day, are validated and land in bronze."""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.checks import DayOutcome, evaluations_per_day
from assets.partitions import day_range_backfill, partition_days
from resources.lake import LakeResource
from resources.pipeline import PipelineResource, SyntheticSourceResource
from sources.event_ids import EventIdIndex
from sources.importer import import_source, resolve_source_path
from sources.ingest import ingest_landing_days
from sources.landing_writer import land_synthetic_day
from sources.spark_validation import ingest_days_in_child
from sources.synthetic import SOURCE_NAME, SyntheticWorld, generate_day

QUARANTINE_CHECK = "quarantine_share_within_threshold"
IMPORT_REJECTS_CHECK = "import_rejects_within_threshold"


def landing_logs(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    pipeline: PipelineResource,
    synthetic: SyntheticSourceResource,
):
    """The day's raw event logs in the landing zone, as a log shipper would write them.

    For the ``synthetic`` source, materializing it runs the built-in generator (gzipped
    JSON lines under ``landing/synthetic/dt=YYYY-MM-DD/``, the true click and conversion
    probabilities under ``truth/``). For a real source it delivers the configured files
    (``source_path``): each is parsed once, streaming, and its rows land in the folder of
    their day; rows that cannot be parsed are quarantined with file, line, field and
    reason. Logs shipped by other systems land in the same place and are picked up by the
    landing sensor without this asset.
    """
    days = partition_days(context)
    if pipeline.is_synthetic:
        yield _land_synthetic(context, lake, synthetic, days)
        input_rows = rejected_rows = 0
    else:
        result, input_rows, rejected_rows = _land_real_source(context, lake, pipeline, days)
        yield result
    share = rejected_rows / input_rows if input_rows else 0.0
    passed = share <= pipeline.quarantine_max_share
    outcome = DayOutcome(
        passed=passed,
        metadata={"input_rows": input_rows, "rejected_rows": rejected_rows, "rejected_share": round(share, 6),
                  "max_share_allowed": pipeline.quarantine_max_share},
        description=f"the parser rejected {rejected_rows} of {input_rows} rows ({share:.2%})"
        + ("" if passed else f" > {pipeline.quarantine_max_share:.2%}: see quarantine/{pipeline.source}/import/"),
    )  # fmt: skip
    yield from evaluations_per_day(
        context,
        dg.AssetCheckKey(dg.AssetKey("landing_logs"), IMPORT_REJECTS_CHECK),
        {day.isoformat(): outcome for day in days},
        blocking=True,
    )


def _land_synthetic(
    context: dg.AssetExecutionContext, lake: LakeResource, synthetic: SyntheticSourceResource, days: list
) -> dg.MaterializeResult:
    settings = synthetic.settings()
    world = SyntheticWorld.create(settings)
    store = lake.get_lake()
    for day in days:
        generated = generate_day(settings, day, world)
        files = land_synthetic_day(store, generated)
        context.add_asset_metadata(
            {"dagster/row_count": generated.event_table.num_rows, "files": dg.MetadataValue.json(files)},
            partition_key=day.isoformat(),
        )
    return dg.MaterializeResult(metadata={"source": SOURCE_NAME, "seed": settings.seed})


def _land_real_source(
    context: dg.AssetExecutionContext, lake: LakeResource, pipeline: PipelineResource, days: list
) -> tuple[dg.MaterializeResult, int, int]:
    """Import the source's files; returns the result, the import's input rows and the rows
    its parser rejected (not those a k-core filter removed on purpose)."""
    path, options = resolve_source_path(
        pipeline.source, pipeline.source_path, pipeline.source_options, Path(pipeline.downloads_dir)
    )
    summary = import_source(lake.get_lake(), pipeline.source, path, options)
    per_day = summary.rows_per_day
    in_window = {day.isoformat(): per_day.get(day.isoformat(), 0) for day in days}
    empty = [day for day, rows in in_window.items() if rows == 0]
    if empty:
        context.log.warning(f"{pipeline.source}: no rows for {len(empty)} day(s) of the run, e.g. {empty[:3]}")
    for day, rows in in_window.items():
        context.add_asset_metadata({"dagster/row_count": rows}, partition_key=day)
    # The import reads whole source files: these figures are the import's, shared by its days.
    result = dg.MaterializeResult(
        metadata={
            "source": pipeline.source,
            "source_path": path,
            "files_read_now": dg.MetadataValue.json(summary.read_now),
            "input_rows": summary.input_rows,
            "landed_rows": summary.input_rows - summary.rejected_rows,
            "rejected_rows": summary.rejected_rows,
            "unparsed_rows": summary.unparsed_rows,
            "days_in_source": len(per_day),
            "first_day": min(per_day, default=""),
            "last_day": max(per_day, default=""),
            "quarantine_files": dg.MetadataValue.json([f.quarantine_file for f in summary.files if f.quarantine_file]),
        }
    )
    return result, summary.input_rows, summary.unparsed_rows


def raw_events(context: dg.AssetExecutionContext, lake: LakeResource, pipeline: PipelineResource):
    """Validated bronze events: one Parquet file per day, replaced on every run.

    Reads the day's landing files, types and validates every row against the source's
    bronze contract (canonical columns plus the feature spec's, with its value rules, as
    SQL in DuckDB), writes the good rows to ``bronze/<source>/dt=.../`` and the rejected
    ones, with file, line, field and reason, to ``quarantine/<source>/dt=.../``. Each day
    of a run gets its own row counts and its own result of the quarantine check. With
    ``engine: spark`` the same contract runs as Spark SQL and Spark writes the bronze
    files (``sources.spark_validation``), in a child process.
    """
    store = lake.get_lake()
    spec = pipeline.feature_spec()
    if pipeline.engine == "spark":
        # The same contract as Spark SQL; Spark writes bronze. Its JVM lives in a child
        # process that ends with the step, not in this run worker.
        days = ingest_days_in_child(
            lake.root,
            lake.s3_endpoint_url,
            pipeline.feature_spec_path or pipeline.source,
            partition_days(context),
            allow_empty=not pipeline.is_synthetic,
            log=context.log.info,
        )
    else:
        # Each bronze day's ids are read once per run; the next days' lines are checked in
        # threads while one is written.
        event_ids = EventIdIndex(store, spec.source)
        days = list(
            ingest_landing_days(
                store, spec, partition_days(context), allow_empty=not pipeline.is_synthetic, event_ids=event_ids
            )
        )
    outcomes: dict[str, DayOutcome] = {}
    for day in days:
        context.log.info(
            f"{day.day} ({day.status}): {day.input_rows} rows in, {day.bronze_rows} to bronze, "
            f"{day.quarantined_rows} quarantined ({day.quarantined_share:.2%})"
        )
        key = day.day.isoformat()
        context.add_asset_metadata(
            {
                "dagster/row_count": day.bronze_rows,
                "status": day.status,
                "input_rows": day.input_rows,
                "quarantined_rows": day.quarantined_rows,
                "quarantined_share": round(day.quarantined_share, 6),
                "quarantined_by_field": dg.MetadataValue.json(day.reasons),
                "files": dg.MetadataValue.json(day.files),
                "bronze_path": day.bronze_url,
                "quarantine_file": day.quarantine_url or "",
            },
            partition_key=key,
        )
        passed = day.quarantined_share <= pipeline.quarantine_max_share
        outcomes[key] = DayOutcome(
            passed=passed,
            metadata={
                "max_share_allowed": pipeline.quarantine_max_share,
                "quarantined_share": day.quarantined_share,
                "quarantined_rows": day.quarantined_rows,
                "input_rows": day.input_rows,
                "quarantined_by_field": dg.MetadataValue.json(day.reasons),
            },
            description=f"{day.status}: {day.quarantined_rows} of {day.input_rows} rows quarantined ({day.quarantined_share:.2%})"
            + ("" if passed else f" > {pipeline.quarantine_max_share:.2%}; see {day.quarantine_url}"),
        )
    per_day = pd.DataFrame(
        {
            "day": [d.day.isoformat() for d in days],
            "status": [d.status for d in days],
            "input_rows": [d.input_rows for d in days],
            "bronze_rows": [d.bronze_rows for d in days],
            "quarantined_rows": [d.quarantined_rows for d in days],
            "quarantined_share": [round(d.quarantined_share, 6) for d in days],
        }
    )
    # Shared by every day of the run; each day's own figures are set above.
    yield dg.MaterializeResult(metadata={"run_days": dg.MetadataValue.md(per_day.to_markdown(index=False))})
    yield from evaluations_per_day(
        context, dg.AssetCheckKey(dg.AssetKey("raw_events"), QUARANTINE_CHECK), outcomes, blocking=True
    )


def build_ingest_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``landing_logs`` and ``raw_events`` on the source's daily ``partitions``."""
    return [
        dg.asset(
            partitions_def=partitions,
            backfill_policy=day_range_backfill,
            group_name="landing",
            kinds={"python", "parquet"},
            check_specs=[
                dg.AssetCheckSpec(
                    IMPORT_REJECTS_CHECK,
                    asset="landing_logs",
                    blocking=True,
                    description="Fails, and stops everything downstream, when a real source's parser "
                    "rejects more than the configured quarantine share of the rows it read. Parser "
                    "rejects belong to the import of whole source files, not to a day (a line that "
                    "does not parse has no trustworthy date), so every day of the run gets the "
                    "import's figure. The generator writes no rejects: it passes with none.",
                )
            ],
        )(landing_logs),
        dg.asset(
            partitions_def=partitions,
            backfill_policy=day_range_backfill,
            group_name="bronze",
            deps=[dg.AssetKey("landing_logs")],
            kinds={"pandas", "parquet"},
            check_specs=[
                dg.AssetCheckSpec(
                    QUARANTINE_CHECK,
                    asset="raw_events",
                    blocking=True,
                    description="Fails, and stops everything downstream, when a day quarantines more "
                    "than the configured share of its rows.",
                )
            ],
        )(raw_events),
    ]
