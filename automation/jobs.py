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

from assets.features import DBT_LAYERS
from assets.zoo import zoo_configs
from automation.freshness import FRESHNESS_CHECKS

# The model zoo is partitioned by config, not by day: it has a job of its own.
_ZOO = dg.AssetSelection.groups("model_zoo")
# Batch scoring and evaluation of stored models run on demand, in jobs of their own.
_BATCH = dg.AssetSelection.groups("batch")
# Freshness is judged by its own sensor, never inside a run (a backfill of old days is not late).
_FRESHNESS = dg.AssetSelection.checks(*FRESHNESS_CHECKS)

# The feature path (landing -> bronze -> dbt marts) with its checks: the older years of a
# long history, which `make run` imports a year per run before the main job's last year.
history_job = dg.define_asset_job(
    name="history_job",
    selection=dg.AssetSelection.groups("landing", "bronze", *DBT_LAYERS) - _FRESHNESS,
    executor_def=dg.in_process_executor,
    description="Past days of a long history -> bronze -> dbt features, with their checks (no model, no reports).",
)

# Everything else, landing included: what `make run` materializes for the source's days.
main_job = dg.define_asset_job(
    name="reclake_main_job",
    selection=dg.AssetSelection.all() - _ZOO - _BATCH - _FRESHNESS,
    executor_def=dg.in_process_executor,
    description="Landing logs -> bronze -> dbt features -> checks and splits -> models -> BentoML -> drift report.",
)

# From bronze on: what a newly landed day (shipped by any source) needs.
ingest_to_serve_job = dg.define_asset_job(
    name="ingest_to_serve_job",
    selection=dg.AssetSelection.assets("raw_events").downstream() - _ZOO - _BATCH - _FRESHNESS,
    executor_def=dg.in_process_executor,
    description="A landed day -> bronze -> features -> retrained, served model -> drift report.",
)

_MODEL = dg.AssetSelection.assets("recommender_model", "bento_model")

# From bronze on, without retraining: a landed day's run when `retrain_policy: on_drift`
# (``drift_retrain_sensor`` retrains on an alert instead).
ingest_to_monitor_job = dg.define_asset_job(
    name="ingest_to_monitor_job",
    selection=dg.AssetSelection.assets("raw_events").downstream() - _ZOO - _MODEL - _BATCH - _FRESHNESS,
    executor_def=dg.in_process_executor,
    description="A landed day -> bronze -> features -> drift report and the served model's quality (no retrain).",
)

# Train, judge against the champion, register and (if better) serve: what an alert starts.
retrain_job = dg.define_asset_job(
    name="retrain_job",
    selection=_MODEL - _FRESHNESS,
    executor_def=dg.in_process_executor,
    description="Retrain the recommender on the newest window and serve it if it beats the champion.",
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

# A stored model's scores for every row of a day (the served one unless the run config's
# ``model_tag`` names another): ``ops: {batch_predictions: {config: {model_tag: ...}}}``.
batch_predictions_job = dg.define_asset_job(
    name="batch_predictions_job",
    selection=dg.AssetSelection.assets("batch_predictions"),
    executor_def=dg.in_process_executor,
    description="Score every training_examples row of the day with a stored model; Parquet parts in the lake.",
)

# A stored model's metrics on a day: run it for one day with two model tags to compare them.
stored_model_evaluation_job = dg.define_asset_job(
    name="stored_model_evaluation_job",
    selection=dg.AssetSelection.assets("stored_model_evaluation"),
    executor_def=dg.in_process_executor,
    description="Evaluate a stored model version (run config model_tag; default the served one) on the day.",
)
