"""Batch inference and evaluation of stored models: a small exported model scores a
warehouse day chunk by chunk exactly as ``Recommender.rank`` does, writes every active
user's top-k exactly as ``Recommender.recommend`` answers, and its stored evaluation equals
the metrics computed directly; the assets write all three to the lake."""

import json
import math

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import toy_examples
from conftest import make_settings
from serving_support import export_toy_recommender

from models import evaluation
from models.batch_inference import TOPK_COLUMNS, recommend_chunks, score_chunks
from models.export.savedmodel import load_recommender
from models.inputs.features import label_array
from models.stored_evaluation import evaluate_stored_model
from resources.warehouse import WarehouseResource

DAYS = ("2024-03-01", "2024-03-02")
DAY = pd.Timestamp(DAYS[1]).date()
CHUNK_ROWS = 400
CHUNK_USERS = 16
TOP_K = 5


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
    """A toy model exported once, and a warehouse whose ``training_examples`` hold two
    days of other toy rows (without the generator's ``true_pctr``, as dbt writes them)."""
    folder = tmp_path_factory.mktemp("batch")
    export_toy_recommender(folder / "savedmodel", "toy-batch")
    examples = toy_examples.make_training_examples(n_users=40, n_items=30, n_rows=3000, days=DAYS, seed=5)
    with duckdb.connect(str(folder / "warehouse.duckdb")) as connection:
        connection.register("toy", examples.drop(columns=["true_pctr"]))
        connection.execute("create table training_examples as select * from toy")
    return folder


@pytest.fixture(scope="module")
def recommender(toy_world):
    return load_recommender(toy_world / "savedmodel")


@pytest.fixture(scope="module")
def warehouse(toy_world):
    return WarehouseResource(path=str(toy_world / "warehouse.duckdb"))


@pytest.mark.integration
def test_batch_predictions_equal_rank_chunk_by_chunk(recommender, warehouse):
    parts: list[pd.DataFrame] = []

    def keep(index: int, predictions: pd.DataFrame) -> str:
        parts.append(predictions)
        return f"part-{index}"

    summary = score_chunks(recommender, warehouse.iter_day("training_examples", DAY, CHUNK_ROWS), keep)
    day_rows = warehouse.read_days("training_examples", DAY, DAY)
    assert summary.rows == len(day_rows) > CHUNK_ROWS
    # Bounded chunks: no part holds more than CHUNK_ROWS rows.
    assert len(parts) >= math.ceil(len(day_rows) / CHUNK_ROWS) and max(len(p) for p in parts) <= CHUNK_ROWS
    assert summary.parts == [f"part-{i}" for i in range(len(parts))]
    predictions = pd.concat(parts, ignore_index=True)
    assert predictions["event_id"].tolist() == day_rows["event_id"].tolist()
    np.testing.assert_allclose(predictions["score"], recommender.rank(day_rows), rtol=1e-5, atol=1e-6)
    assert list(predictions.columns) == [
        "event_id", "event_date", "user_id", "item_id", *recommender.spec.label_columns, "score", "model_version",
    ]  # fmt: skip
    assert (predictions["model_version"] == "toy-batch").all() and summary.outputs == ("score",)
    assert summary.mean_score == pytest.approx(float(predictions["score"].mean()), rel=1e-5)


def _newest_context(day_rows: pd.DataFrame, context: list[str]) -> pd.DataFrame:
    """Each user's context columns of their newest event, by user id (computed in pandas,
    independently of the asset's DuckDB query)."""
    ordered = day_rows.sort_values(["event_ts", "event_id"], kind="stable")
    return ordered.groupby("user_id")[context].last().reset_index().sort_values("user_id", ignore_index=True)


def _check_topk(topk: pd.DataFrame, k: int) -> None:
    """Ranks 1..n per user, distinct items, scores best first."""
    assert list(topk.columns) == list(TOPK_COLUMNS)
    for _, rows in topk.groupby("user_id"):
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1)) and len(rows) <= k
        assert rows["item_id"].is_unique
        assert (np.diff(rows["score"].to_numpy()) <= 1e-6).all()


