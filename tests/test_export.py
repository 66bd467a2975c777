"""Export a trained recommender, reload it (here and in a fresh process) and check its signatures."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import toy_examples

from models.export import MAX_CANDIDATES, METADATA_FILE, SEEN_SCORE, export_recommender, load_recommender
from models.features import REQUEST_FEATURES, feature_arrays
from models.popularity import popular_items
from models.ranking import RankingConfig, predict_pctr
from models.retrieval import RetrievalConfig
from models.training import split_by_day, train_ranking, train_retrieval

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
N_ITEMS = 120  # more than MAX_CANDIDATES, so retrieval has to choose
METADATA = {
    "model_version": "test-v1",
    "trained_on": [DAYS[0], DAYS[1]],
    "evaluated_on": DAYS[2],
    "metrics": {"auc": 0.7, "recall_at_k": 0.3},
}

# Runs in a separate interpreter with plain TensorFlow: no `models` package, no
# tensorflow-recommenders, no TF_USE_LEGACY_KERAS. Reads a request on stdin.
FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    request = json.load(sys.stdin)
    signatures = tf.saved_model.load(sys.argv[1]).signatures
    rows = request["rows"]
    pctr = signatures["predict"](
        user_id=tf.constant(rows["user_id"]),
        item_id=tf.constant(rows["item_id"]),
        device=tf.constant(rows["device"]),
        slot_position=tf.constant(rows["slot_position"], tf.int64),
        hour_of_day=tf.constant(rows["hour_of_day"], tf.int64),
    )["pctr"]
    users = request["users"]
    recommended = signatures["recommend"](
        user_id=tf.constant(users),
        hour_of_day=tf.constant([request["hour_of_day"]] * len(users), tf.int64),
        device=tf.constant([request["device"]] * len(users)),
    )
    print(json.dumps({
        "pctr": pctr.numpy().tolist(),
        "item_ids": [[i.decode() for i in row] for row in recommended["item_ids"].numpy()],
        "scores": recommended["scores"].numpy().tolist(),
        "known_user": recommended["known_user"].numpy().tolist(),
    }))
    """
)


@pytest.fixture(scope="module")
def data():
    examples = toy_examples.make_training_examples(n_users=50, n_items=N_ITEMS, n_rows=6000, days=DAYS)
    train, test = split_by_day(examples, [DAYS[-1]])
    users, items = toy_examples.feature_tables(examples)
    return train, test, users, items


@pytest.fixture(scope="module")
def trained(data):
    train, _, _, _ = data
    ranking = train_ranking(train, RankingConfig(batch_size=128, learning_rate=0.005, epochs=2)).model
    retrieval = train_retrieval(train, RetrievalConfig(batch_size=128, epochs=3)).model
    return ranking, retrieval


@pytest.fixture(scope="module")
def exported(data, trained, tmp_path_factory):
    train, _, users, items = data
    ranking, retrieval = trained
    path = tmp_path_factory.mktemp("export") / "savedmodel"
    return export_recommender(
        ranking, retrieval, users, items, popular_items(train, 20), METADATA, path, seen_items=seen_pairs(train)
    )


def seen_pairs(train: pd.DataFrame) -> pd.DataFrame:
    """What each user has clicked in training: excluded from their recommendations."""
    return train.loc[train["clicked"] == 1, ["user_id", "item_id"]].drop_duplicates()


@pytest.fixture(scope="module")
def recommender(exported):
    return load_recommender(exported)


def test_metadata_file_follows_the_contract(exported, data):
    train, _, _, _ = data
    with open(os.path.join(exported, METADATA_FILE), encoding="utf-8") as handle:
        document = json.load(handle)
    assert set(document) == {
        "model_version", "trained_on", "evaluated_on", "metrics", "popular_items", "candidate_count"
    }
    assert document["model_version"] == "test-v1"
    assert document["trained_on"] == [DAYS[0], DAYS[1]]
    assert document["candidate_count"] == min(MAX_CANDIDATES, N_ITEMS) == 100
    assert document["popular_items"] == [[item, score] for item, score in popular_items(train, 20)]


def test_predict_reproduces_training_features(recommender, trained, data):
    """Serving looks features up in-graph; the scores must equal scoring the training rows."""
    _, test, _, _ = data
    ranking, _ = trained
    rows = test.head(300)
    expected = predict_pctr(ranking, feature_arrays(rows))
    served = recommender.predict(rows[list(REQUEST_FEATURES)])
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-7)


def test_rank_scores_full_feature_rows_like_the_trained_model(recommender, trained, data):
    """``rank`` takes the point-in-time features as given: it must equal the Keras model."""
    _, test, _, _ = data
    ranking, _ = trained
    rows = test.head(300)
    np.testing.assert_allclose(recommender.rank(rows), predict_pctr(ranking, feature_arrays(rows)), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="empty"):
        recommender.rank(rows.head(0))


