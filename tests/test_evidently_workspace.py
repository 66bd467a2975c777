"""The Evidently workspace of the drift snapshots: one project per source, one snapshot per
day, the ``drift_report`` asset filling it, and Evidently's UI serving it over real HTTP;
the served model's snapshots with their popularity bias. The same on an ``s3://`` lake:
``test_evidently_workspace_s3``."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid

import dagster as dg
import duckdb
import psutil
import pytest
import requests
import toy_examples
from conftest import PROJECT_ROOT, free_port, process_env

from assets.monitoring import build_drift_report_asset
from monitoring.drift import build_drift_report, monitored_columns
from monitoring.workspace import (
    add_drift_snapshot,
    ensure_project,
    open_workspace,
    partitions,
    project_id,
    project_url,
    snapshot_id,
    workspace_location,
)
from reclake.lake import Lake
from resources.lake import LakeResource
from resources.warehouse import WarehouseResource

NUMERICAL, CATEGORICAL = monitored_columns(toy_examples.SPEC)
DAY_1, DAY_2 = dt.date(2024, 3, 2), dt.date(2024, 3, 3)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """(undrifted, drifted) drift reports of a small day against its reference."""
    folder = tmp_path_factory.mktemp("reports")
    reference = toy_examples.make_training_examples(n_rows=400, seed=1)
    same = reference.sample(frac=1.0, random_state=7).reset_index(drop=True)
    shifted = same.copy()
    shifted["price"] = shifted["price"] * 1.6 + 10.0
    calm = build_drift_report(same, reference, NUMERICAL, CATEGORICAL, folder / "calm.html")
    drifted = build_drift_report(shifted, reference, NUMERICAL, CATEGORICAL, folder / "drifted.html")
    assert (calm.drifted_columns, drifted.drifted_columns) == ([], ["price"])
    return calm, drifted


def _share(workspace, project: uuid.UUID, day: dt.date) -> float:
    """The share of drifted columns in ``day``'s stored snapshot."""
    model = workspace.get_run(project, snapshot_id(project, day))
    return next(r.share.value for r in model.metric_results.values() if hasattr(r, "share"))


def test_one_snapshot_per_partition_and_a_rerun_replaces_it(tmp_path, reports):
    calm, drifted = reports
    workspace = open_workspace(str(tmp_path / "ws"))
    project = ensure_project(workspace, "synthetic", NUMERICAL, CATEGORICAL)

    add_drift_snapshot(workspace, project, DAY_1, calm.snapshot)
    add_drift_snapshot(workspace, project, DAY_2, calm.snapshot)
    assert partitions(workspace, project) == ["2024-03-02", "2024-03-03"]

    again = add_drift_snapshot(workspace, project, DAY_2, drifted.snapshot)  # the day is reported again

    assert partitions(workspace, project) == ["2024-03-02", "2024-03-03"]  # replaced, not added
    assert len(workspace.list_runs(project)) == 2
    assert _share(workspace, project, DAY_2) == pytest.approx(1 / len(NUMERICAL + CATEGORICAL))
    assert _share(workspace, project, DAY_1) == 0.0
    stored = workspace.get_run(project, again)
    assert stored.timestamp == dt.datetime(2024, 3, 3)  # dated at its partition, not at the run
    assert (stored.name, stored.tags, stored.metadata["partition"]) == ("drift 2024-03-03", ["drift"], "2024-03-03")


def test_the_project_is_created_once_per_source_with_its_dashboard(tmp_path):
    workspace = open_workspace(str(tmp_path / "ws"))

    first = ensure_project(workspace, "synthetic", NUMERICAL, CATEGORICAL)
    assert ensure_project(open_workspace(str(tmp_path / "ws")), "synthetic", NUMERICAL, CATEGORICAL) == first
    other = ensure_project(workspace, "criteo", ["I1"], ["C1"])

    assert first == project_id("synthetic") != other
    assert sorted(p.name for p in workspace.list_projects()) == ["criteo drift", "synthetic drift"]
    dashboard = workspace.get_dashboard(first)
    titles = [panel.title for panel in dashboard.panels]
    assert titles[0] == "Share of drifted columns" and len(titles) == 8
    charted = {value.metric_labels["column"] for panel in dashboard.panels[1:3] for value in panel.values}
    assert charted == set(NUMERICAL + CATEGORICAL)
    drift_tab, served_tab = dashboard.tabs
    assert drift_tab.panels == [panel.id for panel in dashboard.panels[:3]]
    assert served_tab.panels == [panel.id for panel in dashboard.panels[3:]]


def test_a_local_lake_holds_its_workspace_and_an_s3_lake_a_copy_of_it_under_the_state_dir(tmp_path):
    local = workspace_location(Lake.open(str(tmp_path / "lake")), tmp_path / "state")
    assert (local.folder, local.remote) == (str(tmp_path / "lake" / "evidently_workspace"), None)
    on_s3 = workspace_location(Lake.open("s3://bucket/lake", "http://127.0.0.1:9"), tmp_path / "state")
    other = workspace_location(Lake.open("s3://bucket/other", "http://127.0.0.1:9"), tmp_path / "state")
    assert on_s3.remote == "s3://bucket/lake/evidently_workspace"
    assert on_s3.folder.startswith(str(tmp_path / "state" / "evidently_workspace")) and on_s3.folder != other.folder
    assert project_url("http://127.0.0.1:8002/", project_id("x")) == f"http://127.0.0.1:8002/projects/{project_id('x')}"


