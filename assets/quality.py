"""Great Expectations on the training mart, as a blocking asset check."""

import dagster as dg

from assets.partitions import daily_partitions, partition_days
from monitoring.data_quality import validate_training_examples
from resources.warehouse import WarehouseResource


@dg.asset_check(
    asset=dg.AssetKey("training_examples"),
    partitions_def=daily_partitions,
    blocking=True,
    description="Great Expectations suite on the training rows of the run's days: keys, "
    "labels, value ranges, allowed categories, converted <= clicked.",
)
def training_examples_expectations(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    days = partition_days(context)
    frame = warehouse.read_days("training_examples", days[0], days[-1])
    result = validate_training_examples(frame)
    return dg.AssetCheckResult(
        passed=result.success,
        metadata={
            "days": f"{days[0]} .. {days[-1]}",
            "rows": len(frame),
            "evaluated_expectations": result.evaluated,
            "failed_expectations": dg.MetadataValue.json(result.failed),
            "success_percent": float(result.statistics.get("success_percent") or 0.0),
        },
    )
