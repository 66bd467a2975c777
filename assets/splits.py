"""Datasets: the training window's train / validation / test splits under published protocols,
and the blocking pandera contract of the window they were made from."""

import dagster as dg
import pandas as pd

from models.inputs.contract import ContractResult, validate_training_window
from models.inputs.splits import make_splits, split_columns
from resources.lake import LakeResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource


@dg.asset(
    group_name="datasets",
    deps=[dg.AssetKey("training_examples")],
    kinds={"pandas", "parquet"},
    pool="duckdb_warehouse",
)
def dataset_splits(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, lake: LakeResource, pipeline: PipelineResource
) -> dg.MaterializeResult:
    """The newest ``training_window_days`` of ``training_examples``, split under every
    protocol the source supports (``models/inputs/splits.py``): ``temporal`` (the pipeline's),
    ``random_80_20`` (TensorFlow Recommenders), ``leave_one_out`` and ``per_user_8_1_1``
    (RecBole; sources with user and item ids). Each is written to
    ``splits/<protocol>.parquet`` as ``event_id, part``, seeded, so every model and
    benchmark can train and test on exactly the same rows.
    """
    spec = pipeline.feature_spec()
    days, examples = warehouse.training_window(pipeline.training_window_days, split_columns(spec))
    store = lake.get_lake()
    counts = {}
    for protocol, assignment in make_splits(examples, spec, days).items():
        store.write_parquet(assignment, store.split_file(protocol))
        counts[protocol] = (
            assignment["part"].value_counts().reindex(["train", "validation", "test"]).fillna(0).astype(int)
        )
    table = pd.DataFrame(counts).T.rename_axis("protocol").reset_index()
    sizes = "; ".join(f"{row.protocol} {row.train}/{row.validation}/{row.test}" for row in table.itertuples())
    context.log.info(f"splits of {days[0]} .. {days[-1]} (train/validation/test rows): {sizes}")
    return dg.MaterializeResult(
        metadata={
            "window": f"{days[0]} .. {days[-1]}",
            "rows": len(examples),
            "protocols": dg.MetadataValue.md(table.to_markdown(index=False)),
            "folder": lake.file_link(store.url("splits")),
        }
    )


@dg.asset_check(
    asset="dataset_splits",
    blocking=True,
    compute_kind="pandera",
    pool="duckdb_warehouse",
    description="The training window the splits were made from keeps its pandera contract "
    "(models/inputs/contract.py): feature dtypes, allowed values and ranges, nulls, 0/1 labels, "
    "unique event ids, dates inside the window, counts >= 0 and rates in [0, 1]. Blocking: no model "
    "trains on a window that breaks it.",
)
def training_window_contract(warehouse: WarehouseResource, pipeline: PipelineResource) -> dg.AssetCheckResult:
    """Validate every row of the newest ``training_window_days`` of ``training_examples``
    (the window ``dataset_splits`` splits) against the contract derived from the feature
    spec. Lazy and vectorised: about 1-2 s on a 7 x 50k window, so no sample is drawn.

    Metadata: ``window``, ``rows`` (validated), ``columns`` (checked), ``failures`` (a
    Markdown table: column, check, failing rows, examples) and ``seconds``.
    """
    spec = pipeline.feature_spec()
    days, examples = warehouse.training_window(pipeline.training_window_days)
    result = validate_training_window(examples, spec, days)
    summary = f"{len(result.failures)} failing column check(s)" if result.failures else "every check passed"
    return dg.AssetCheckResult(
        passed=result.passed,
        description=f"{spec.source} training window {days[0]} .. {days[-1]}: {summary}",
        metadata={
            "window": f"{days[0]} .. {days[-1]}",
            "rows": result.rows,
            "columns": result.columns,
            "failures": dg.MetadataValue.md(_failures_table(result)),
            "seconds": round(result.seconds, 3),
        },
    )


def _failures_table(result: ContractResult) -> str:
    """The contract's failures as a Markdown table, one row per failing column and check."""
    if result.passed:
        return "none"
    table = pd.DataFrame(
        [
            {
                "column": failure.column or "(frame)",
                "check": failure.check,
                "failing rows": "whole column" if failure.rows is None else failure.rows,
                "examples": ", ".join(failure.examples),
            }
            for failure in result.failures
        ]
    )
    return table.to_markdown(index=False)
