"""Landing and bronze: raw logs arrive per day, are validated and land in bronze."""

import dagster as dg
import pandas as pd

from assets.partitions import daily_partitions, partition_days, single_run_backfill
from resources.lake import LakeResource
from resources.pipeline import PipelineResource, SyntheticSourceResource
from sources.ingest import ingest_landing_day
from sources.landing_writer import land_synthetic_day
from sources.synthetic import SOURCE_NAME, SyntheticWorld, generate_day

QUARANTINE_CHECK = "quarantine_share_within_threshold"


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    group_name="landing",
    kinds={"python", "json"},
)
def landing_logs(
    context: dg.AssetExecutionContext, lake: LakeResource, synthetic: SyntheticSourceResource
) -> dg.MaterializeResult:
    """The day's raw event logs in the landing zone, as a log shipper would write them.

    Materializing it runs the built-in synthetic generator (gzipped JSON lines under
    ``landing/synthetic/dt=YYYY-MM-DD/``, the true click and conversion probabilities
    under ``truth/``). Logs shipped by other systems land in the same place and are
    picked up by the landing sensor without this asset.
    """
    settings = synthetic.settings()
    world = SyntheticWorld.create(settings)
    store = lake.get_lake()
    rows, files = 0, []
    for day in partition_days(context):
        generated = generate_day(settings, day, world)
        files += land_synthetic_day(store, generated)
        rows += len(generated.events)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "files": dg.MetadataValue.json(files),
            "source": SOURCE_NAME,
            "seed": settings.seed,
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    group_name="bronze",
    deps=[landing_logs],
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
)
def raw_events(
    context: dg.AssetExecutionContext, lake: LakeResource, pipeline: PipelineResource
) -> dg.MaterializeResult:
    """Validated bronze events: one Parquet file per day, replaced on every run.

    Reads the day's landing files, types and validates every row against the bronze
    contract (pandera), writes the good rows to ``bronze/events/dt=.../`` and the rejected
    ones, with file, line, field and reason, to ``quarantine/<source>/dt=.../``.
    """
    store = lake.get_lake()
    days = [ingest_landing_day(store, pipeline.source, day) for day in partition_days(context)]
    for day in days:
        context.log.info(
            f"{day.day}: {day.input_rows} rows in, {day.bronze_rows} to bronze, "
            f"{day.quarantined_rows} quarantined ({day.quarantined_share:.2%})"
        )
    per_day = pd.DataFrame(
        {
            "day": [d.day.isoformat() for d in days],
            "input_rows": [d.input_rows for d in days],
            "bronze_rows": [d.bronze_rows for d in days],
            "quarantined_rows": [d.quarantined_rows for d in days],
            "quarantined_share": [round(d.quarantined_share, 6) for d in days],
        }
    )
    input_rows = int(per_day["input_rows"].sum())
    quarantined = int(per_day["quarantined_rows"].sum())
    worst = max(days, key=lambda d: d.quarantined_share)
    reasons: dict[str, int] = {}
    for day in days:
        for field, count in day.reasons.items():
            reasons[field] = reasons.get(field, 0) + count
    passed = worst.quarantined_share <= pipeline.quarantine_max_share
    check = dg.AssetCheckResult(
        check_name=QUARANTINE_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "max_share_allowed": pipeline.quarantine_max_share,
            "worst_day": worst.day.isoformat(),
            "worst_day_share": worst.quarantined_share,
            "quarantined_by_field": dg.MetadataValue.json(reasons),
        },
        description=None
        if passed
        else f"{worst.day}: {worst.quarantined_rows} of {worst.input_rows} rows quarantined "
        f"({worst.quarantined_share:.2%} > {pipeline.quarantine_max_share:.2%}); see {worst.quarantine_url}",
    )
    return dg.MaterializeResult(
        check_results=[check],
        metadata={
            "dagster/row_count": int(per_day["bronze_rows"].sum()),
            "input_rows": input_rows,
            "quarantined_rows": quarantined,
            "quarantined_share": quarantined / input_rows if input_rows else 0.0,
            "quarantined_by_field": dg.MetadataValue.json(reasons),
            "per_day": dg.MetadataValue.md(per_day.to_markdown(index=False)),
            "quarantine_files": dg.MetadataValue.json([d.quarantine_url for d in days if d.quarantine_url]),
        },
    )
