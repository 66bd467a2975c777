"""Retrieval-family zoo models: configs, training on a temporal split, full-catalogue
evaluation and the factorised ``retrieve`` SavedModel.

Every bundled retriever config is trained for real (TensorFlow models for a few epochs)
on a small ``training_examples`` frame with a planted structure: users and items fall
into groups, and a user's positive interactions mostly go to items of their own group.
"""

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from models.export.retrievers import PADDING_ID, export_retriever, load_retriever, topk_agreement
from models.export.savedmodel import METADATA_FILE
from models.training.config import RANKER, RETRIEVER, bundled_configs, load_spec
from models.training.registry import MODEL_TYPES
from models.training.retrievers import RETRIEVER_TYPES, positive_interactions, train_retriever
from reclake.feature_spec import load_feature_spec

SPEC = load_feature_spec("synthetic")
DAYS = (dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3))
RETRIEVER_CONFIGS = (
    "bpr_mf", "ease", "ease_recency", "joint", "popularity", "sasrec", "two_tower", "two_tower_history"
)  # fmt: skip
IN_EPOCHS = ("joint", "sasrec", "two_tower", "two_tower_history")
N_USERS, N_ITEMS, GROUPS = 120, 120, 4
POSITIVES_PER_USER_DAY, LOYALTY = 6, 0.85
# Tiny-data settings on top of the bundled configs: a few short epochs.
TINY = {
    "bpr_mf": {"training": {"epochs": 30, "batch_size": 256, "learning_rate": 0.01}},
    "two_tower": {"training": {"epochs": 5, "batch_size": 128}},
    "two_tower_history": {"model": {"history_length": 5}, "training": {"epochs": 5, "batch_size": 128}},
    "sasrec": {
        "model": {"max_length": 10, "embedding_dim": 16, "num_blocks": 1, "dropout": 0.0, "num_negatives": None},
        "training": {"epochs": 5, "batch_size": 64, "learning_rate": 0.01},
    },
    "joint": {"model": {"rating_units": [16]}, "training": {"epochs": 5, "batch_size": 128}},
}


def tiny_config(name: str) -> dict:
    """The bundled config ``name`` with the tiny-data settings."""
    config = load_spec(name).to_dict()
    for section, values in TINY.get(name, {}).items():
        config[section] = {**config[section], **values}
    return config


