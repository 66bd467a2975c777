"""Typed, configurable Dagster resources with working local defaults.

``build_resources`` is the one place that turns ``reclake.settings.Settings`` into the
resources the assets use; tests pass other settings (a temporary lake, an S3 server)
instead of patching internals.
"""

from typing import Any

from reclake.settings import PROJECT_ROOT, Settings
from resources.dbt import DBT_EXECUTABLE, DbtCliResource
from resources.lake import LakeResource
from resources.model_store import ModelStoreResource
from resources.monitoring import MonitoringResource
from resources.online_store import OnlineStoreResource
from resources.pipeline import PipelineResource, SyntheticSourceResource
from resources.tracking import TrackingResource
from resources.warehouse import WarehouseResource


def _dbt_target(settings: Settings) -> str:
    """The profile's target: ``spark`` for ``engine: spark``, ``s3`` for a lake on S3, else ``local``."""
    if settings.engine == "spark":
        return "spark"
    return "s3" if settings.lake_root.startswith("s3://") else "local"


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resources for ``settings``, keyed by the names the assets ask for."""
    return {
        "lake": LakeResource(
            root=settings.lake_root,
            s3_endpoint_url=settings.s3_endpoint_url,
            reports_url=settings.reports_url,
            evidently_ui_url=settings.evidently_ui_url,
        ),
        "warehouse": WarehouseResource(
            path=settings.warehouse_path,
            spark_warehouse_dir=settings.spark_warehouse_dir if settings.engine == "spark" else None,
        ),
        "dbt": DbtCliResource(
            project_dir=str(PROJECT_ROOT / "dbt_project"),
            dbt_executable=DBT_EXECUTABLE,
            target=_dbt_target(settings),
        ),
        "model_store": ModelStoreResource(
            bentoml_home=str(settings.bentoml_home),
            pinned_tag_file=str(settings.current_model_tag_file),
            model_name=settings.bento_model_name,
        ),
        "pipeline": PipelineResource(
            source=settings.source,
            source_path=settings.source_path,
            source_options=dict(settings.source_options),
            feature_spec_path=settings.feature_spec,
            state_dir=str(settings.source_state_dir),
            downloads_dir=str(settings.source_state_dir / "downloads"),
            data_docs_dir=str(settings.data_docs_dir),
            data_docs_results_per_suite=settings.data_docs_results_per_suite,
            ranker_config=settings.ranker_config,
            auto_candidates=list(settings.auto_candidates),
            auto_budget_s=settings.auto_budget_s,
            auto_sweep_trials=settings.auto_sweep_trials,
            training_window_days=settings.training_window_days,
            stream_training_rows=settings.stream_training_rows,
            training_mixed_precision=settings.training_mixed_precision,
            drift_reference_days=settings.drift_reference_days,
            drift_days_per_run=settings.drift_days_per_run,
            quarantine_max_share=settings.quarantine_max_share,
            campaigns_path=settings.campaigns_file,
            engine=settings.engine,
        ),
        "synthetic": SyntheticSourceResource.from_settings(settings.synthetic),
        "online_store": OnlineStoreResource(url=settings.online_store, namespace=settings.source),
        "tracking": TrackingResource(
            tracking_uri=settings.mlflow_tracking,
            # A local store's artifacts go in the state dir (not ./mlruns); a server keeps its own.
            artifact_root=None if settings.mlflow_tracking_is_server else str(settings.mlflow_dir / "artifacts"),
            ui_url=settings.mlflow_ui_url,
        ),
        "monitoring": MonitoringResource(
            retrain_policy=settings.retrain_policy,
            drift_alert_share=settings.drift_alert_share,
            calibration_alert_ece=settings.calibration_alert_ece,
            calibration_alert_ratio=settings.calibration_alert_ratio,
            prediction_drift_alert=settings.prediction_drift_alert,
        ),
    }
