"""Training beyond memory: a window streamed from Parquet (models.inputs.stream) trains like the in-memory one."""

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest
import toy_examples
import yaml

from models.inputs.features import FittedFeatures, label_array
from models.inputs.splits import split_by_day
from models.inputs.stream import ParquetWindow
from models.training.config import load_spec
from models.training.registry import _labels_of, evaluate_model, train_model
from resources.warehouse import WarehouseResource

SPEC = toy_examples.SPEC
DAYS = ("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04")
RANKER = {
    "type": "dcn_v2",
    "model": {"embedding_dim": 8, "cross_layers": 2, "deep_units": [32]},
    "training": {"batch_size": 128, "learning_rate": 0.005, "epochs": 3, "early_stopping_patience": None},
}


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    """Four toy days in a real DuckDB warehouse: (warehouse, in-memory train, test, Parquet stream of train)."""
    examples = toy_examples.make_training_examples(n_users=60, n_items=40, n_rows=16_000, days=DAYS)
    folder = tmp_path_factory.mktemp("window")
    path = folder / "warehouse.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.register("frame", examples)
        connection.execute("create table training_examples as select * from frame")
    warehouse = WarehouseResource(path=str(path))
    train, test = split_by_day(examples, [DAYS[-1]])
    days = [dt.date.fromisoformat(d) for d in DAYS[:-1]]
    files = warehouse.export_days("training_examples", days, folder / "parquet", row_group_rows=1000)
    return warehouse, train, test, ParquetWindow(files, shuffle_rows=3000)


def test_export_days_writes_one_file_per_day_in_row_groups(window):
    warehouse, train, _, stream = window
    assert [f.name for f in stream.files] == [f"training_examples-{d}.parquet" for d in DAYS[:-1]]
    assert (
        stream.rows == len(train) == warehouse.count_days("training_examples", dt.date(2024, 1, 1), dt.date(2024, 1, 3))
    )
    assert len(stream.row_groups) >= 6  # ~4000 rows a day; DuckDB rounds groups up to 2048 rows


def test_fit_from_sql_aggregates_matches_the_in_memory_fit(window):
    _, train, _, stream = window
    expected = FittedFeatures.fit(SPEC, train)
    fitted = stream.fit(SPEC)
    assert fitted.vocabularies == expected.vocabularies
    assert fitted.item_vocabulary == expected.item_vocabulary
    assert fitted.incomplete_cycles == expected.incomplete_cycles
    assert fitted.label_clip == expected.label_clip
    assert fitted.boundaries.keys() == expected.boundaries.keys()
    for name, cuts in expected.boundaries.items():
        np.testing.assert_allclose(fitted.boundaries[name], cuts, rtol=1e-5, atol=1e-6)
    assert fitted.moments.keys() == expected.moments.keys()
    for name, (mean, variance) in expected.moments.items():
        np.testing.assert_allclose(fitted.moments[name], (mean, variance), rtol=1e-4, atol=1e-6)


def test_an_epoch_reads_every_row_once_in_a_seeded_order_that_changes_per_epoch(window):
    _, train, _, stream = window
    fitted = stream.fit(SPEC)
    labels = _labels_of(load_spec(RANKER), fitted)

    def epoch(seed, number):
        batches = list(stream.batches(SPEC, labels, 256, seed, number))
        return np.concatenate([b[0]["user_id"] for b in batches]), np.concatenate([b[1] for b in batches])

    users, clicks = epoch(7, 0)
    assert len(users) == len(train)
    assert sorted(users) == sorted(train["user_id"].astype(str))
    assert clicks.sum() == label_array(train, SPEC).sum()
    again, _ = epoch(7, 0)
    assert (again == users).all()  # seeded: reproducible
    second, _ = epoch(7, 1)
    assert sorted(second) == sorted(users) and (second != users).mean() > 0.5  # reshuffled each epoch
    in_order, _ = epoch(None, 0)
    assert (in_order == np.concatenate([pd.read_parquet(f)["user_id"].astype(str) for f in stream.files])).all()


