"""Spec-driven features and transforms, popularity, splitting, and real TensorFlow training."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import toy_examples

from models import evaluation
from models.inputs.encoder import FeatureEncoder
from models.inputs.features import FittedFeatures, feature_arrays, history_array, label_array, string_vocabulary
from models.inputs.splits import split_by_day, split_training_window
from models.retrieval.popularity import popular_items
from models.retrieval.two_tower import RetrievalConfig
from models.training.registry import evaluate_model, predict_values, train_model
from models.training.two_tower import evaluate_retrieval, train_retrieval
from reclake.feature_spec import feature_spec_from_dict

REPO_ROOT = Path(__file__).resolve().parents[1]
DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
SPEC = toy_examples.SPEC
# Small batches so a few thousand rows still give the optimiser enough steps.
TEST_RANKER = {
    "type": "dcn_v2",
    "model": {"embedding_dim": 8, "cross_layers": 2, "deep_units": [32]},
    "training": {"batch_size": 128, "learning_rate": 0.005, "epochs": 4, "early_stopping_patience": None},
}
TEST_RETRIEVAL = RetrievalConfig(batch_size=128, epochs=5)


@pytest.fixture(scope="module")
def examples() -> pd.DataFrame:
    return toy_examples.make_training_examples(n_users=60, n_items=40, n_rows=9000, days=DAYS)


@pytest.fixture(scope="module")
def split(examples):
    return split_by_day(examples, [DAYS[-1]])


@pytest.fixture(scope="module")
def ranking(split):
    train, _ = split
    return train_model(TEST_RANKER, train, feature_spec=SPEC)


@pytest.fixture(scope="module")
def retrieval(split):
    train, _ = split
    return train_retrieval(train, SPEC, TEST_RETRIEVAL)


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


class TestLegacyKerasGuard:
    def test_this_process_uses_keras_2(self):
        import tensorflow as tf

        assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
        assert tf.keras.Model.__module__.startswith("tf_keras.")

    def test_keras_3_setting_fails_fast(self):
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "0", "PYTHONPATH": str(REPO_ROOT)}
        result = _run_python("import models", env)
        assert result.returncode != 0
        assert "TF_USE_LEGACY_KERAS='0' selects Keras 3" in result.stderr

    def test_tensorflow_imported_with_keras_3_fails_fast(self):
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        env["PYTHONPATH"] = str(REPO_ROOT)
        result = _run_python("import tensorflow as tf; tf.keras.Model; import models", env)
        assert result.returncode != 0
        assert "TensorFlow was imported with Keras 3 active" in result.stderr


class TestFeatures:
    def test_empty_vocabulary_is_a_clear_error(self):
        with pytest.raises(ValueError, match="vocabulary of 'user_id' is empty: none of its 2 distinct"):
            string_vocabulary("user_id", np.array(["a", "b"], dtype=object), min_count=2)

    def test_vocabularies_follow_the_spec_min_count_and_sort(self):
        frame = toy_examples.make_training_examples(n_rows=50, seed=3)
        frame["user_id"] = ["once"] + ["b", "a", "c", "a", "b"] * 9 + ["c", "c", "a", "b"]
        fitted = FittedFeatures.fit(SPEC, frame)  # the synthetic spec: ids need 2 rows
        assert fitted.vocabularies["user_id"] == ("a", "b", "c")
        assert fitted.vocabularies["slot_position"] == tuple(sorted(frame["slot_position"].unique()))

    def test_moments_are_taken_after_log1p_and_quantiles_fitted(self):
        frame = toy_examples.make_training_examples(n_rows=2, seed=3).assign(user_id="u", item_id="i")
        frame["price"] = [0.0, np.e - 1.0]  # log: true -> [0, 1]: mean 0.5, variance 0.25
        frame["user_positive_rate_7d"] = [0.1, 0.3]  # no log: mean 0.2, variance 0.01
        moments = FittedFeatures.fit(SPEC, frame).moments
        assert moments["price"] == pytest.approx((0.5, 0.25))
        assert moments["user_positive_rate_7d"] == pytest.approx((0.2, 0.01))
        movielens_like = feature_spec_from_dict(
            {"source": "demo", "label": {"column": "rating", "kind": "regression", "clip_percentiles": [10, 90]},
             "ids": {"user_id": False, "item_id": False},
             "columns": {"age": {"role": "context", "dtype": "int", "transform": "bucketize", "quantiles": 4}}}
        )  # fmt: skip
        ages = pd.DataFrame({"age": [10, 20, 30, 40, 50], "rating": [1.0, 2.0, 3.0, 4.0, 5.0]})
        fitted = FittedFeatures.fit(movielens_like, ages)
        assert fitted.boundaries["age"] == (20.0, 30.0, 40.0)  # quartile cuts of 10..50
        assert fitted.label_clip == pytest.approx((1.4, 4.6))
        np.testing.assert_allclose(fitted.training_target(np.array([1.0, 5.0])), [1.4, 4.6], rtol=1e-6)

    def test_fitted_features_round_trip_through_dict(self, examples):
        fitted = FittedFeatures.fit(SPEC, examples)
        assert FittedFeatures.from_dict(fitted.to_dict()) == fitted

    def test_feature_arrays_follow_the_spec_dtypes_and_fill_nulls(self, examples):
        rows = examples.head(3).copy()
        rows.loc[rows.index[0], "category"] = None
        arrays = feature_arrays(rows, SPEC)
        assert set(arrays) == set(SPEC.model_feature_names)
        assert arrays["user_id"].dtype == object and isinstance(arrays["user_id"][0], str)
        assert arrays["category"][0] == ""  # null -> out of vocabulary
        assert arrays["slot_position"].dtype == np.int64 and arrays["price"].dtype == np.float32

    def test_missing_column_is_named(self, examples):
        with pytest.raises(ValueError, match=r"missing column\(s\) \['device'\]"):
            feature_arrays(examples.drop(columns=["device"]), SPEC)

    def test_binary_label_must_be_binary(self, examples):
        with pytest.raises(ValueError, match="only 0 and 1"):
            label_array(examples.head(3).assign(clicked=[0, 1, 2]), SPEC)

    def test_history_is_padded_newest_first(self):
        frame = pd.DataFrame({"user_history": [["b", "a"], [], None]})
        np.testing.assert_array_equal(history_array(frame, 3), [["b", "a", ""], ["", "", ""], ["", "", ""]])


class TestEncoder:
    def test_each_transform_runs_in_the_graph(self, examples):
        fitted = FittedFeatures.fit(SPEC, examples)
        encoder = FeatureEncoder(fitted)
        rows = examples.head(4)
        inputs = {name: tf.constant(values) for name, values in feature_arrays(rows, SPEC).items()}
        numeric = encoder.numeric_features(inputs).numpy()
        # Cyclical hour: the last two numeric columns of hour_of_day's pair are sin/cos of 2 pi h / 24.
        hour_index = len(encoder.normalized) + 2 * [c.name for c in encoder.cyclical].index("hour_of_day")
        hours = rows["hour_of_day"].to_numpy()
        np.testing.assert_allclose(numeric[:, hour_index], np.sin(2 * np.pi * hours / 24), atol=1e-5)
        np.testing.assert_allclose(numeric[:, hour_index + 1], np.cos(2 * np.pi * hours / 24), atol=1e-5)
        # Normalized price: (log1p(price) - mean) / std with the training moments.
        mean, variance = fitted.moments["price"]
        price_index = [c.name for c in encoder.normalized].index("price")
        expected = (np.log1p(rows["price"].to_numpy()) - mean) / np.sqrt(variance)
        np.testing.assert_allclose(numeric[:, price_index], expected, rtol=1e-4, atol=1e-4)
        # One embedding per embedded column and per cross, at the spec's widths.
        assert encoder.field_names[-1] == "user_segment_x_category"
        width = sum(e.output_dim for e in encoder.embeddings.values()) + encoder.numeric_width
        assert encoder(inputs).shape == (4, width)

    def test_a_period_the_window_does_not_cover_is_fed_as_zeros(self, examples):
        week = examples.assign(day_of_week=np.arange(len(examples)) % 7)
        short = week[week["day_of_week"] < 5]  # five weekdays: Saturday and Sunday never seen
        assert FittedFeatures.fit(SPEC, week).incomplete_cycles == ()
        fitted = FittedFeatures.fit(SPEC, short)
        assert fitted.incomplete_cycles == ("day_of_week",)
        assert FittedFeatures.from_dict(fitted.to_dict()).incomplete_cycles == ("day_of_week",)
        encoder = FeatureEncoder(fitted)
        rows = week.head(7)
        numeric = encoder.numeric_features({k: tf.constant(v) for k, v in feature_arrays(rows, SPEC).items()}).numpy()
        day = len(encoder.normalized) + 2 * [c.name for c in encoder.cyclical].index("day_of_week")
        hour = len(encoder.normalized) + 2 * [c.name for c in encoder.cyclical].index("hour_of_day")
        assert not numeric[:, day : day + 2].any()
        np.testing.assert_allclose(numeric[:, hour], np.sin(2 * np.pi * rows["hour_of_day"].to_numpy() / 24), atol=1e-5)

    def test_unseen_values_share_the_oov_row(self, examples):
        fitted = FittedFeatures.fit(SPEC, examples)
        encoder = FeatureEncoder(fitted, embedding_dim=4)
        rows = examples.head(2).assign(user_id=["new_1", "new_2"])
        fields = encoder.field_embeddings({k: tf.constant(v) for k, v in feature_arrays(rows, SPEC).items()})
        user = encoder.field_names.index("user_id")
        np.testing.assert_array_equal(fields[0, user].numpy(), fields[1, user].numpy())


def test_popular_items_rank_by_positive_share():
    frame = pd.DataFrame(
        {"item_id": ["a", "b", "b", "c", "c", "c", "d", "a"], "is_positive": [1, 1, 1, 1, 1, 0, 0, 0]}
    )
    # positives: a=1, b=2, c=2, d=0 of 5; b and c tie -> by id; d has none.
    assert popular_items(frame) == [("b", 0.4), ("c", 0.4), ("a", 0.2)]
    assert popular_items(frame, limit=1) == [("b", 0.4)]
    with pytest.raises(ValueError, match="no positive interactions"):
        popular_items(frame.assign(is_positive=0))


def test_split_by_day(examples):
    train, test = split_by_day(examples, [DAYS[-1]])
    assert len(train) + len(test) == len(examples)
    assert {str(d) for d in test["event_date"]} == {DAYS[-1]}
    with pytest.raises(ValueError, match="gives .* train and 0 test rows"):
        split_by_day(examples, ["2030-01-01"])


def test_training_window_splits_by_days_or_inside_a_single_day(examples):
    days = [pd.Timestamp(d).date() for d in DAYS]
    train, validation, test = split_training_window(examples, days)
    assert [sorted({str(d) for d in part["event_date"]}) for part in (train, validation, test)] == [
        [DAYS[0]], [DAYS[1]], [DAYS[2]]
    ]
    one_day = examples[examples["event_date"].astype(str) == DAYS[0]]
    train, validation, test = split_training_window(one_day, days[:1])
    assert len(train) + len(validation) + len(test) == len(one_day)
    assert train["event_ts"].max() <= validation["event_ts"].min() <= validation["event_ts"].max() <= test["event_ts"].min()
    assert len(test) == len(one_day) - int(len(one_day) * 0.8)


def test_retrieval_config_rejects_bad_values():
    with pytest.raises(ValueError, match="RetrievalConfig.batch_size"):
        RetrievalConfig(batch_size=0)


class TestRanking:
    def test_learns_the_click_signal(self, ranking, split):
        train, test = split
        metrics = evaluate_model(ranking.model, test)
        base_rate = evaluation.logloss(test["clicked"], np.full(len(test), train["clicked"].mean()))
        assert metrics["examples"] == len(test)
        assert metrics["auc"] > 0.68  # the generator's own pCTR reaches ~0.81 here
        assert metrics["logloss"] < base_rate
        assert metrics["bayes_logloss"] < metrics["logloss"]
        assert 0.5 < metrics["calibration"] < 2.0
        assert ranking.history["loss"][-1] < ranking.history["loss"][0]

    def test_bayes_logloss_only_with_true_pctr(self, ranking, split):
        _, test = split
        assert "bayes_logloss" not in evaluate_model(ranking.model, test.drop(columns=["true_pctr"]))
        partial_truth = test.assign(true_pctr=test["true_pctr"].where(test.index != test.index[0]))
        with pytest.raises(ValueError, match="'true_pctr' has 1 missing value"):
            evaluate_model(ranking.model, partial_truth)

    def test_unseen_values_fall_into_the_oov_bucket(self, ranking, split):
        _, test = split
        unseen = test.head(4).assign(user_id="new_user", item_id="new_item", category="cat_new", slot_position=99)
        pctr = predict_values(ranking.model, feature_arrays(unseen, SPEC))
        assert pctr.shape == (4,)
        assert np.all((pctr > 0) & (pctr < 1))

    def test_a_regression_label_trains_a_rating_model(self):
        """A rating spec: the ranker regresses the (clipped) label and beats the mean."""
        rng = np.random.default_rng(5)
        spec = feature_spec_from_dict(
            {"source": "demo", "label": {"column": "rating", "kind": "regression", "positive_threshold": 4},
             "ids": {"user_id": True, "item_id": True}, "id_min_count": 1,
             "aggregates": {"windows_days": [7]},
             "columns": {"genre": {"role": "item", "dtype": "string", "transform": "embedding", "dim": 4}}}
        )  # fmt: skip
        users, items = rng.integers(0, 40, 4000), rng.integers(0, 30, 4000)
        user_bias, item_bias = rng.normal(0, 0.8, 40), rng.normal(0, 0.8, 30)
        rating = np.clip(np.round(3.5 + user_bias[users] + item_bias[items] + rng.normal(0, 0.5, 4000)), 1, 5)
        frame = pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items],
                              "genre": [f"g{i % 5}" for i in items], "rating": rating})  # fmt: skip
        for entity in ("user", "item"):
            frame[f"{entity}_events_7d"] = 0.0
            frame[f"{entity}_positive_rate_7d"] = 0.5
        train, test = frame.iloc[:3200], frame.iloc[3200:]
        config = {"type": "dcn_v2", "model": {"embedding_dim": 8, "deep_units": [16]},
                  "training": {"batch_size": 128, "epochs": 8, "early_stopping_patience": None}}  # fmt: skip
        result = train_model(config, train, feature_spec=spec)
        metrics = evaluate_model(result.model, test)
        mean_rmse = evaluation.rmse(test["rating"], np.full(len(test), train["rating"].mean()))
        assert set(metrics) == {"rmse", "mae", "examples"}
        assert metrics["rmse"] < 0.9 * mean_rmse

    def test_same_seed_same_model(self, split):
        train, test = split
        train = train.head(2000)
        config = {**TEST_RANKER, "training": {**TEST_RANKER["training"], "epochs": 1, "seed": 7}}
        features = feature_arrays(test.head(50), SPEC)
        first = predict_values(train_model(config, train, feature_spec=SPEC).model, features)
        second = predict_values(train_model(config, train, feature_spec=SPEC).model, features)
        other = {**config, "training": {**config["training"], "seed": 8}}
        other_seed = predict_values(train_model(other, train, feature_spec=SPEC).model, features)
        np.testing.assert_array_equal(first, second)
        assert not np.allclose(first, other_seed)

    def test_empty_frame_raises(self, examples):
        with pytest.raises(ValueError, match="empty"):
            train_model(TEST_RANKER, examples.head(0), feature_spec=SPEC)


class TestRetrieval:
    def test_recall_beats_random(self, retrieval, split, examples):
        _, test = split
        _, items = toy_examples.feature_tables(examples)
        metrics = evaluate_retrieval(retrieval.model, test, items, SPEC, k=10)
        # Ten random items out of 40 find a quarter of a user's clicks on average.
        assert metrics["recall_at_k"] > 0.35
        assert metrics["k"] == 10
        assert metrics["users"] == test.loc[test["clicked"] == 1, "user_id"].nunique()
        assert retrieval.examples == int(split[0]["clicked"].sum())

    def test_the_served_model_is_scored_like_the_zoo_retrievers(self, retrieval, split, examples):
        """Given the seen pairs, the full-catalogue metrics of ``evaluation.ranking_metrics``
        come with recall@k: seen items are masked, and masking a user's held-out items
        leaves no hit."""
        train, test = split
        _, items = toy_examples.feature_tables(examples)
        items = items.sample(frac=1.0, random_state=3)  # a catalogue in no particular order
        seen = train.loc[train["is_positive"] == 1, ["user_id", "item_id"]].drop_duplicates()
        newcomer = test.loc[test["is_positive"] == 1, "user_id"].iloc[0]  # a held-out user never seen
        seen = seen[seen["user_id"] != newcomer]
        metrics = evaluate_retrieval(retrieval.model, test, items, SPEC, k=10, seen=seen)
        assert {"hr@10", "ndcg@10", "recall@10", "mrr@10", "ranked_users", "cold_users"} <= set(metrics)
        assert metrics["ranked_users"] + metrics["cold_users"] == metrics["users"]
        assert 0 < metrics["hr@10"] <= 1 and 0 < metrics["ndcg@10"] <= 1
        held_out = test.loc[test["is_positive"] == 1, ["user_id", "item_id"]]
        everything_seen = evaluate_retrieval(
            retrieval.model, test, items, SPEC, k=10, seen=pd.concat([seen, held_out]).drop_duplicates()
        )
        assert everything_seen["hr@10"] == 0 and everything_seen["recall@10"] == 0

    def test_no_positives_raises(self, examples):
        with pytest.raises(ValueError, match="no positive interaction"):
            train_retrieval(examples.assign(is_positive=0), SPEC)

    def test_a_source_without_ids_has_no_retrieval(self, examples):
        from reclake.feature_spec import load_feature_spec

        with pytest.raises(ValueError, match="'criteo' has no user and item ids"):
            train_retrieval(examples, load_feature_spec("criteo"))


def test_every_protocol_splits_the_window_reproducibly(examples):
    from models.inputs.splits import make_splits

    days = [pd.Timestamp(d).date() for d in DAYS]
    splits = make_splits(examples, SPEC, days)
    assert set(splits) == {"temporal", "random_80_20", "leave_one_out", "per_user_8_1_1"}
    for protocol, assignment in splits.items():
        assert assignment["event_id"].is_unique, protocol
        assert set(assignment["event_id"]) == set(examples["event_id"]), protocol
    assert splits["random_80_20"]["part"].value_counts().to_dict() == {"train": 7200, "test": 1800}
    newest = examples.sort_values("event_ts").groupby("user_id")["event_id"].last()
    loo = splits["leave_one_out"].set_index("event_id")["part"]
    assert (loo.loc[newest.to_numpy()] == "test").all()
    pd.testing.assert_frame_equal(make_splits(examples, SPEC, days)["per_user_8_1_1"], splits["per_user_8_1_1"])


def test_retrieval_with_the_log_q_correction_trains_and_retrieves(split, examples):
    train, test = split
    config = RetrievalConfig(batch_size=128, epochs=3, sampling_bias_correction=True)
    result = train_retrieval(train, SPEC, config)
    assert result.history["epoch_loss"][-1] < result.history["epoch_loss"][0]
    _, items = toy_examples.feature_tables(examples)
    assert evaluate_retrieval(result.model, test, items, SPEC, k=10)["recall_at_k"] > 0.3