@pytest.fixture(scope="module")
def examples() -> pd.DataFrame:
    """``training_examples`` rows of ``DAYS``: per user and day, ``POSITIVES_PER_USER_DAY``
    positive interactions (each with probability ``LOYALTY`` with an item of the user's
    group, else with any item) and as many impressions of random items without one. User
    ``u`` is in group ``u % GROUPS`` (``user_segment``), item ``i`` in ``i % GROUPS``
    (``category``)."""
    rng = np.random.default_rng(0)
    rows = []
    for day in DAYS:
        for user in range(N_USERS):
            group = user % GROUPS
            own = rng.random(POSITIVES_PER_USER_DAY) < LOYALTY
            in_group = rng.integers(0, N_ITEMS // GROUPS, POSITIVES_PER_USER_DAY) * GROUPS + group
            items = np.where(own, in_group, rng.integers(0, N_ITEMS, POSITIVES_PER_USER_DAY))
            shown = rng.integers(0, N_ITEMS, POSITIVES_PER_USER_DAY)
            for positive, item in [(1, i) for i in items] + [(0, i) for i in shown]:
                rows.append((day, user, int(item), positive, int(rng.integers(0, 86_400_000_000))))
    frame = pd.DataFrame(rows, columns=["event_date", "user", "item", "is_positive", "micros"])
    frame["event_ts"] = pd.to_datetime(frame["event_date"]) + pd.to_timedelta(frame["micros"], unit="us")
    frame = frame.sort_values("event_ts", kind="stable").reset_index(drop=True)
    return pd.DataFrame(
        {
            "event_id": [f"e{n:06d}" for n in range(len(frame))],
            "event_date": frame["event_date"],
            "event_ts": frame["event_ts"],
            "user_id": [f"u{u:03d}" for u in frame["user"]],
            "item_id": [f"i{i:03d}" for i in frame["item"]],
            "user_segment": [f"seg_{u % GROUPS}" for u in frame["user"]],
            "category": [f"cat_{i % GROUPS}" for i in frame["item"]],
            "clicked": frame["is_positive"],
            "label": frame["is_positive"].astype(float),
            "is_positive": frame["is_positive"],
        }
    )


@pytest.fixture(scope="module")
def trained(examples):
    """``trained(name)``: the tiny version of bundled config ``name``, trained once per module."""
    results = {}

    def get(name: str):
        if name not in results:
            results[name] = train_retriever(tiny_config(name), examples, SPEC, list(DAYS))
        return results[name]

    return get


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """``exported(name)``: (the export of ``trained(name)``, its loaded SavedModel)."""
    results = {}

    def get(name: str):
        if name not in results:
            model = trained(name)
            metadata = {
                "model_version": f"{name}-test",
                "trained_on": [d.isoformat() for d in model.trained_on],
                "evaluated_on": model.evaluated_on.isoformat(),
                "metrics": model.metrics,
            }
            export = export_retriever(model, metadata, tmp_path_factory.mktemp(name) / "savedmodel")
            results[name] = (export, load_retriever(export.path))
        return results[name]

    return get


def _positive_pairs(examples: pd.DataFrame, days) -> pd.DataFrame:
    rows = examples[examples["event_date"].isin(days) & (examples["is_positive"] == 1)]
    return rows[["user_id", "item_id"]].drop_duplicates()


def random_recall_at_10(examples: pd.DataFrame) -> float:
    """Expected ``recall@10`` of a uniformly random ranking on the test day.

    A user with ``m`` masked (training) items ranks the other ``N_ITEMS - m`` at random:
    each unmasked test item is in the top 10 with probability ``10 / (N_ITEMS - m)``,
    a masked one never; recall averages over the user's test items, then over users
    with training items.
    """
    seen = _positive_pairs(examples, DAYS[:2]).groupby("user_id")["item_id"].agg(set)
    test = _positive_pairs(examples, DAYS[2:]).groupby("user_id")["item_id"].agg(set)
    recalls = [
        len(items - seen[user]) * 10 / (N_ITEMS - len(seen[user])) / len(items)
        for user, items in test.items()
        if user in seen.index
    ]
    return float(np.mean(recalls))


class TestConfigs:
    def test_every_retriever_config_is_bundled_and_round_trips(self):
        assert bundled_configs(RETRIEVER) == sorted(RETRIEVER_CONFIGS)
        assert bundled_configs() == sorted(bundled_configs(RANKER) + bundled_configs(RETRIEVER))
        assert not set(RETRIEVER_TYPES) & set(MODEL_TYPES)
        for name in RETRIEVER_CONFIGS:
            spec = load_spec(name)
            assert spec.family == RETRIEVER
            assert load_spec(spec.to_dict()) == dataclasses.replace(spec, source=None)

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            (
                {"type": "ease", "model": {"l3": 1.0}},
                r"'model' \(ease\) has unknown key\(s\) \['l3'\]; allowed: \['l2'\]",
            ),
            ({"type": "ease", "training": {"epochs": 3}}, r"'training' \(ease\) has unknown key\(s\) \['epochs'\]"),
            (
                {"type": "bpr_mf", "training": {"selection_metric": "ndcg@10"}},
                r"unknown key\(s\) \['selection_metric'\]",
            ),
            ({"type": "two_tower", "training": {"selection_metric": "recall"}}, r"selection_metric must name"),
            ({"type": "two_tower", "model": {"embedding_dim": 0}}, r"embedding_dim must be >= 1"),
            ({"type": "sasrec", "model": {"num_heads": 3}}, r"num_heads \(3\) must divide embedding_dim"),
        ],
    )
    def test_bad_configs_name_the_key_and_the_file(self, config, message, tmp_path):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        with pytest.raises(ValueError, match=message) as error:
            load_spec(path)
        assert str(path) in str(error.value)