def test_fresh_process_gives_identical_scores(exported, recommender, data):
    _, test, _, _ = data
    rows = test.head(50)[list(REQUEST_FEATURES)]
    users = ["u0003", "never_seen", "u0010"]
    request = {
        "rows": {name: rows[name].tolist() for name in REQUEST_FEATURES},
        "users": users,
        "hour_of_day": 9,
        "device": "desktop",
    }
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, exported],
        input=json.dumps(request), env=env, cwd="/", capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])

    assert fresh["pctr"] == recommender.predict(rows).tolist()
    assert fresh["known_user"] == [True, False, True]
    in_process = recommender.recommend(users, top_k=100, hour_of_day=9, device="desktop")
    for position in (0, 2):
        # The signature ranks seen items last with SEEN_SCORE; the Python side drops them.
        unseen = [(i, s) for i, s in zip(fresh["item_ids"][position], fresh["scores"][position], strict=True) if s != SEEN_SCORE]
        assert [i for i, _ in unseen] == [item.item_id for item in in_process[position].items]
        assert [s for _, s in unseen] == [item.score for item in in_process[position].items]
        assert fresh["scores"][position][len(unseen):] == [SEEN_SCORE] * (100 - len(unseen))


def test_recommend_sorts_by_pctr_at_slot_one(recommender):
    (result,) = recommender.recommend(["u0007"], top_k=15, hour_of_day=20, device="tablet")
    assert result.fallback is None
    assert len(result.items) == 15
    scores = [item.score for item in result.items]
    assert scores == sorted(scores, reverse=True)
    rows = {
        "user_id": ["u0007"] * 15,
        "item_id": [item.item_id for item in result.items],
        "device": ["tablet"] * 15,
        "slot_position": [1] * 15,
        "hour_of_day": [20] * 15,
    }
    np.testing.assert_allclose(recommender.predict(pd.DataFrame(rows)), scores, rtol=1e-5)


def test_recommend_reranks_the_unseen_retrieved_candidates(recommender, data):
    train, _, _, _ = data
    seen = seen_pairs(train).groupby("user_id")["item_id"].agg(set)
    retrieved_ids, retrieved_scores = recommender.retrieve(["u0001", "u0002"])
    assert retrieved_ids.shape == retrieved_scores.shape == (2, 100)
    assert np.all(np.diff(retrieved_scores, axis=1) <= 0)
    recommended = recommender.recommend(["u0001", "u0002"], top_k=100, hour_of_day=8, device="mobile")
    for user, row, result in zip(["u0001", "u0002"], retrieved_ids, recommended, strict=True):
        assert seen[user] & set(row), "the fixture should retrieve some already-clicked items"
        assert {item.item_id for item in result.items} == set(row) - seen[user]
        assert all(item.score >= 0 for item in result.items)


def test_unknown_user_gets_the_popularity_fallback(recommender, data):
    train, _, _, _ = data
    unknown, known = recommender.recommend(["never_seen", "u0001"], top_k=5, hour_of_day=0, device="mobile")
    assert unknown.fallback == "popularity"
    assert [(item.item_id, item.score) for item in unknown.items] == popular_items(train, 5)
    assert known.fallback is None


def test_loaded_recommender_rejects_bad_requests(recommender, data):
    _, test, _, _ = data
    with pytest.raises(ValueError, match="device must be one of"):
        recommender.predict(test.head(2).assign(device="phone"))
    with pytest.raises(ValueError, match="slot_position must be one of"):
        recommender.predict(test.head(2).assign(slot_position=11))
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        recommender.recommend(["u0001"], top_k=0, hour_of_day=1, device="mobile")
    with pytest.raises(ValueError, match="hour_of_day must be one of"):
        recommender.recommend(["u0001"], top_k=3, hour_of_day=24, device="mobile")


class TestExportErrors:
    def test_non_empty_directory(self, data, trained, tmp_path):
        train, _, users, items = data
        (tmp_path / "stale.txt").write_text("old")
        with pytest.raises(FileExistsError, match="not empty"):
            export_recommender(*trained, users, items, popular_items(train), METADATA, tmp_path)

    def test_missing_metadata_key(self, data, trained, tmp_path):
        train, _, users, items = data
        metadata = {k: v for k, v in METADATA.items() if k != "evaluated_on"}
        with pytest.raises(ValueError, match=r"missing \['evaluated_on'\]"):
            export_recommender(*trained, users, items, popular_items(train), metadata, tmp_path / "m")

    def test_duplicate_item_ids(self, data, trained, tmp_path):
        train, _, users, items = data
        doubled = items.assign(item_id=items["item_id"].where(items.index != 1, items["item_id"].iloc[0]))
        with pytest.raises(ValueError, match="duplicate item_ids"):
            export_recommender(*trained, users, doubled, popular_items(train), METADATA, tmp_path / "m")
