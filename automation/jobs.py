"""Jobs, selected by asset group so that they read like the architecture.

Every job runs its steps one after another in its run worker (``in_process_executor``):
the warehouse is a DuckDB file with one writer at a time, so the steps that touch it
queue on the ``duckdb_warehouse`` pool anyway, and the rest (training, drift) already
use both cores of a small machine. One process per run imports the code location once;
the multiprocess executor would start a process per step and pay that import (and
TensorFlow's) twenty times per run for no parallelism.

The daily jobs take their partitions from the assets they select (the source's daily
partitions, built with the definitions), so the same jobs serve any source.
"""

import dagster as dg

from assets.zoo import zoo_configs

# The model zoo is partitioned by config, not by day: it has a job of its own.
_ZOO = dg.AssetSelection.groups("model_zoo")

# Everything else, landing included: what `make run` materializes for the source's days.
main_job = dg.define_asset_job(
    name="reclake_main_job",
    selection=dg.AssetSelection.all() - _ZOO,
    executor_def=dg.in_process_executor,
    description="Landing logs -> bronze -> dbt features -> checks and splits -> models -> BentoML -> drift report.",
)

# From bronze on: what a newly landed day (shipped by any source) needs.
ingest_to_serve_job = dg.define_asset_job(
    name="ingest_to_serve_job",
    selection=dg.AssetSelection.assets("raw_events").downstream() - _ZOO,
    executor_def=dg.in_process_executor,
    description="A landed day -> bronze -> features -> retrained, served model -> drift report.",
)

# One run per bundled model config (a partition), on the newest training window.
zoo_job = dg.define_asset_job(
    name="model_zoo_job",
    selection=_ZOO,
    partitions_def=zoo_configs,
    executor_def=dg.in_process_executor,
    description="Train, evaluate and export every bundled model config on the source's newest window.",
)

# Only the landing: for the synthetic demo, what a day's logs arriving looks like (the
# generator writes the day); the landing sensor takes it from there.
landing_job = dg.define_asset_job(
    name="landing_job",
    selection=dg.AssetSelection.assets("landing_logs"),
    executor_def=dg.in_process_executor,
    description="Land one day's logs (for the synthetic source: generate them).",
)
