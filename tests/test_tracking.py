"""Experiment tracking: a training's record in MLflow, read back; what it tried (the
automatic choice's candidates, the sweeps' trials) nested under it as child runs; an
unreachable server never fails a training; the asset links its run; `make mlflow`'s
server answers."""

import logging
import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest
import requests
from conftest import PROJECT_ROOT, free_port, process_env

from models.tracking import PARENT_RUN_TAG, ChildRun, TrackedRun, data_window, log_training, validation_metrics
from resources.tracking import TrackingResource

CONFIG = {"type": "fm", "model": {"embedding_dim": 8, "deep_units": [16, 8]}, "training": {"epochs": 3}}
HISTORY = {"loss": [0.52, 0.47, 0.46], "val_loss": [0.55, 0.50, 0.51], "val_auc": [0.66, 0.70, 0.69]}
METRICS = {"ranking_auc": 0.71, "ranking_logloss": 0.44, "retrieval_hr@10": 0.25}
WINDOW = {"window": "2024-03-01 .. 2024-03-07", "train_rows": 250_000}


def _log(uri: str, run_name: str = "20240307-abcdef12", **overrides) -> TrackedRun | None:
    arguments = {
        "model_config": CONFIG,
        "history": HISTORY,
        "metrics": METRICS,
        "data_window": WINDOW,
        "tags": {"dagster.run_id": "abcdef12-run"},
        "best_epoch": 2,
        **overrides,
    }
    return log_training(uri, "reclake-test", run_name, **arguments)


@pytest.fixture
def sqlite_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.mark.unit
def test_a_training_is_readable_back_with_its_params_metrics_and_tags(tmp_path, sqlite_uri):
    import mlflow
    from mlflow.tracking import MlflowClient

    run = _log(sqlite_uri, artifact_root=str(tmp_path / "artifacts"))
    assert run is not None and run.tracking_uri == sqlite_uri
    mlflow.set_tracking_uri(sqlite_uri)
    try:
        runs = mlflow.search_runs(
            experiment_names=["reclake-test"], filter_string="tags.`dagster.run_id` = 'abcdef12-run'"
        )
    finally:
        mlflow.set_tracking_uri(None)
    (row,) = runs.to_dict("records")
    assert row["run_id"] == run.run_id and row["status"] == "FINISHED"
    assert row["tags.mlflow.runName"] == "20240307-abcdef12"
    assert row["params.config.type"] == "fm" and row["params.config.model.embedding_dim"] == "8"
    assert row["params.config.model.deep_units"] == "[16, 8]"
    assert row["params.data.window"] == "2024-03-01 .. 2024-03-07" and row["params.best_epoch"] == "2"
    assert row["metrics.ranking_auc"] == pytest.approx(0.71)
    assert row["metrics.retrieval_hr_at_10"] == pytest.approx(0.25)  # "@" is not allowed in MLflow names
    # The kept epoch's validation figures, and the per-epoch curves step by step.
    assert row["metrics.validation_loss"] == pytest.approx(0.50) and row["metrics.validation_auc"] == pytest.approx(
        0.70
    )
    client = MlflowClient(sqlite_uri)
    history = client.get_metric_history(run.run_id, "val_loss")
    assert [(m.step, round(m.value, 4)) for m in history] == [(1, 0.55), (2, 0.5), (3, 0.51)]
    # The whole config as an artifact, under the given artifact root.
    (artifact,) = client.list_artifacts(run.run_id)
    assert artifact.path == "model_config.json"
    assert (tmp_path / "artifacts").is_dir()


