"""Datasets: the training window's train / validation / test splits under published protocols."""

import dagster as dg
import pandas as pd

from models.inputs.splits import make_splits
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
    days, examples = warehouse.training_window(pipeline.training_window_days)
    store = lake.get_lake()
    counts = {}
    for protocol, assignment in make_splits(examples, spec, days).items():
        store.write_parquet(assignment, store.split_file(protocol))
        counts[protocol] = assignment["part"].value_counts().reindex(["train", "validation", "test"]).fillna(0).astype(int)
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