@pytest.mark.integration
def test_every_active_user_gets_the_served_top_k_chunk_by_chunk(recommender, warehouse):
    from assets.batch import active_users

    context = [c.name for c in recommender.spec.role_columns("context")]
    parts: list[pd.DataFrame] = []

    def keep(index: int, rows: pd.DataFrame) -> str:
        parts.append(rows)
        return f"part-{index}"

    summary = recommend_chunks(recommender, active_users(warehouse, DAY, context, CHUNK_USERS), keep, k=TOP_K)
    day_rows = warehouse.read_days("training_examples", DAY, DAY)
    expected_users = _newest_context(day_rows, context)
    assert summary.users == len(expected_users) > CHUNK_USERS and summary.k == TOP_K
    # Bounded chunks: no part holds more than CHUNK_USERS users.
    assert len(parts) == math.ceil(summary.users / CHUNK_USERS) == len(summary.parts)
    assert max(p["user_id"].nunique() for p in parts) <= CHUNK_USERS
    topk = pd.concat(parts, ignore_index=True)
    assert summary.rows == len(topk) and set(topk["user_id"]) == set(expected_users["user_id"])
    _check_topk(topk, TOP_K)
    assert (topk["model_version"] == "toy-batch").all()
    # Exactly what the served model's recommend answers for each user with their newest context.
    answers = recommender.recommend(expected_users["user_id"].tolist(), TOP_K, expected_users)
    for answer in answers:
        rows = topk[topk["user_id"] == answer.user_id]
        assert rows["item_id"].tolist() == [item.item_id for item in answer.items]
        np.testing.assert_allclose(rows["score"], [item.score for item in answer.items], rtol=1e-6)
        assert rows["popularity_fallback"].eq(answer.fallback == "popularity").all()
    # A user the model does not know gets the popularity list, flagged.
    stranger = expected_users.head(1).assign(user_id="stranger")
    unknown = recommend_chunks(recommender, [stranger], keep, k=TOP_K)
    assert unknown.fallback_users == 1 and parts[-1]["popularity_fallback"].all()
    popular = [item_id for item_id, _ in recommender.metadata["popular_items"][:TOP_K]]
    assert parts[-1]["item_id"].tolist() == popular


@pytest.mark.integration
def test_stored_evaluation_equals_the_metrics_computed_directly(toy_world, recommender, warehouse):
    day_rows = warehouse.read_days("training_examples", DAY, DAY)
    metrics = evaluate_stored_model(toy_world / "savedmodel", day_rows)
    labels, scores = label_array(day_rows, recommender.spec), recommender.rank(day_rows)
    assert metrics == pytest.approx(
        {
            "auc": evaluation.auc(labels, scores),
            "logloss": evaluation.logloss(labels, scores),
            "normalized_entropy": evaluation.normalized_entropy(labels, scores),
            "calibration": float(scores.mean() / labels.mean()),
            "expected_calibration_error": evaluation.expected_calibration_error(labels, scores),
            "examples": len(day_rows),
        }
    )
    with pytest.raises(ValueError, match="empty"):
        evaluate_stored_model(recommender, day_rows.head(0))