def _children(uri: str, parent_id: str) -> dict[str, object]:
    """The runs nested directly under ``parent_id``, by name (MLflow's own search)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    runs = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent_id}'")
    return {run.info.run_name: run for run in runs}


@pytest.mark.unit
def test_candidates_and_trials_are_child_runs_of_the_training(tmp_path, sqlite_uri):
    trials = [
        ChildRun("fm: trial 0", {"trial": 0, "model.embedding_dim": 4}, {"validation_auc": 0.69, "seconds": 1.5}),
        ChildRun("fm: trial 1", {"trial": 1}, {"validation_auc": None, "seconds": 0.4}, status="KILLED"),
    ]
    children = [
        ChildRun(
            "ranker:fm",
            {"candidate": "fm", "sweep_best": {"model.embedding_dim": 4}},
            {"validation_auc": 0.69, "test_auc": 0.70, "seconds": 2.1},
            {"reclake.chosen": "true"},
            children=trials,
        ),
        ChildRun("ranker:esmm", {"candidate": "esmm"}, {"seconds": 0.0}, {"reclake.status": "skipped"}, "KILLED"),
        ChildRun("retriever:popularity", {"kind": "popularity"}, {"validation_hr@10": 0.25, "seconds": 0.1}),
    ]
    run = _log(sqlite_uri, children=children, artifact_root=str(tmp_path / "artifacts"))
    assert run is not None
    nested = _children(sqlite_uri, run.run_id)
    assert set(nested) == {"ranker:fm", "ranker:esmm", "retriever:popularity"}
    fm = nested["ranker:fm"]
    assert fm.info.status == "FINISHED" and fm.data.tags["reclake.chosen"] == "true"
    assert fm.data.params["candidate"] == "fm" and fm.data.params["sweep_best.model.embedding_dim"] == "4"
    assert fm.data.metrics == pytest.approx({"validation_auc": 0.69, "test_auc": 0.70, "seconds": 2.1})
    # The training's tags (the Dagster run id) are on every child too.
    assert fm.data.tags["dagster.run_id"] == "abcdef12-run"
    assert nested["ranker:esmm"].info.status == "KILLED"
    assert nested["retriever:popularity"].data.metrics["validation_hr_at_10"] == pytest.approx(0.25)
    # The sweep's trials nest under their candidate, not under the training.
    swept = _children(sqlite_uri, fm.info.run_id)
    assert set(swept) == {"fm: trial 0", "fm: trial 1"}
    assert swept["fm: trial 0"].data.metrics == pytest.approx({"validation_auc": 0.69, "seconds": 1.5})
    assert swept["fm: trial 1"].info.status == "KILLED" and "validation_auc" not in swept["fm: trial 1"].data.metrics
    with pytest.raises(ValueError, match="status"):
        ChildRun("bad", status="DONE")


@pytest.mark.unit
def test_an_unreachable_server_is_a_warning_not_a_failure(caplog):
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="models.tracking"):
        assert _log(f"http://127.0.0.1:{free_port()}") is None
    assert time.perf_counter() - started < 10
    assert "does not answer" in caplog.text


@pytest.mark.unit
def test_a_broken_store_is_a_warning_not_a_failure(tmp_path, caplog):
    (tmp_path / "not_a_folder").write_text("a file where the store's folder should be")
    with caplog.at_level(logging.WARNING, logger="models.tracking"):
        assert _log(f"sqlite:///{tmp_path / 'not_a_folder' / 'mlflow.db'}") is None
    assert "could not log training" in caplog.text


@pytest.mark.unit
def test_validation_figures_and_data_window():
    assert validation_metrics(HISTORY, None) == {"validation_loss": 0.51, "validation_auc": 0.69}
    assert validation_metrics({"loss": [0.5]}, 1) == {}

    class Trained:
        import datetime as dt

        trained_on = (dt.date(2024, 3, 1), dt.date(2024, 3, 5))
        evaluated_on = dt.date(2024, 3, 7)
        train, validation, test = [0] * 10, None, [0] * 3

    assert data_window(["2024-03-01", "2024-03-07"], Trained()) == {
        "window": "2024-03-01 .. 2024-03-07",
        "trained_on": "2024-03-01 .. 2024-03-05",
        "evaluated_on": "2024-03-07",
        "train_rows": 10,
        "test_rows": 3,
    }


@pytest.mark.unit
def test_the_resource_links_the_run_in_the_asset_metadata(tmp_path, sqlite_uri):
    @dg.asset
    def trained(context: dg.AssetExecutionContext, tracking: TrackingResource) -> dg.MaterializeResult:
        links = tracking.log_training(
            context, "synthetic", "v1", model_config=CONFIG, history=HISTORY, metrics=METRICS, data_window=WINDOW
        )
        return dg.MaterializeResult(metadata=links)

    resource = TrackingResource(
        tracking_uri=sqlite_uri, artifact_root=str(tmp_path / "artifacts"), ui_url="http://127.0.0.1:5001"
    )
    result = dg.materialize([trained], resources={"tracking": resource})
    metadata = result.asset_materializations_for_node("trained")[0].metadata
    run_id = metadata["mlflow_run_id"].value
    experiment_id = _experiment_id(sqlite_uri, "reclake-synthetic")
    assert metadata["mlflow_run_url"].value == f"http://127.0.0.1:5001/#/experiments/{experiment_id}/runs/{run_id}"
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(sqlite_uri).get_run(run_id).data.tags
    assert tags["dagster.run_id"] == result.run_id and tags["dagster.asset"] == "trained"
    # Unreachable: the asset still materializes, without links.
    resource = TrackingResource(tracking_uri=f"http://127.0.0.1:{free_port()}", ui_url="http://127.0.0.1:5001")
    result = dg.materialize([trained], resources={"tracking": resource})
    assert result.success and not result.asset_materializations_for_node("trained")[0].metadata


def _experiment_id(uri: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).get_experiment_by_name(name).experiment_id


@pytest.mark.integration
def test_make_mlflow_serves_the_ui_over_the_store(tmp_path):
    """``python -m automation.mlflow_ui`` (what ``make mlflow`` runs) over a state dir
    with one tracked run: the UI page and the run answer over HTTP."""
    state = tmp_path / "state"
    store = f"sqlite:///{state / 'mlflow' / 'mlflow.db'}"
    run = _log(store, artifact_root=str(state / "mlflow" / "artifacts"))
    assert run is not None
    port = free_port()
    env = process_env({"RECLAKE_STATE_DIR": str(state), "RECLAKE_MLFLOW_UI_URL": f"http://127.0.0.1:{port}"})
    log = (tmp_path / "mlflow.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "automation.mlflow_ui"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
            try:
                if requests.get(f"{base}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "mlflow server not ready after 120 s"
            time.sleep(0.5)
        assert requests.get(base, timeout=10).status_code == 200
        answer = requests.get(f"{base}/api/2.0/mlflow/runs/get", params={"run_id": run.run_id}, timeout=10)
        assert answer.status_code == 200 and answer.json()["run"]["info"]["run_name"] == "20240307-abcdef12"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


SMALL_TRAINING = {"batch_size": 256, "epochs": 2, "early_stopping_patience": 1}
SMALL_CANDIDATES = {
    "small_lr": {"type": "hashed_lr", "model": {"num_bins": 4096}, "training": {**SMALL_TRAINING, "optimizer": "ftrl"}},
    "small_fm": {
        "type": "fm",
        "model": {"embedding_dim": 4},
        "training": SMALL_TRAINING,
        "search_space": {"model.embedding_dim": {"type": "categorical", "choices": [2, 4]}},
    },
}


@pytest.mark.integration
def test_the_training_assets_link_their_mlflow_runs(tmp_path):
    """``recommender_model`` (``ranker_config: auto`` over two small candidates, one swept)
    and a ``zoo_model`` partition on a toy warehouse: each logs its training to the
    settings' default SQLite store and links the run in its metadata; every ranker
    candidate, every sweep trial and every retrieval candidate of the automatic choice is a
    child run of the training's run, with params, validation metric and seconds."""
    import duckdb
    import toy_examples
    import yaml
    from conftest import make_settings
    from mlflow.tracking import MlflowClient

    from assets.models import recommender_model
    from assets.zoo import zoo_model
    from models.retriever_selection import RETRIEVER_CANDIDATES
    from resources import build_resources

    paths = []
    for name, document in SMALL_CANDIDATES.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(document))
        paths.append(str(tmp_path / f"{name}.yaml"))
    settings = make_settings(
        tmp_path, tmp_path / "state", RANKER_CONFIG="auto", AUTO_CANDIDATES=",".join(paths), AUTO_SWEEP_TRIALS="2"
    )
    examples = toy_examples.make_training_examples(
        n_users=40, n_items=30, n_rows=3000, days=("2024-03-01", "2024-03-02", "2024-03-03")
    )
    users, items = toy_examples.feature_tables(examples)
    with duckdb.connect(settings.warehouse_path) as connection:
        for name, frame in {
            "training_examples": examples.drop(columns=["true_pctr"]),
            "user_features": users,
            "item_features": items,
        }.items():
            connection.register("frame", frame)
            connection.execute(f"create table {name} as select * from frame")
            connection.unregister("frame")
    resources = build_resources(settings)
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    assert dg.materialize([recommender_model], resources=resources, instance=instance).success
    assert dg.materialize([zoo_model], partition_key="fm", resources=resources, instance=instance).success
    print(f"two trainings, tracked, in {time.perf_counter() - started:.1f} s")
    client = MlflowClient(settings.mlflow_tracking)
    for key in ("recommender_model", "zoo_model"):
        (record,) = instance.fetch_materializations(dg.AssetKey(key), limit=1).records
        metadata = record.asset_materialization.metadata
        assert metadata["mlflow_run_url"].value.startswith("http://127.0.0.1:5001/#/experiments/")
        run = client.get_run(metadata["mlflow_run_id"].value)
        assert run.data.tags["dagster.run_id"] == record.run_id and run.data.tags["dagster.asset"] == key
        assert run.data.params["data.window"] == "2024-03-01 .. 2024-03-03"
        assert client.get_metric_history(run.info.run_id, "loss"), key  # per-epoch curve
    zoo_run = client.get_run(
        instance.fetch_materializations(dg.AssetKey("zoo_model"), limit=1)
        .records[0]
        .asset_materialization.metadata["mlflow_run_id"]
        .value
    )
    assert zoo_run.data.params["config.type"] == "fm" and "auc" in zoo_run.data.metrics
    assert (settings.mlflow_dir / "mlflow.db").is_file() and (settings.mlflow_dir / "artifacts").is_dir()
    # The automatic choice: its candidates and trials nested under the training's run.
    (record,) = instance.fetch_materializations(dg.AssetKey("recommender_model"), limit=1).records
    metadata = record.asset_materialization.metadata
    # The retrieval choice beside the ranker's.
    choice = metadata["retriever_choice"].value
    assert set(choice["candidates"]) == set(RETRIEVER_CANDIDATES)
    assert choice["chosen"] == metadata["retriever_chosen"].value and choice["served"] != "popularity"
    assert "Chosen retrieval" in metadata["retriever_selection"].value
    assert metadata["retriever_popularity_won"].value == (choice["chosen"] == "popularity")

    uri = settings.mlflow_tracking
    nested = _children(uri, metadata["mlflow_run_id"].value)
    expected = {f"ranker:{path}" for path in paths} | {f"retriever:{name}" for name in RETRIEVER_CANDIDATES}
    assert set(nested) == expected
    assert metadata["mlflow_child_runs"].value == len(expected) + 2  # and the two trials
    for name, run in nested.items():
        assert run.data.tags["dagster.run_id"] == record.run_id
        assert "seconds" in run.data.metrics and run.data.params["candidate"], name
        if run.data.tags["reclake.status"] == "trained":
            assert "validation_auc" in run.data.metrics or "validation_hr_at_10" in run.data.metrics, name
    ranker_choice = metadata["ranker_choice"].value
    assert nested[f"ranker:{paths[0]}"].data.metrics["validation_auc"] == pytest.approx(
        ranker_choice["candidates"][paths[0]]["validation_auc"], abs=1e-5
    )
    # The ranker is chosen on the validation day by its AUC there, and the choice reported.
    assert set(ranker_choice["candidates"]) == set(paths)
    assert ranker_choice["selected_on"] == "the validation day (2024-03-02)"
    chosen = ranker_choice["candidates"][ranker_choice["chosen"]]
    assert chosen["validation_auc"] == max(c["validation_auc"] for c in ranker_choice["candidates"].values())
    assert chosen["test_auc"] == pytest.approx(metadata["ranking_auc"].value, abs=1e-4)
    assert ranker_choice["margin"] >= 0 and ranker_choice["runner_up"] in ranker_choice["candidates"]
    assert f"**{ranker_choice['chosen']}** (chosen)" in metadata["ranker_selection"].value
    assert metadata["ranker_chosen"].value == ranker_choice["chosen"]
    trials = _children(uri, nested[f"ranker:{paths[1]}"].info.run_id)
    assert len(trials) == 2
    for run in trials.values():
        assert run.data.params["model.embedding_dim"] in ("2", "4") and "seconds" in run.data.metrics
    retriever = nested[f"retriever:{choice['served']}"]
    assert retriever.data.tags["reclake.served"] == "true" and retriever.data.params["kind"] == "two_tower"
    assert retriever.data.metrics["validation_hr_at_10"] == pytest.approx(
        choice["candidates"][choice["served"]]["validation_hr@10"], abs=1e-5
    )
    assert MlflowClient(uri).get_run(metadata["mlflow_run_id"].value).info.status == "FINISHED"