def _warehouse(path, days: tuple[str, ...]) -> WarehouseResource:
    frame = toy_examples.make_training_examples(n_rows=300 * len(days), days=days, seed=5)
    with duckdb.connect(str(path)) as connection:
        connection.register("frame", frame)
        connection.execute(
            "create table training_examples as select * replace (cast(event_date as date) as event_date) from frame"
        )
    return WarehouseResource(path=str(path))


def test_the_drift_report_asset_adds_each_day_to_the_workspace_and_links_it(tmp_path):
    days = ("2024-03-01", "2024-03-02", "2024-03-03")
    resources = {
        "lake": LakeResource(root=str(tmp_path / "lake"), evidently_ui_url="http://127.0.0.1:8765"),
        "warehouse": _warehouse(tmp_path / "warehouse.duckdb", days),
        "pipeline": toy_examples.toy_pipeline(tmp_path),
    }
    asset = build_drift_report_asset(dg.DailyPartitionsDefinition(start_date="2024-03-01"))
    instance = dg.DagsterInstance.ephemeral()

    for day in ("2024-03-02", "2024-03-03", "2024-03-03"):  # the last day twice
        result = dg.materialize([asset], partition_key=day, resources=resources, instance=instance)
        assert result.success

    [materialization] = result.asset_materializations_for_node("drift_report")
    project = project_id("synthetic")
    assert materialization.metadata["evidently_url"] == dg.MetadataValue.url(  # beside report_path
        f"http://127.0.0.1:8765/projects/{project}"
    )
    metadata = materialization.metadata
    assert metadata["sampled_rows"].value == {  # small days: every row
        "current": metadata["current_rows"].value,
        "reference": metadata["reference_rows"].value,
    }
    assert metadata["drift_methods"].value == ["jensenshannon", "wasserstein"]
    assert "report_path" in materialization.metadata
    workspace = open_workspace(str(tmp_path / "lake" / "evidently_workspace"))
    assert partitions(workspace, project) == ["2024-03-02", "2024-03-03"]


