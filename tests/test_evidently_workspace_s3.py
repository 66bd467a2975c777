"""The Evidently workspace on an ``s3://`` lake (a moto server on 127.0.0.1): Evidently
works on a local copy under the state dir, every write lands in the bucket at once, a
re-run day replaces its snapshot there, and ``python -m monitoring.evidently_ui`` serves a
copy synced down from the bucket."""

from __future__ import annotations

import datetime as dt
import posixpath
import subprocess
import sys
import uuid

import dagster as dg
import pytest
import requests
import s3fs
import toy_examples
from conftest import PROJECT_ROOT, free_port, process_env
from test_evidently_workspace import _projects, _served_snapshot, _wait_for, _warehouse
from test_s3_lake import BUCKET, s3_endpoint  # noqa: F401 - the moto server fixture

from assets.monitoring import build_drift_report_asset
from monitoring.drift import monitored_columns
from monitoring.workspace import (
    SERVED_MODEL_TAG,
    DriftProject,
    open_workspace,
    partitions,
    project_id,
    snapshot_file,
    snapshot_id,
    workspace_location,
)
from reclake.lake import Lake
from resources.lake import LakeResource

NUMERICAL, CATEGORICAL = monitored_columns(toy_examples.SPEC)
DAY_1, DAY_2 = dt.date(2024, 3, 2), dt.date(2024, 3, 3)


def _mean_score(workspace, project: uuid.UUID, day: dt.date) -> float:
    """The mean score in ``day``'s stored served-model snapshot."""
    model = workspace.get_run(project, snapshot_id(project, day, SERVED_MODEL_TAG))
    return next(float(r.value) for r in model.metric_results.values() if r.display_name == "Mean value of 'score'")


@pytest.fixture(scope="module")
def served():
    """(by popularity, at random) served-model snapshots of a day (``_served_snapshot``)."""
    return _served_snapshot(True), _served_snapshot(False)


def _s3_lake(endpoint: str, name: str) -> Lake:
    return Lake.open(f"s3://{BUCKET}/{name}", endpoint)


def _bucket_snapshots(endpoint: str, name: str, project: uuid.UUID) -> list[str]:
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    fs.invalidate_cache()
    return sorted(fs.ls(f"{BUCKET}/{name}/evidently_workspace/{project}/snapshots"))


def test_on_an_s3_lake_each_snapshot_lands_in_the_bucket_and_a_rerun_day_replaces_it(
    tmp_path,
    served,
    s3_endpoint,  # noqa: F811
):
    by_popularity, at_random = served
    lake = _s3_lake(s3_endpoint, "replace")
    first = DriftProject(workspace_location(lake, tmp_path / "one"), "synthetic", NUMERICAL, CATEGORICAL)
    first.add(DAY_1, by_popularity, SERVED_MODEL_TAG)
    first.add(DAY_2, by_popularity, SERVED_MODEL_TAG)
    project = project_id("synthetic")
    assert len(_bucket_snapshots(s3_endpoint, "replace", project)) == 2
    assert first.location.folder.startswith(str(tmp_path / "one"))  # Evidently wrote a local copy

    # Another process (its own copy, empty) reports DAY_2 again: the bucket's DAY_2 is replaced.
    again = DriftProject(workspace_location(lake, tmp_path / "two"), "synthetic", NUMERICAL, CATEGORICAL)
    again.add(DAY_2, at_random, SERVED_MODEL_TAG)

    assert len(_bucket_snapshots(s3_endpoint, "replace", project)) == 2
    location = workspace_location(lake, tmp_path / "three")
    location.pull()
    workspace = open_workspace(location.folder)
    assert partitions(workspace, project, SERVED_MODEL_TAG) == ["2024-03-02", "2024-03-03"]
    assert _mean_score(workspace, project, DAY_1) != _mean_score(workspace, project, DAY_2)
    assert _mean_score(workspace, project, DAY_2) == pytest.approx(0.1, abs=0.01)  # the random scores, U(0, 0.2)
    assert [p.name for p in workspace.list_projects()] == ["synthetic drift"]
    assert [tab.title for tab in workspace.get_dashboard(project).tabs] == ["Drift", "Served model"]
    served = snapshot_file(project, snapshot_id(project, DAY_2, SERVED_MODEL_TAG))
    assert lake.exists(posixpath.join(location.remote, served))


