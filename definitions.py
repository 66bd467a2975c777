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

from assets import features, ingest, models, monitoring, quality, serving, splits, with_group_owners, zoo  # noqa: E402
from assets.partitions import daily_partitions, settings_partitions  # noqa: E402
from automation.jobs import ingest_to_serve_job, landing_job, main_job, zoo_job  # noqa: E402
from automation.schedules import daily_ingest_schedule, synthetic_feed_schedule  # noqa: E402
from automation.sensors import landing_sensor  # noqa: E402
from reclake.settings import Settings, load_settings  # noqa: E402
from resources import build_resources  # noqa: E402


def build_definitions(settings: Settings) -> dg.Definitions:
    """All assets, checks, jobs, schedules and sensors, with resources for ``settings``.

    Nothing here writes the environment: the resources hand locations to dbt and
    BentoML explicitly.

    The daily partitions are fixed when the asset modules are imported, from the
    process's settings (a code location serves one source's calendar): ``settings`` must
    have the same ``partitions_start`` and ``partitions_end``. To run another source,
    start a process with its config (``RECLAKE_CONFIG=configs/<source>.yaml``).

    Raises:
        ValueError: ``settings`` asks for other partitions than the process has.
    """
    if settings_partitions(settings) != (daily_partitions.start, daily_partitions.end):
        raise ValueError(
            f"settings ask for daily partitions {settings.partitions_start} .. {settings.partitions_end or 'open'}, "
            f"but this process defined them from its environment as {daily_partitions.start:%Y-%m-%d} .. "
            f"{daily_partitions.end or 'open'}: set RECLAKE_CONFIG (or RECLAKE_PARTITIONS_START/_END) before "
            "importing the definitions, one source per process"
        )
    return dg.Definitions(
        assets=with_group_owners(
            dg.load_assets_from_modules([ingest, features, quality, splits, models, serving, monitoring, zoo])
        ),
        asset_checks=dg.load_asset_checks_from_modules([quality]),
        jobs=[main_job, ingest_to_serve_job, zoo_job, landing_job],
        schedules=[daily_ingest_schedule] + ([synthetic_feed_schedule] if settings.source == "synthetic" else []),
        sensors=[landing_sensor],
        resources=build_resources(settings),
        # Materializations started from the asset graph run like the jobs (automation/jobs.py).
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