def _wait_for(predicate, seconds: float = 90.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def _projects(base: str) -> list[dict] | None:
    try:
        answer = requests.get(f"{base}/api/projects", timeout=5)
    except requests.ConnectionError:
        return None
    return answer.json() if answer.status_code == 200 else None


def test_the_evidently_ui_serves_the_project_and_its_days_and_stops_with_its_shell(tmp_path, reports):
    """As ``make reports`` starts it: in the background of a shell, on the lake's workspace."""
    calm, drifted = reports
    lake = tmp_path / "lake"
    workspace = open_workspace(workspace_location(Lake.open(str(lake)), tmp_path).folder)
    project = ensure_project(workspace, "synthetic", NUMERICAL, CATEGORICAL)
    add_drift_snapshot(workspace, project, DAY_1, calm.snapshot)
    add_drift_snapshot(workspace, project, DAY_2, drifted.snapshot)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = process_env(
        {"RECLAKE_STATE_DIR": str(tmp_path), "RECLAKE_LAKE_ROOT": str(lake), "RECLAKE_EVIDENTLY_UI_URL": base}
    )
    command = f"{sys.executable} -m monitoring.evidently_ui --exit-with-parent & echo $!; exec sleep 600"
    shell = subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, env=env, cwd=PROJECT_ROOT, text=True)
    ui = None
    try:
        ui = int(shell.stdout.readline())
        assert _wait_for(lambda: _projects(base)), "the Evidently UI never answered"
        assert [(p["id"], p["name"]) for p in _projects(base)] == [(str(project), "synthetic drift")]
        page = requests.get(project_url(base, project), timeout=10)  # what the asset links to
        assert page.status_code == 200 and "<html" in page.text.lower()
        snapshots = requests.get(f"{base}/api/projects/{project}/snapshots", timeout=10).json()
        assert sorted(s["metadata"]["partition"] for s in snapshots) == ["2024-03-02", "2024-03-03"]
        # The dashboard's first panel, as the UI asks for it: the share of drifted columns per day.
        [share] = requests.get(f"{base}/api/v2/dashboards/{project}", timeout=10).json()["panels"][0]["values"]
        series_filter = {key: share[key] for key in ("tags", "metadata", "metric", "metric_labels")}
        series = requests.post(
            f"{base}/api/v2/snapshots/{project}/data_series_batch", json={"series_filter": [series_filter]}, timeout=10
        ).json()
        assert [source["timestamp"][:10] for source in series["sources"]] == ["2024-03-02", "2024-03-03"]
        assert series["series"][0]["values"] == pytest.approx([0.0, 1 / len(NUMERICAL + CATEGORICAL)])
        shell.kill()  # the shell ends (as when the report server stops): the UI follows
        assert _wait_for(lambda: _gone(ui), 20), "the Evidently UI outlived its shell"
    finally:
        shell.kill()
        if ui is not None and not _gone(ui):
            os.kill(ui, signal.SIGKILL)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_served_models_days_sit_beside_the_drift_days_with_their_own_tab(tmp_path, reports):
    import numpy as np
    import pandas as pd

    from models.served_quality import served_model_quality
    from monitoring.served_model_report import served_model_snapshot
    from monitoring.workspace import SERVED_MODEL_TAG

    rng = np.random.default_rng(0)
    p = np.clip(rng.beta(2, 38, 20_000), 1e-4, 0.9)
    labels = (rng.random(len(p)) < p).astype(float)
    ids = pd.DataFrame({"user_id": rng.integers(0, 500, len(p)).astype(str), "item_id": rng.integers(0, 80, len(p))})
    snapshot = served_model_snapshot(labels, p * 1.3, labels[:5_000], p[:5_000], "binary", ids, ids[:5_000])
    workspace = open_workspace(str(tmp_path / "workspace"))
    project = ensure_project(workspace, "toy", NUMERICAL, CATEGORICAL)
    add_drift_snapshot(workspace, project, DAY_1, reports[0].snapshot)
    add_drift_snapshot(workspace, project, DAY_1, snapshot, SERVED_MODEL_TAG)
    add_drift_snapshot(workspace, project, DAY_1, snapshot, SERVED_MODEL_TAG)  # a re-run replaces it
    assert partitions(workspace, project) == [DAY_1.isoformat()]
    assert partitions(workspace, project, SERVED_MODEL_TAG) == [DAY_1.isoformat()]

    stored = workspace.get_run(project, snapshot_id(project, DAY_1, SERVED_MODEL_TAG))
    values = {type(r).__name__ + str(getattr(r, "display_name", "")): r for r in stored.metric_results.values()}
    means = sorted(float(r.value) for r in stored.metric_results.values() if "Mean value" in str(r.display_name))
    quality = served_model_quality(labels, p * 1.3, p[:5_000], "binary")
    assert means == pytest.approx(sorted([quality.observed, quality.predicted]), rel=1e-6)
    names = " ".join(values)
    assert all(name in names for name in ("NDCG", "Personalization", "RocAuc", "LogLoss")), names
    bias = {r.display_name: float(r.value) for r in stored.metric_results.values() if "Popularity" in r.display_name}
    assert set(bias) == {"Popularity Bias (arp)", "Popularity Bias (coverage)", "Popularity Bias (gini)"}
    assert all(0.0 <= value <= 1.0 for value in bias.values()), bias
    dashboard = workspace.get_dashboard(project)
    assert [tab.title for tab in dashboard.tabs] == ["Drift", "Served model"]
    [popularity] = [panel for panel in dashboard.panels if panel.title.startswith("Popularity bias")]
    assert [value.metric_labels for value in popularity.values] == [
        {"metric": "arp"},
        {"metric": "coverage"},
        {"metric": "gini"},
    ]


def _served_snapshot(by_popularity: bool, seed: int = 0):
    """A served model's day on 600 users x 200 items whose clicks follow Zipf popularity:
    scored by the items' popularity (``by_popularity``) or at random."""
    import numpy as np
    import pandas as pd

    from monitoring.served_model_report import served_model_snapshot

    rng = np.random.default_rng(seed)
    weight = 1 / np.arange(1, 201)
    items = rng.integers(0, 200, 24_000)
    ids = pd.DataFrame({"user_id": rng.integers(0, 600, len(items)).astype(str), "item_id": items.astype(str)})
    p = 0.2 * weight[items] / weight.max() + 0.01
    labels = (rng.random(len(p)) < p).astype(float)
    scores = p if by_popularity else rng.random(len(p)) * 0.2
    half = len(p) // 2
    return served_model_snapshot(
        labels[:half], scores[:half], labels[half:], scores[half:], "binary", ids[:half], ids[half:]
    )


def _popularity_bias(snapshot) -> dict[str, float]:
    results = snapshot.to_snapshot_model().metric_results.values()
    return {r.display_name[17:-1]: float(r.value) for r in results if r.display_name.startswith("Popularity Bias")}


def test_popularity_bias_is_high_for_a_model_that_ranks_by_popularity_and_low_for_a_random_one():
    popular, random = _popularity_bias(_served_snapshot(True)), _popularity_bias(_served_snapshot(False))
    assert set(popular) == set(random) == {"arp", "coverage", "gini"}
    # Normalised ARP: the mean popularity (users who clicked it in the reference window, over
    # the most clicked item's) of the items in users' top 10. Each user saw 20 random items,
    # so the top 10 by popularity can only lean so far: 0.18 against 0.16.
    assert 0.0 < random["arp"] < popular["arp"] <= 1.0
    assert 0.0 <= random["gini"] < 0.2 < 0.35 < popular["gini"] <= 1.0  # the same few items top every list
    assert popular["coverage"] < random["coverage"] <= 1.0  # fewer of the clicked items are shown