def test_streamed_training_matches_in_memory_quality_and_records_its_environment(window):
    _, train, test, stream = window
    in_memory = train_model(RANKER, train, feature_spec=SPEC)
    streamed = train_model(RANKER, stream, feature_spec=SPEC)
    memory_auc = evaluate_model(in_memory.model, test)["auc"]
    stream_auc = evaluate_model(streamed.model, test)["auc"]
    assert memory_auc > 0.6
    assert abs(stream_auc - memory_auc) < 0.02, (stream_auc, memory_auc)
    assert streamed.examples == len(train)
    environment = streamed.environment
    assert environment["streamed"] is True and in_memory.environment["streamed"] is False
    assert environment["device"] in ("CPU", "GPU") and environment["replicas"] >= 1
    assert environment["strategy"] and environment["precision_policy"] == "float32"
    assert environment["peak_rss_mb"] > 0


def test_the_pipelines_recommender_trains_streamed_with_retrieval_from_the_positives(window):
    from models.recommender import train_recommender
    from models.retrieval.two_tower import RetrievalConfig

    warehouse, train, test, stream = window
    days = [dt.date.fromisoformat(d) for d in DAYS]
    held_out = warehouse.read_days("training_examples", days[-2], days[-1])
    positives = warehouse.query(
        "select * from training_examples where event_date between ? and ? and is_positive = 1", [days[0], days[-3]]
    )
    _, items = toy_examples.feature_tables(pd.concat([train, test]))
    ranker = {**RANKER, "training": {**RANKER["training"], "epochs": 2, "early_stopping_patience": 1}}
    trained = train_recommender(
        held_out, SPEC, days, items, ranker=ranker, retrieval_config=RetrievalConfig(batch_size=128, epochs=2),
        train_stream=stream, train_positives=positives,
    )  # fmt: skip
    assert trained.train is stream and len(trained.validation) + len(trained.test) == len(held_out)
    assert trained.evaluated_on == days[-1] and trained.ranking.environment["streamed"] is True
    assert trained.metrics["ranking_auc"] > 0.6
    assert "retrieval_recall_at_k" in trained.metrics
    assert len(trained.seen_items) > 0 and trained.popular_items


def test_a_multitask_ranker_streams_its_two_labels(window):
    _, train, test, stream = window
    esmm = {"type": "esmm", "model": {"embedding_dim": 4, "ctr_units": [16], "cvr_units": [16]},
            "training": {"batch_size": 256, "epochs": 1, "early_stopping_patience": None}}  # fmt: skip
    result = train_model(esmm, stream, feature_spec=SPEC)
    assert result.examples == len(train) and set(result.history) >= {"loss", "pctr_auc"}
    assert evaluate_model(result.model, test)["ctr_auc"] > 0.55


def test_the_automatic_choices_train_streamed(window, tmp_path):
    """``ranker_config: auto`` on a window larger than memory: every ranker candidate
    trains from the stream, and the retrieval candidates fit on the training positives."""
    from models.retrieval.two_tower import RetrievalConfig
    from models.retriever_selection import select_retriever
    from models.selection import select_ranker

    warehouse, train, _, stream = window
    days = [dt.date.fromisoformat(d) for d in DAYS]
    held_out = warehouse.read_days("training_examples", days[-2], days[-1])
    configs = {
        "dcn": {**RANKER, "training": {**RANKER["training"], "epochs": 1}},
        "fm": {"type": "fm", "model": {"embedding_dim": 4}, "training": {"batch_size": 256, "epochs": 1}},
    }
    for name, config in configs.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    candidates = [str(tmp_path / f"{name}.yaml") for name in configs]
    selection = select_ranker(held_out, SPEC, days, candidates, train_stream=stream)
    trained = [c for c in selection.candidates if c.status == "trained"]
    assert len(trained) == 2 and selection.chosen.train is stream, selection.candidates
    assert selection.chosen.result.environment["streamed"] is True and selection.chosen.result.examples == len(train)
    assert selection.selecting_rows == (pd.to_datetime(held_out["event_date"]).dt.date == days[-2]).sum()

    positives = warehouse.query(
        "select * from training_examples where event_date between ? and ? and is_positive = 1", [days[0], days[-3]]
    )
    _, items = toy_examples.feature_tables(pd.concat([train, held_out]))
    candidates = {"popularity": None, "two_tower": RetrievalConfig(batch_size=128, epochs=1, embedding_dim=8)}
    retrievers = select_retriever(held_out, SPEC, days, items, candidates, train_positives=positives)
    assert {c.name: c.status for c in retrievers.candidates} == {"popularity": "trained", "two_tower": "trained"}
    assert retrievers.served == "two_tower" and retrievers.selected_on == f"the validation day ({days[-2]})"
