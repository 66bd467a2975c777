"""Jobs, selected by asset group so that they read like the architecture."""

import dagster as dg

from assets.partitions import daily_partitions
from assets.zoo import zoo_configs

# The model zoo is partitioned by config, not by day: it has a job of its own.
_ZOO = dg.AssetSelection.groups("model_zoo")

# Everything else, landing included: what `make run` materializes for the source's days.
main_job = dg.define_asset_job(
    name="reclake_main_job",
    selection=dg.AssetSelection.all() - _ZOO,
    partitions_def=daily_partitions,
    description="Landing logs -> bronze -> dbt features -> checks and splits -> models -> BentoML -> drift report.",
)

# From bronze on: what a newly landed day (shipped by any source) needs.
ingest_to_serve_job = dg.define_asset_job(
    name="ingest_to_serve_job",
    selection=dg.AssetSelection.assets("raw_events").downstream() - _ZOO,
    partitions_def=daily_partitions,
    description="A landed day -> bronze -> features -> retrained, served model -> drift report.",
)

# One run per bundled model config (a partition), on the newest training window.
zoo_job = dg.define_asset_job(
    name="model_zoo_job",
    selection=_ZOO,
    partitions_def=zoo_configs,
    description="Train, evaluate and export every bundled model config on the source's newest window.",
)
