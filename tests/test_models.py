"""Feature definitions, popularity, splitting, and real TensorFlow training of both models."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import toy_examples

from models import evaluation
from models.features import (
    ITEM_LOOKUP_FEATURES,
    RANKING_FEATURES,
    REQUEST_FEATURES,
    USER_LOOKUP_FEATURES,
    FeatureVocabularies,
    feature_arrays,
    label_array,
    string_vocabulary,
)
from models.popularity import popular_items
from models.ranking import DCNRanker, RankingConfig, predict_pctr
from models.retrieval import RetrievalConfig
from models.training import (
    evaluate_ranking,
    evaluate_retrieval,
    split_by_day,
    train_ranking,
    train_retrieval,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
# Small batches so a few thousand rows still give the optimiser enough steps.
TEST_RANKING = RankingConfig(batch_size=128, learning_rate=0.005, epochs=4)
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
    return train_ranking(train, TEST_RANKING)


@pytest.fixture(scope="module")
def retrieval(split):
    train, _ = split
    return train_retrieval(train, TEST_RETRIEVAL)


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
    def test_every_ranking_feature_has_one_serving_source(self):
        sources = REQUEST_FEATURES + USER_LOOKUP_FEATURES + ITEM_LOOKUP_FEATURES
        assert sorted(sources) == sorted(RANKING_FEATURES)

    def test_empty_vocabulary_is_a_clear_error(self):
        with pytest.raises(ValueError, match="vocabulary of 'user_id' is empty: none of its 2 distinct"):
            string_vocabulary("user_id", np.array(["a", "b"], dtype=object), min_count=2)

    def test_vocabularies_respect_min_count_and_sort(self):
        frame = toy_examples.make_training_examples(n_rows=50, seed=3)
        frame["user_id"] = ["once"] + ["b", "a", "c", "a", "b"] * 9 + ["c", "c", "a", "b"]
        vocabularies = FeatureVocabularies.from_frame(frame, min_count=2)
        assert vocabularies.strings["user_id"] == ("a", "b", "c")
        assert "once" not in vocabularies.strings["user_id"]
        assert vocabularies.integers["slot_position"] == tuple(sorted(frame["slot_position"].unique()))

    def test_moments_are_taken_after_log1p(self):
        frame = toy_examples.make_training_examples(n_rows=2, seed=3)
        frame["price"] = [0.0, np.e - 1.0]  # log1p -> [0, 1]: mean 0.5, variance 0.25
        frame["user_ctr_7d"] = [0.1, 0.3]  # no transform: mean 0.2, variance 0.01
        moments = FeatureVocabularies.from_frame(frame).moments
        assert moments["price"] == pytest.approx((0.5, 0.25))
        assert moments["user_ctr_7d"] == pytest.approx((0.2, 0.01))

    def test_vocabularies_round_trip_through_dict(self, examples):
        vocabularies = FeatureVocabularies.from_frame(examples)
        assert FeatureVocabularies.from_dict(vocabularies.to_dict()) == vocabularies

    def test_feature_arrays_dtypes(self, examples):
        arrays = feature_arrays(examples.head(3))
        assert set(arrays) == set(RANKING_FEATURES)
        assert arrays["user_id"].dtype == object and isinstance(arrays["user_id"][0], str)
        assert arrays["slot_position"].dtype == np.int64
        assert arrays["price"].dtype == np.float32

    def test_missing_column_is_named(self, examples):
        with pytest.raises(ValueError, match=r"missing column\(s\) \['device'\]"):
            feature_arrays(examples.drop(columns=["device"]))

    def test_null_feature_is_named(self, examples):
        broken = examples.head(5).copy()
        broken.loc[broken.index[2], "category"] = None
        with pytest.raises(ValueError, match="'category' holds 1 null"):
            feature_arrays(broken)

    def test_label_must_be_binary(self, examples):
        with pytest.raises(ValueError, match="only 0 and 1"):
            label_array(examples.head(3).assign(clicked=[0, 1, 2]))


def test_popular_items_rank_by_click_share():
    frame = pd.DataFrame(
        {"item_id": ["a", "b", "b", "c", "c", "c", "d", "a"], "clicked": [1, 1, 1, 1, 1, 0, 0, 0]}
    )
    # clicks: a=1, b=2, c=2, d=0 of 5; b and c tie -> by id; d has no click.
    assert popular_items(frame) == [("b", 0.4), ("c", 0.4), ("a", 0.2)]
    assert popular_items(frame, limit=1) == [("b", 0.4)]
    with pytest.raises(ValueError, match="no clicked impressions"):
        popular_items(frame.assign(clicked=0))


def test_split_by_day(examples):
    train, test = split_by_day(examples, [DAYS[-1]])
    assert len(train) + len(test) == len(examples)
    assert {str(d) for d in test["event_date"]} == {DAYS[-1]}
    with pytest.raises(ValueError, match="gives .* train and 0 test rows"):
        split_by_day(examples, ["2030-01-01"])


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RankingConfig(epochs=0), "RankingConfig.epochs"),
        (lambda: RankingConfig(learning_rate=0), "RankingConfig.learning_rate"),
        (lambda: RankingConfig(deep_units=(32, 0)), "RankingConfig.deep_units"),
        (lambda: RetrievalConfig(batch_size=0), "RetrievalConfig.batch_size"),
    ],
)
def test_configs_reject_bad_values(make, field):
    with pytest.raises(ValueError, match=field):
        make()


class TestRanking:
    def test_learns_the_click_signal(self, ranking, split):
        train, test = split
        metrics = evaluate_ranking(ranking.model, test)
        base_rate = evaluation.logloss(test["clicked"], np.full(len(test), train["clicked"].mean()))
        assert metrics["examples"] == len(test)
        assert metrics["auc"] > 0.68  # the generator's own pCTR reaches ~0.81 here
        assert metrics["logloss"] < base_rate
        assert metrics["bayes_logloss"] < metrics["logloss"]
        assert ranking.history["loss"][-1] < ranking.history["loss"][0]

    def test_config_round_trip_rebuilds_the_same_architecture(self, ranking):
        clone = DCNRanker.from_config(ranking.model.get_config())
        assert clone.vocabularies == ranking.model.vocabularies
        assert clone.config == ranking.model.config == TEST_RANKING

    def test_bayes_logloss_only_with_true_pctr(self, ranking, split):
        _, test = split
        assert "bayes_logloss" not in evaluate_ranking(ranking.model, test.drop(columns=["true_pctr"]))
        partial_truth = test.assign(true_pctr=test["true_pctr"].where(test.index != test.index[0]))
        with pytest.raises(ValueError, match="'true_pctr' has 1 missing value"):
            evaluate_ranking(ranking.model, partial_truth)

    def test_unseen_values_fall_into_the_oov_bucket(self, ranking, split):
        _, test = split
        unseen = test.head(4).assign(user_id="new_user", item_id="new_item", category="cat_new", slot_position=99)
        pctr = predict_pctr(ranking.model, feature_arrays(unseen))
        assert pctr.shape == (4,)
        assert np.all((pctr > 0) & (pctr < 1))

    def test_same_seed_same_model(self, split):
        train, test = split
        train = train.head(2000)
        config = RankingConfig(batch_size=256, epochs=1, seed=7)
        features = feature_arrays(test.head(50))
        first = predict_pctr(train_ranking(train, config).model, features)
        second = predict_pctr(train_ranking(train, config).model, features)
        other_seed = predict_pctr(train_ranking(train, RankingConfig(batch_size=256, epochs=1, seed=8)).model, features)
        np.testing.assert_array_equal(first, second)
        assert not np.allclose(first, other_seed)

    def test_empty_frame_raises(self, examples):
        with pytest.raises(ValueError, match="empty frame"):
            train_ranking(examples.head(0))


class TestRetrieval:
    def test_recall_beats_random(self, retrieval, split, examples):
        _, test = split
        _, items = toy_examples.feature_tables(examples)
        metrics = evaluate_retrieval(retrieval.model, test, items, k=10)
        # Ten random items out of 40 find a quarter of a user's clicks on average.
        assert metrics["recall_at_k"] > 0.35
        assert metrics["k"] == 10
        assert metrics["users"] == test.loc[test["clicked"] == 1, "user_id"].nunique()
        assert retrieval.examples == int(split[0]["clicked"].sum())

    def test_k_larger_than_catalogue_raises(self, retrieval, split, examples):
        _, test = split
        _, items = toy_examples.feature_tables(examples)
        with pytest.raises(ValueError, match="between 1 and the number of candidates \\(40\\)"):
            evaluate_retrieval(retrieval.model, test, items, k=41)

    def test_no_clicks_raises(self, examples):
        with pytest.raises(ValueError, match="no clicked impression"):
            train_retrieval(examples.assign(clicked=0))
