"""Reclake's one ``Definitions``: it only composes what the modules export."""

from __future__ import annotations

import warnings

from reclake.runtime import configure_process

configure_process()  # before anything imports TensorFlow or Great Expectations

import dagster as dg  # noqa: E402

# Reclake relies on single-run backfills (beta) and partitioned asset checks (preview) on
# purpose; say so once here rather than in every run's output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from assets import models, quality, serving, splits, with_group_owners, zoo  # noqa: E402
from assets.ab_test import build_ab_test_report_asset  # noqa: E402
from assets.batch import build_batch_assets  # noqa: E402
from assets.bidding import build_bidding_simulation_asset  # noqa: E402
from assets.features import build_feature_tables_asset  # noqa: E402
from assets.ingest import build_ingest_assets  # noqa: E402
from assets.model_monitoring import build_monitoring_checks, build_served_model_quality_asset  # noqa: E402
from assets.monitoring import build_drift_report_asset  # noqa: E402
from assets.online import build_online_features_asset  # noqa: E402
from assets.partitions import daily_partitions_for  # noqa: E402
from assets.prediction_logs import build_prediction_logs_asset  # noqa: E402
from assets.quality import build_event_mart_checks  # noqa: E402
from automation.drift_retrain import drift_retrain_sensor  # noqa: E402
from automation.freshness import FRESHNESS_CHECKS, build_freshness_sensor  # noqa: E402
from automation.jobs import (  # noqa: E402
    batch_predictions_job,
    history_job,
    ingest_to_monitor_job,
    ingest_to_serve_job,
    landing_job,
    main_job,
    retrain_job,
    stored_model_evaluation_job,
    zoo_job,
)
from automation.schedules import daily_ingest_schedule, synthetic_feed_schedule  # noqa: E402
from automation.sensors import build_landing_sensor  # noqa: E402
from reclake.settings import Settings, load_settings  # noqa: E402
from resources import build_resources  # noqa: E402


def build_definitions(settings: Settings) -> dg.Definitions:
    """All assets, checks, jobs, schedules and sensors, with resources for ``settings``.

    The daily partitions come from ``settings`` (its source's calendar), so one process
    can build the definitions of several sources. Nothing here writes the environment:
    the resources hand locations to dbt and BentoML explicitly.
    """
    daily = daily_partitions_for(settings)
    day_shaped_assets = [
        *build_ingest_assets(daily),
        build_feature_tables_asset(daily),
        build_drift_report_asset(daily),
        build_served_model_quality_asset(daily),
        build_bidding_simulation_asset(daily),
        build_ab_test_report_asset(daily),
        build_online_features_asset(daily),
        *build_batch_assets(daily),
    ]
    day_shaped_assets.append(build_prediction_logs_asset(daily))
    return dg.Definitions(
        assets=with_group_owners(
            [*day_shaped_assets, *dg.load_assets_from_modules([quality, splits, models, serving, zoo])]
        ),
        asset_checks=[
            *build_event_mart_checks(daily),
            *build_monitoring_checks(daily),
            *FRESHNESS_CHECKS,
            *dg.load_asset_checks_from_modules([quality, splits]),
        ],
        jobs=[main_job, history_job, ingest_to_serve_job, ingest_to_monitor_job, retrain_job, zoo_job, landing_job]
        + [batch_predictions_job, stored_model_evaluation_job],
        schedules=[daily_ingest_schedule] + ([synthetic_feed_schedule] if settings.source == "synthetic" else []),
        sensors=[
            build_landing_sensor(
                daily,
                ingest_to_serve_job if settings.retrain_policy == "daily" else ingest_to_monitor_job,
                interval_s=settings.landing_sensor_interval_s,
            ),
            drift_retrain_sensor,
            build_freshness_sensor(live=settings.partitions_end is None),
        ],
        resources=build_resources(settings),
        # Materializations started from the asset graph run like the jobs (automation/jobs.py).
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