class TestTraining:
    @pytest.mark.parametrize("name", RETRIEVER_CONFIGS)
    def test_each_family_trains_on_the_temporal_split_and_ranks_the_whole_catalogue(self, name, trained, examples):
        model = trained(name)
        assert model.trained_on == (DAYS[0], DAYS[1]) and model.evaluated_on == DAYS[2]
        # Positives of the train and validation days fit the model; the test day evaluates it.
        fitted_pairs = model.fitted_on[["user_id", "item_id"]].drop_duplicates()
        assert len(fitted_pairs.merge(_positive_pairs(examples, DAYS[:2]))) == len(fitted_pairs)
        assert len(model.fitted_on) == int(examples.loc[examples["event_date"] != DAYS[2], "is_positive"].sum())
        assert (model.test["timestamp"] >= pd.Timestamp(DAYS[2])).all()
        assert list(model.catalogue) == sorted(examples["item_id"].unique())
        assert {"hr@10", "hr@100", "recall@10", "ndcg@10", "mrr@10"} <= set(model.metrics)
        assert all(0.0 <= model.metrics[k] <= 1.0 for k in ("hr@10", "hr@100", "recall@10", "ndcg@10", "mrr@10"))
        assert model.metrics["users"] == N_USERS and model.metrics["cold_users"] == 0
        assert model.retriever.seconds > 0 and model.retriever.examples_per_second > 0

    @pytest.mark.parametrize("name", IN_EPOCHS)
    def test_the_validation_day_chooses_the_epoch_count(self, name, trained):
        model = trained(name)
        validation = model.history["val_recall@10"]
        assert len(model.history["loss"]) == len(validation) >= 1
        assert model.best_epoch == int(np.argmax(validation)) + 1
        assert model.retriever.epochs == model.best_epoch  # the final fit trains that many epochs
        patience = model.spec.training.early_stopping_patience
        assert len(validation) <= min(model.best_epoch + patience, model.spec.training.epochs)

    @pytest.mark.parametrize(
        "name", ("ease", "ease_recency", "bpr_mf", "two_tower", "two_tower_history", "sasrec", "joint")
    )
    def test_personalised_models_beat_random_on_the_held_out_day(self, name, trained, examples):
        assert trained(name).metrics["recall@10"] > 3 * random_recall_at_10(examples)

    def test_the_recency_profile_is_taken_at_the_end_of_the_window(self, trained, examples):
        model = trained("ease_recency")
        retriever = model.retriever
        newest = model.fitted_on["timestamp"].max()
        assert retriever.as_of == pytest.approx(newest.value / 1e9 + 1.0)
        # The query of a user is their profile at as_of: per meeting of an item,
        # baseline + exp(-age / decay), summed over the item's meetings.
        user = model.fitted_on["user_id"].iloc[-1]
        history = model.fitted_on[model.fitted_on["user_id"] == user]
        ages = retriever.as_of - history["timestamp"].astype("int64").to_numpy() / 1e9
        config = model.spec.model
        weights = config["baseline_weight"] + np.exp(-ages / config["decay_seconds"])
        expected = pd.Series(weights).groupby(history["item_id"].to_numpy()).sum()
        query = retriever.factors([user]).query_vectors[0]
        items = list(retriever.catalogue)
        np.testing.assert_allclose([query[items.index(i)] for i in expected.index], expected.to_numpy(), rtol=1e-5)
        assert np.count_nonzero(query) == len(expected)

    def test_epoch_models_write_a_checkpoint_per_epoch(self, examples, tmp_path):
        model = train_retriever(tiny_config("two_tower"), examples, SPEC, list(DAYS), checkpoint_dir=tmp_path)
        written = sorted(p.name for p in tmp_path.glob("epoch-*.index"))
        assert written == [f"epoch-{epoch:03d}.index" for epoch in range(1, model.best_epoch + 1)]
        assert json.loads((tmp_path / "retriever_config.json").read_text())["spec"]["type"] == "two_tower"

    def test_positives_follow_the_feature_spec(self, examples):
        interactions = positive_interactions(examples, SPEC)
        assert len(interactions) == int(examples["is_positive"].sum())
        assert list(interactions.columns) == ["user_id", "item_id", "rating", "timestamp", "user_segment", "category"]
        assert interactions["timestamp"].is_monotonic_increasing

    def test_a_ranker_config_or_a_source_without_ids_is_refused(self, examples):
        with pytest.raises(ValueError, match=r"'deepfm' is not a retriever type"):
            train_retriever("deepfm", examples, SPEC, list(DAYS))
        with pytest.raises(ValueError, match=r"'criteo' has no user and item ids"):
            train_retriever("ease", examples, load_feature_spec("criteo"), list(DAYS))


