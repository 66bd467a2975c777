"""Feature tables: the dbt project (staging, facts, dimensions, training mart) as assets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from assets.partitions import daily_partitions, single_run_backfill
from reclake.settings import PROJECT_ROOT
from resources.lake import LakeResource

dbt_project = DbtProject(project_dir=PROJECT_ROOT / "dbt_project")
# `dagster dev` re-parses on load; elsewhere parse once when no manifest exists yet.
dbt_project.prepare_if_dev()
if not dbt_project.manifest_path.exists():
    dbt_project.preparer.prepare(dbt_project)


class ReclakeDbtTranslator(DagsterDbtTranslator):
    """Puts dbt models in the ``features`` group and maps the bronze source to ``raw_events``."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source" and dbt_resource_props["name"] == "events":
            return dg.AssetKey("raw_events")
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "features"


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=ReclakeDbtTranslator(),
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    # DuckDB allows a single writer: every run that writes the warehouse shares this pool.
    pool="duckdb_warehouse",
)
def feature_tables(context: dg.AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource):
    """``dbt build`` over the run's partition window (tests run as asset checks).

    Incremental models rebuild only the window (plus their lookback), so re-running a
    day replaces it without duplicates.
    """
    window = context.partition_time_window
    dbt_vars = {
        "lake_root": lake.root,
        "min_date": window.start.date().isoformat(),
        "max_date": window.end.date().isoformat(),
    }
    yield from dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context).stream()
