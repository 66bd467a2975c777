"""Export a trained recommender, reload it (here and in a fresh process) and check its signatures."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import toy_examples

from models.export.savedmodel import METADATA_FILE, SEEN_SCORE, export_recommender, load_recommender
from models.export.saving import save_module
from models.inputs.features import feature_arrays
from models.inputs.splits import split_by_day
from models.retrieval.popularity import popular_items
from models.retrieval.two_tower import RetrievalConfig
from models.training.registry import predict_values, train_model
from models.training.two_tower import train_retrieval
from reclake.feature_spec import load_feature_spec

SPEC = toy_examples.SPEC
DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
N_ITEMS = 120  # more than the 100 candidates recommend re-ranks, so retrieval has to choose
METADATA = {
    "model_version": "test-v1",
    "trained_on": [DAYS[0], DAYS[1]],
    "evaluated_on": DAYS[2],
    "metrics": {"auc": 0.7, "recall_at_k": 0.3},
}
RANKER = {
    "type": "dcn_v2",
    "model": {"embedding_dim": 8, "deep_units": [32]},
    "training": {"batch_size": 128, "learning_rate": 0.005, "epochs": 2, "early_stopping_patience": None},
}
CONTEXT = {"device": "desktop", "slot_position": 1, "hour_of_day": 9, "day_of_week": 2}

# Runs in a separate interpreter with plain TensorFlow: no `models` package, no
# tensorflow-recommenders, no TF_USE_LEGACY_KERAS. Reads a request on stdin.
FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    request = json.load(sys.stdin)
    signatures = tf.saved_model.load(sys.argv[1]).signatures
    rows = request["rows"]
    dtypes = {"string": tf.string, "int": tf.int64, "float": tf.float32}
    score = signatures["predict"](
        **{name: tf.constant(rows[name], dtypes[dtype]) for name, dtype in request["predict_inputs"].items()}
    )["score"]
    users = request["users"]
    recommend_inputs = request["recommend_inputs"]
    context = {
        name: tf.constant([value] * len(users), dtypes[recommend_inputs[name]]) for name, value in request["context"].items()
    }
    recommended = signatures["recommend"](user_id=tf.constant(users), k=tf.constant(100), **context)
    print(json.dumps({
        "score": score.numpy().tolist(),
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
    ranking = train_model(RANKER, train, feature_spec=SPEC).model
    retrieval = train_retrieval(train, SPEC, RetrievalConfig(batch_size=128, epochs=3)).model
    return ranking, retrieval


def seen_pairs(train: pd.DataFrame) -> pd.DataFrame:
    """What each user has clicked in training: excluded from their recommendations."""
    return train.loc[train["clicked"] == 1, ["user_id", "item_id"]].drop_duplicates()


def export(trained, data, path, **changes):
    ranking, retrieval = trained
    train, _, users, items = data
    arguments = {
        "user_features": users, "item_features": items, "metadata": METADATA, "path": path,
        "retrieval_model": retrieval, "popular_items": popular_items(train, 20), "seen_items": seen_pairs(train),
    }  # fmt: skip
    arguments.update(changes)
    return export_recommender(ranking, **arguments)


@pytest.fixture(scope="module")
def exported(data, trained, tmp_path_factory):
    return export(trained, data, tmp_path_factory.mktemp("export") / "savedmodel")


@pytest.fixture(scope="module")
def recommender(exported):
    return load_recommender(exported)


def context_rows(n: int, **changes) -> pd.DataFrame:
    return pd.DataFrame([{**CONTEXT, **changes}] * n)


def test_metadata_file_documents_the_model_and_its_inputs(exported, data):
    train, _, _, items_frame = data
    with open(os.path.join(exported, METADATA_FILE), encoding="utf-8") as handle:
        document = json.load(handle)
    assert document["model_version"] == "test-v1" and document["source"] == "synthetic"
    assert document["trained_on"] == [DAYS[0], DAYS[1]]
    assert document["item_count"] == N_ITEMS
    assert document["label"] == {"column": "clicked", "kind": "binary"}
    assert document["inputs"]["predict"] == {
        "user_id": "string", "item_id": "string", "device": "string", "slot_position": "int",
        "hour_of_day": "int", "day_of_week": "int",
    }  # fmt: skip
    assert document["inputs"]["recommend"]["k"] == "int"
    # The popular items first, then the rest of the catalogue: any k up to item_count is served.
    popular = [[item, score] for item, score in popular_items(train, 20)]
    assert document["popular_items"][: len(popular)] == popular
    assert sorted(item for item, _ in document["popular_items"]) == sorted(items_frame["item_id"].astype(str))
    assert {score for _, score in document["popular_items"][len(popular) :]} == {0.0}
    assert set(document["lookup_defaults"]) == {"user", "item"}
    assert set(document["lookup_defaults"]["user"]) == set(SPEC.lookup_features("user"))


def test_predict_reproduces_training_features(recommender, trained, data):
    """Serving looks features up in-graph; the scores must equal scoring the training rows."""
    _, test, _, _ = data
    ranking, _ = trained
    rows = test.head(300)
    expected = predict_values(ranking, feature_arrays(rows, SPEC))
    served = recommender.predict(rows[list(SPEC.request_features)])
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-7)


def test_rank_scores_full_feature_rows_like_the_trained_model(recommender, trained, data):
    """``rank`` takes the point-in-time features as given: it must equal the Keras model."""
    _, test, _, _ = data
    ranking, _ = trained
    rows = test.head(300)
    expected = predict_values(ranking, feature_arrays(rows, SPEC))
    np.testing.assert_allclose(recommender.rank(rows), expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="empty"):
        recommender.rank(rows.head(0))


def test_fresh_process_gives_identical_scores(exported, recommender, data):
    _, test, _, _ = data
    rows = test.head(50)[list(SPEC.request_features)]
    users = ["u0003", "never_seen", "u0010"]
    request = {
        "rows": {name: rows[name].tolist() for name in SPEC.request_features},
        "predict_inputs": recommender.metadata["inputs"]["predict"],
        "recommend_inputs": recommender.metadata["inputs"]["recommend"],
        "users": users,
        "context": CONTEXT,
    }
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, exported],
        input=json.dumps(request), env=env, cwd="/", capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])

    assert fresh["score"] == recommender.predict(rows).tolist()
    assert fresh["known_user"] == [True, False, True]
    in_process = recommender.recommend(users, 100, context_rows(3))
    for position in (0, 2):
        # The signature ranks seen items last with SEEN_SCORE; the Python side drops them.
        pairs = zip(fresh["item_ids"][position], fresh["scores"][position], strict=True)
        unseen = [(i, s) for i, s in pairs if s > SEEN_SCORE]
        assert [i for i, _ in unseen] == [item.item_id for item in in_process[position].items]
        assert [s for _, s in unseen] == [item.score for item in in_process[position].items]
        assert fresh["scores"][position][len(unseen) :] == [SEEN_SCORE] * (100 - len(unseen))


def test_recommend_sorts_by_the_ranker_in_the_request_context(recommender):
    (result,) = recommender.recommend(["u0007"], 15, context_rows(1, device="tablet", hour_of_day=20))
    assert result.fallback is None
    assert len(result.items) == 15
    scores = [item.score for item in result.items]
    assert scores == sorted(scores, reverse=True)
    rows = context_rows(15, device="tablet", hour_of_day=20).assign(
        user_id="u0007", item_id=[item.item_id for item in result.items]
    )
    np.testing.assert_allclose(recommender.predict(rows), scores, rtol=1e-5)


def test_k_is_chosen_per_request_up_to_the_indexed_items(recommender):
    for k in (1, 7, N_ITEMS):
        ids, scores = recommender.retrieve(["u0001"], k)
        assert ids.shape == scores.shape == (1, k)
        assert np.all(np.diff(scores, axis=1) <= 0)
    assert len(recommender.recommend(["never_seen"], 3, context_rows(1))[0].items) == 3
    with pytest.raises(ValueError, match=f"k must be between 1 and {N_ITEMS}"):
        recommender.recommend(["u0001"], N_ITEMS + 1, context_rows(1))


def test_recommend_reranks_the_unseen_retrieved_candidates(recommender, data):
    train, _, _, _ = data
    seen = seen_pairs(train).groupby("user_id")["item_id"].agg(set)
    retrieved_ids, _ = recommender.retrieve(["u0001", "u0002"], 100)
    recommended = recommender.recommend(["u0001", "u0002"], 100, context_rows(2, device="mobile"))
    for user, row, result in zip(["u0001", "u0002"], retrieved_ids, recommended, strict=True):
        assert seen[user] & set(row), "the fixture should retrieve some already-clicked items"
        assert {item.item_id for item in result.items} == set(row) - seen[user]
        assert all(0 <= item.score <= 1 for item in result.items)


def test_unknown_user_gets_the_popularity_fallback(recommender, data):
    train, _, _, _ = data
    unknown, known = recommender.recommend(["never_seen", "u0001"], 5, context_rows(2))
    assert unknown.fallback == "popularity"
    assert [(item.item_id, item.score) for item in unknown.items] == popular_items(train, 5)
    assert known.fallback is None


def test_loaded_recommender_rejects_values_the_spec_does_not_allow(recommender, data):
    _, test, _, _ = data
    with pytest.raises(ValueError, match="device must be in \\['mobile', 'desktop', 'tablet'\\]; got \\['phone'\\]"):
        recommender.predict(test.head(2).assign(device="phone"))
    with pytest.raises(ValueError, match="slot_position must be in"):
        recommender.predict(test.head(2).assign(slot_position=11))
    with pytest.raises(ValueError, match="missing column"):
        recommender.recommend(["u0001"], 3, context_rows(1).drop(columns=["device"]))


def test_a_source_without_ids_exports_predict_and_rank_only(tmp_path):
    criteo = load_feature_spec("criteo")
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({f"i{n}": rng.integers(0, 50, 400) for n in range(1, 14)})
    for n in range(1, 27):
        rows[f"c{n}"] = [f"{v:08x}" for v in rng.integers(0, 20, 400)]
    rows["clicked"] = (rng.random(400) < 0.3).astype(int)
    ranking = train_model({**RANKER, "type": "deepfm", "model": {"embedding_dim": 4}}, rows, feature_spec=criteo).model
    path = export_recommender(ranking, None, None, METADATA, tmp_path / "criteo")
    loaded = load_recommender(path)
    assert set(loaded.metadata["inputs"]) == {"predict", "rank"} and not loaded.can_recommend
    np.testing.assert_allclose(
        loaded.predict(rows.head(20)), predict_values(ranking, feature_arrays(rows.head(20), criteo)), rtol=1e-5
    )
    with pytest.raises(ValueError, match="no retrieval"):
        loaded.recommend(["u1"], 3, rows.head(1))


def test_a_multitask_ranker_exports_pctr_pcvr_and_pctcvr(data, tmp_path):
    train, test, users, items = data
    esmm = {"type": "esmm", "model": {"embedding_dim": 4, "ctr_units": [16], "cvr_units": [16]},
            "training": {"batch_size": 256, "epochs": 1, "early_stopping_patience": None}}  # fmt: skip
    model = train_model(esmm, train, feature_spec=SPEC).model
    loaded = load_recommender(export_recommender(model, users, items, METADATA, tmp_path / "esmm"))
    outputs = loaded.predict_outputs(test.head(30)[list(SPEC.request_features)])
    assert set(outputs) == {"score", "pctr", "pcvr", "pctcvr"} == set(loaded.metadata["outputs"])
    np.testing.assert_allclose(outputs["pctcvr"], outputs["pctr"] * outputs["pcvr"], rtol=1e-6)
    np.testing.assert_array_equal(outputs["score"], outputs["pctr"])


class TestExportErrors:
    def test_non_empty_directory(self, data, trained, tmp_path):
        (tmp_path / "stale.txt").write_text("old")
        with pytest.raises(FileExistsError, match="not empty"):
            export(trained, data, tmp_path)

    def test_missing_metadata_key(self, data, trained, tmp_path):
        metadata = {k: v for k, v in METADATA.items() if k != "evaluated_on"}
        with pytest.raises(ValueError, match=r"missing \['evaluated_on'\]"):
            export(trained, data, tmp_path / "m", metadata=metadata)

    def test_duplicate_user_ids(self, data, trained, tmp_path):
        _, _, users, _ = data
        doubled = users.assign(user_id=users["user_id"].where(users.index != 1, users["user_id"].iloc[0]))
        with pytest.raises(ValueError, match="duplicate user_ids"):
            export(trained, data, tmp_path / "m", user_features=doubled)

    def test_retrieval_needs_the_popularity_fallback(self, data, trained, tmp_path):
        with pytest.raises(ValueError, match="pass popular_items with a retrieval model"):
            export(trained, data, tmp_path / "m", popular_items=[])

    def test_without_retrieval_a_ranker_exports_predict_and_rank_only(self, data, trained, tmp_path):
        loaded = load_recommender(export(trained, data, tmp_path / "m", retrieval_model=None, popular_items=[]))
        assert set(loaded.metadata["inputs"]) == {"predict", "rank"} and not loaded.can_recommend


def test_retrieval_from_supplied_user_features_equals_the_in_graph_lookup(exported, data):
    """``retrieve_features`` (features from an online store) retrieves what ``retrieve``
    (the export's lookup table) does when given the same user rows."""
    from serving.features import FeatureAssembler

    _, _, users, _ = data
    recommender = load_recommender(exported)
    assembler = FeatureAssembler(SPEC, recommender.lookup_defaults)
    rows = users.head(5).to_dict("records")
    query = assembler.arrays(rows, recommender.query_features)
    item_ids, scores, known = recommender.retrieve_arrays(query, 7)
    expected_ids, expected_scores = recommender.retrieve([row["user_id"] for row in rows], 7)
    assert known.all() and (item_ids == expected_ids).all()
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    unknown = assembler.arrays([{**rows[0], "user_id": "nobody"}], recommender.query_features)
    assert not recommender.retrieve_arrays(unknown, 3)[2][0]


def test_save_module_traces_each_signature_once(tmp_path):
    """Saving is part of a trace's cache key: a signature given as its ``tf.function`` is
    traced once, in the save; one traced before the save is traced again in it."""

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def double(self, x):
            return {"y": 2.0 * x}

    module = Doubler()
    save_module(module, tmp_path / "once", {"double": module.double})
    assert module.double.experimental_get_tracing_count() == 1
    loaded = tf.saved_model.load(str(tmp_path / "once"))
    assert loaded.signatures["double"](x=tf.constant([1.5]))["y"].numpy().tolist() == [3.0]

    traced_before = Doubler()
    save_module(traced_before, tmp_path / "twice", {"double": traced_before.double.get_concrete_function()})
    assert traced_before.double.experimental_get_tracing_count() == 2