def test_the_assets_fill_an_s3_lakes_workspace_and_the_ui_serves_the_synced_copy(
    tmp_path,
    served,
    s3_endpoint,  # noqa: F811
):
    """``drift_report`` on an ``s3://`` lake, one served-model snapshot, then
    ``python -m monitoring.evidently_ui`` as ``make reports`` starts it."""
    days = ("2024-03-01", "2024-03-02", "2024-03-03")
    root = f"s3://{BUCKET}/assets"
    pipeline = toy_examples.toy_pipeline(tmp_path)
    resources = {
        "lake": LakeResource(root=root, s3_endpoint_url=s3_endpoint),
        "warehouse": _warehouse(tmp_path / "warehouse.duckdb", days),
        "pipeline": pipeline,
    }
    asset = build_drift_report_asset(dg.DailyPartitionsDefinition(start_date="2024-03-01"))
    instance = dg.DagsterInstance.ephemeral()
    for day in ("2024-03-02", "2024-03-03"):
        assert dg.materialize([asset], partition_key=day, resources=resources, instance=instance).success
    project = project_id("synthetic")
    assert len(_bucket_snapshots(s3_endpoint, "assets", project)) == 2
    location = workspace_location(_s3_lake(s3_endpoint, "assets"), tmp_path / "writer")
    DriftProject(location, "synthetic", NUMERICAL, CATEGORICAL).add(DAY_2, served[0], SERVED_MODEL_TAG)
    assert len(_bucket_snapshots(s3_endpoint, "assets", project)) == 3

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    state = tmp_path / "ui-state"  # an empty state dir: the UI's copy comes from the bucket only
    env = process_env({"RECLAKE_STATE_DIR": str(state), "RECLAKE_LAKE_ROOT": root,
                       "RECLAKE_S3_ENDPOINT_URL": s3_endpoint, "RECLAKE_EVIDENTLY_UI_URL": base})  # fmt: skip
    ui = subprocess.Popen([sys.executable, "-m", "monitoring.evidently_ui"], env=env, cwd=PROJECT_ROOT)
    try:
        assert _wait_for(lambda: _projects(base)), "the Evidently UI never answered"
        assert [(p["id"], p["name"]) for p in _projects(base)] == [(str(project), "synthetic drift")]
        snapshots = requests.get(f"{base}/api/projects/{project}/snapshots", timeout=10).json()
        assert sorted((s["metadata"]["partition"], s["tags"]) for s in snapshots) == [
            ("2024-03-02", ["drift"]), ("2024-03-03", ["drift"]), ("2024-03-03", ["served_model"])
        ]  # fmt: skip
        # The popularity bias panel, as the UI asks for it: one value per line on the served day.
        panels = requests.get(f"{base}/api/v2/dashboards/{project}", timeout=10).json()["panels"]
        [popularity] = [panel for panel in panels if panel["title"].startswith("Popularity bias")]
        series_filter = [{key: v[key] for key in ("tags", "metadata", "metric", "metric_labels")}
                         for v in popularity["values"]]  # fmt: skip
        series = requests.post(
            f"{base}/api/v2/snapshots/{project}/data_series_batch", json={"series_filter": series_filter}, timeout=10
        ).json()
        assert [source["timestamp"][:10] for source in series["sources"]] == ["2024-03-03"]
        by_figure = {s["params"]["metric"]: s["values"] for s in series["series"]}
        assert set(by_figure) == {"arp", "coverage", "gini"}
        assert all(len(v) == 1 and 0.0 < v[0] <= 1.0 for v in by_figure.values()), by_figure
    finally:
        ui.terminate()
        ui.wait(20)