@pytest.mark.integration
def test_the_batch_assets_write_a_day_of_predictions_and_two_versions_metrics(tmp_path, toy_world):
    from assets.batch import build_batch_assets
    from assets.partitions import daily_partitions_for
    from resources import build_resources

    settings = make_settings(tmp_path, tmp_path / "state", WAREHOUSE_PATH=str(toy_world / "warehouse.duckdb"))
    resources = {
        k: v for k, v in build_resources(settings).items() if k in ("lake", "warehouse", "pipeline", "model_store")
    }
    store, lake = resources["model_store"], resources["lake"].get_lake()
    served = store.register(lake, str(toy_world / "savedmodel"), {"model_version": "toy-batch"}, {})
    other = store.register(lake, str(toy_world / "savedmodel"), {"model_version": "toy-batch"}, {})
    store.pin(served)
    predictions, evaluation_asset = build_batch_assets(daily_partitions_for(settings))
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize(
        [predictions, evaluation_asset],
        partition_key=DAY.isoformat(),
        resources=resources,
        instance=instance,
        run_config={
            "ops": {
                "batch_predictions": {"config": {"chunk_rows": CHUNK_ROWS, "top_k": TOP_K, "chunk_users": CHUNK_USERS}}
            }
        },
    )
    assert result.success
    (scored,) = result.asset_materializations_for_node("batch_predictions")
    rows = scored.metadata["rows"].value
    parts = lake.list_files(lake.batch_predictions_dir("synthetic", DAY))
    parts = [url for url in parts if "/topk/" not in url]
    assert len(parts) == scored.metadata["parts"].value == math.ceil(rows / CHUNK_ROWS)
    written = pd.concat([lake.read_parquet(url) for url in parts], ignore_index=True)
    assert len(written) == rows and written["event_id"].is_unique
    assert scored.metadata["model_version"].value == "toy-batch" and scored.metadata["model_tag"].value == served
    # Every active user's top-k beside the scores, in predictions/<source>/topk/dt=.../.
    from assets.batch import topk_dir

    topk_parts = lake.list_files(topk_dir(lake, "synthetic", DAY))
    assert topk_parts and all("/predictions/synthetic/topk/dt=2024-03-02/part-" in url for url in topk_parts)
    topk = pd.concat([lake.read_parquet(url) for url in topk_parts], ignore_index=True)
    users = written["user_id"].nunique()
    assert scored.metadata["topk_users"].value == users == topk["user_id"].nunique()
    assert scored.metadata["topk_parts"].value == len(topk_parts) == math.ceil(users / CHUNK_USERS)
    assert scored.metadata["topk_rows"].value == len(topk) and scored.metadata["topk_k"].value == TOP_K
    _check_topk(topk, TOP_K)

    (evaluated,) = result.asset_materializations_for_node("stored_model_evaluation")
    report = json.loads(lake.read_bytes(lake.evaluation_file(served, DAY)))
    assert report["model_tag"] == served and report["day"] == DAY.isoformat()
    assert evaluated.metadata["auc"].value == pytest.approx(report["metrics"]["auc"])
    # Another stored version on the same day: its own report beside the first.
    result = dg.materialize(
        [evaluation_asset],
        partition_key=DAY.isoformat(),
        resources=resources,
        instance=instance,
        run_config={"ops": {"stored_model_evaluation": {"config": {"model_tag": other}}}},
    )
    assert result.success
    second = json.loads(lake.read_bytes(lake.evaluation_file(other, DAY)))
    assert second["model_tag"] == other and second["metrics"] == pytest.approx(report["metrics"])


@pytest.mark.integration
def test_the_command_line_compares_stored_versions_on_a_day(tmp_path, toy_world):
    """``python -m automation.evaluate_stored --day D --tag A --tag B``: both versions'
    metrics side by side, and their reports in the lake."""
    import subprocess
    import sys

    from conftest import PROJECT_ROOT, process_env

    from resources import build_resources

    environ = {
        "RECLAKE_STATE_DIR": str(tmp_path / "state"),
        "RECLAKE_LAKE_ROOT": str(tmp_path / "lake"),
        "RECLAKE_WAREHOUSE_PATH": str(toy_world / "warehouse.duckdb"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    settings = make_settings(tmp_path, tmp_path / "state", WAREHOUSE_PATH=environ["RECLAKE_WAREHOUSE_PATH"])
    resources = build_resources(settings)
    store, lake = resources["model_store"], resources["lake"].get_lake()
    tags = [store.register(lake, str(toy_world / "savedmodel"), {"model_version": "toy-batch"}, {}) for _ in range(2)]
    completed = subprocess.run(
        [sys.executable, "-m", "automation.evaluate_stored", "--day", DAY.isoformat(), "--tag", tags[0], "--tag", tags[1]],
        cwd=PROJECT_ROOT, env=process_env(environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    table = completed.stdout[completed.stdout.index(f"synthetic on {DAY}") :]
    assert tags[0] in table and tags[1] in table and "| auc" in table
    for tag in tags:
        assert json.loads(lake.read_bytes(lake.evaluation_file(tag, DAY)))["model_tag"] == tag