class TestExport:
    @pytest.mark.parametrize("name", RETRIEVER_CONFIGS)
    def test_the_exported_top_k_is_the_in_memory_top_k(self, name, trained, exported):
        model = trained(name)
        export, served = exported(name)
        users = sorted(model.test["user_id"].unique())
        assert export.users_checked == len(users) and export.topk_agreement == 1.0
        assert topk_agreement(served, model, users, 25) == 1.0
        exported_ids, exported_scores = served.retrieve(users, 10)
        in_memory_ids, in_memory_scores = model.recommend(users, 10)
        np.testing.assert_allclose(exported_scores, in_memory_scores, rtol=1e-4, atol=1e-6)
        # Lists differ at most where float32 rounding ties scores the model's float64 separates.
        assert (exported_ids == in_memory_ids).mean() > 0.9

    def test_k_is_chosen_per_request(self, exported):
        export, served = exported("two_tower_history")
        for k in (1, 7, N_ITEMS):
            ids, scores = served.retrieve(["u001", "u002"], k)
            assert ids.shape == scores.shape == (2, k)
            assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first; padding (-inf) last
        with pytest.raises(ValueError, match=r"k must be between 1 and 120"):
            served.retrieve(["u001"], N_ITEMS + 1)
        # The signature itself clips k to the catalogue.
        signature = tf.saved_model.load(export.path).signatures["retrieve"]
        raw = signature(user_id=tf.constant(["u001"]), k=tf.constant(10_000))
        assert raw["item_ids"].shape == (1, N_ITEMS)

    @pytest.mark.parametrize("name", ("ease", "sasrec"))
    def test_an_unknown_user_gets_the_popularity_ranking(self, name, exported, examples):
        _, served = exported(name)
        # Items by how many users liked them in the training days, ties in catalogue order.
        counts = _positive_pairs(examples, DAYS[:2])["item_id"].value_counts()
        expected = counts.sort_index().sort_values(ascending=False, kind="stable")
        ids, scores = served.retrieve(["nobody", "u999"], 15)
        assert list(ids[0]) == list(ids[1]) == list(expected.index[:15])
        np.testing.assert_allclose(scores[0], expected.to_numpy()[:15] / counts.sum(), rtol=1e-6)

    @pytest.mark.parametrize("name", ("popularity", "ease", "two_tower_history"))
    def test_training_items_are_never_returned(self, name, exported, examples):
        _, served = exported(name)
        seen = _positive_pairs(examples, DAYS[:2]).groupby("user_id")["item_id"].agg(set)
        users = list(seen.index[:20])
        ids, scores = served.retrieve(users, N_ITEMS)
        for user, row, row_scores in zip(users, ids, scores, strict=True):
            returned = set(row[row != PADDING_ID])
            assert not returned & seen[user]
            assert returned | seen[user] == set(examples["item_id"])
            assert (row == PADDING_ID).sum() == len(seen[user]) and np.isneginf(row_scores[row == PADDING_ID]).all()

    def test_metadata_describes_the_export(self, exported, trained):
        export, served = exported("two_tower_history")
        document = json.loads((Path(export.path) / METADATA_FILE).read_text(encoding="utf-8"))
        assert document["inputs"] == {"retrieve": {"user_id": "string", "k": "int"}}
        assert document["outputs"] == ["item_ids", "scores"]
        assert document["item_count"] == N_ITEMS and document["user_count"] == N_USERS
        assert document["metrics"] == trained("two_tower_history").metrics
        assert document["model"]["model"]["history_length"] == 5
        assert served.model_version == "two_tower_history-test"
