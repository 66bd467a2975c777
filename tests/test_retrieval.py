"""Two-tower retrieval: configurable tower features, log-Q correction, pooled history,
candidate deduplication, and the history helpers, on tiny synthetic worlds."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from models import evaluation
from models.retrieval.two_tower import (
    HISTORY_FEATURE,
    CandidateProbability,
    RetrievalConfig,
    Tower,
    TwoTowerModel,
    build_index,
    catalogue_scores,
    fit_two_tower,
    latest_items,
    latest_other_items,
    preceding_items,
)

TINY = RetrievalConfig(embedding_dim=8, batch_size=64, epochs=3, learning_rate=0.2, vocabulary_min_count=1)


def group_world(n_users: int = 200, n_items: int = 40, groups: int = 4, per_user: int = 8, seed: int = 0):
    """Users of group g interact with ``per_user`` distinct items of group g (``item % groups == g``)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate(
        [rng.choice(np.arange(u % groups, n_items, groups), per_user, replace=False) for u in range(n_users)]
    )
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "timestamp": rng.permutation(len(users)),
        }
    )


def held_out_recall(retriever, train: pd.DataFrame, test: pd.DataFrame, k: int = 5) -> float:
    """Micro recall@k of the test rows, training items masked, over the training catalogue."""
    users = np.unique(test["user_id"])
    items = retriever.item_ids
    scores = retriever.score_all(users, items)
    position = {item: column for column, item in enumerate(items)}
    seen = np.zeros(scores.shape, bool)
    for row, user in enumerate(users):
        seen[row, [position[i] for i in train.loc[train["user_id"] == user, "item_id"]]] = True
    test_items = [[position[i] for i in test.loc[test["user_id"] == user, "item_id"]] for user in users]
    return evaluation.ranking_metrics(scores, seen, test_items, ks=(k,))[f"hr@{k}"]


class TestTowerFeatures:
    def test_feature_lists_are_constructor_arguments(self):
        vocabularies = {
            "user_id": ("u1", "u2"),
            "age_group": ("young", "old"),
            "item_id": ("i1", "i2", "i3"),
            "genre": ("drama", "comedy"),
        }
        model = TwoTowerModel(
            vocabularies, TINY, query_features=("user_id", "age_group"), candidate_features=("item_id", "genre")
        )
        assert model.query_tower.feature_names == ("user_id", "age_group")
        assert model.candidate_tower.feature_names == ("item_id", "genre")
        query = model.query_tower({"user_id": tf.constant(["u1", "zz"]), "age_group": tf.constant(["old", "old"])})
        assert query.shape == (2, TINY.embedding_dim)

    def test_defaults_are_the_pipeline_towers(self):
        vocabularies = {name: ("a",) for name in ("user_id", "user_segment", "item_id", "category")}
        model = TwoTowerModel(vocabularies, TINY)
        assert model.query_tower.feature_names == ("user_id", "user_segment")
        assert model.candidate_tower.feature_names == ("item_id", "category")

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"candidate_features": ("genre",)}, r"candidate_id 'item_id' must be one of the candidate features"),
            ({"query_features": ("user_id", "city")}, r"no vocabulary for feature\(s\) \['city'\]"),
        ],
    )
    def test_bad_feature_lists_are_named(self, options, message):
        vocabularies = {"user_id": ("u",), "item_id": ("i",), "genre": ("g",)}
        options = {"query_features": ("user_id",), "candidate_features": ("item_id",), **options}
        with pytest.raises(ValueError, match=message):
            TwoTowerModel(vocabularies, TINY, **options)


class TestPooledHistory:
    def test_mean_over_the_non_padding_entries(self):
        tower = Tower({}, 4, {"history": ("a", "b", "c")}, name="history_tower")
        values = tf.constant([["a", "b", ""], ["c", "", ""], ["", "", ""], ["a", "zz", "a"]])
        pooled = tower._pooled("history", values).numpy()
        table = tower.embeddings["history"].embeddings.numpy()  # row 0: OOV, then a, b, c
        np.testing.assert_allclose(pooled[0], (table[1] + table[2]) / 2, rtol=1e-6)
        np.testing.assert_allclose(pooled[1], table[3], rtol=1e-6)
        np.testing.assert_array_equal(pooled[2], np.zeros(4))  # padding only
        np.testing.assert_allclose(pooled[3], (2 * table[1] + table[0]) / 3, rtol=1e-6)  # unknown -> OOV row

    def test_padding_cannot_be_a_vocabulary_entry(self):
        with pytest.raises(ValueError, match="padding value '' cannot be a vocabulary entry"):
            Tower({}, 4, {"history": ("a", "")})

    def test_a_new_users_history_tells_the_tower_their_taste(self):
        # A user the model has never seen (OOV id) queries with 10 items of group g. The
        # tower with history must retrieve group-g items; a tower without history gives
        # every such user the same list, so on average 1 / groups of it is in-group.
        world = group_world()
        with_history = RetrievalConfig(**{**TINY.__dict__, "history_length": 10, "epochs": 4})
        seeing = fit_two_tower(world, with_history)
        blind = fit_two_tower(world, RetrievalConfig(**{**TINY.__dict__, "epochs": 4}))
        rng = np.random.default_rng(3)
        histories = np.array([[f"i{i}" for i in rng.choice(np.arange(g, 40, 4), 10, replace=False)] for g in range(4)])

        def in_group_share(retriever, queries) -> float:
            scores = retriever.model.query_tower(queries).numpy() @ retriever.item_embeddings().T
            top = retriever.item_ids[np.argsort(-scores, axis=1)[:, :5]]
            return float(np.mean([[int(item[1:]) % 4 == g for item in top[g]] for g in range(4)]))

        new_users = tf.constant(["new_user"] * 4)
        assert in_group_share(seeing, {"user_id": new_users, HISTORY_FEATURE: tf.constant(histories)}) > 0.8
        assert in_group_share(blind, {"user_id": new_users}) == pytest.approx(0.25)
        assert seeing.queries(["u0", "nobody"])[HISTORY_FEATURE].shape == (2, 10)

    def test_known_users_get_held_out_items_of_their_group(self):
        world = group_world()
        test = world.groupby("user_id").tail(2)
        train = world.drop(test.index)
        retriever = fit_two_tower(train, RetrievalConfig(**{**TINY.__dict__, "history_length": 10, "epochs": 4}))
        # A user's group holds 10 items, 6 seen in training: the 4 unseen ones hold both
        # test items, so a top 5 led by them finds all; 5 random unseen items of 34 find 15%.
        assert held_out_recall(retriever, train, test) > 0.6


def test_a_two_tower_fit_traces_its_train_step_once():
    # build_for_fit creates the towers' and Adagrad's variables first: no second trace.
    retriever = fit_two_tower(group_world(), RetrievalConfig(**{**TINY.__dict__, "epochs": 1}))
    assert retriever.model.train_function.experimental_get_tracing_count() == 1


class TestSamplingBiasCorrection:
    def test_probabilities_are_shares_of_the_positives(self):
        probability = CandidateProbability({"a": 3, "b": 1})
        np.testing.assert_allclose(probability(tf.constant(["a", "b", "never"])).numpy(), [0.75, 0.25, 0.25])

    def test_needs_the_counts(self):
        config = RetrievalConfig(sampling_bias_correction=True)
        with pytest.raises(ValueError, match="sampling_bias_correction needs candidate_counts"):
            TwoTowerModel(
                {"user_id": ("u",), "item_id": ("i",)},
                config,
                query_features=("user_id",),
                candidate_features=("item_id",),
            )

    def test_correction_recovers_the_popularity_that_in_batch_negatives_cancel(self):
        # Users have no taste: items come from one Zipf popularity p. In-batch negatives are
        # drawn with that same p, so the uncorrected softmax optimum is
        # score(i) = log p(i) - log p(i) + c, flat in p; with log-Q it is log p(i) + c. So
        # the slope of the mean item score on log p(i) should be ~1 with, ~0 without.
        rng = np.random.default_rng(1)
        popularity = 1.0 / np.arange(1, 31)
        items = rng.choice(30, size=6000, p=popularity / popularity.sum())
        frame = pd.DataFrame(
            {
                "user_id": [f"u{u}" for u in rng.integers(0, 20, 6000)],
                "item_id": [f"i{i}" for i in items],
                "timestamp": 0,
            }
        )
        config = RetrievalConfig(embedding_dim=8, batch_size=256, epochs=3, learning_rate=0.2, vocabulary_min_count=1)

        def slope_on_log_popularity(sampling_bias_correction: bool) -> float:
            settings = RetrievalConfig(**{**config.__dict__, "sampling_bias_correction": sampling_bias_correction})
            retriever = fit_two_tower(frame, settings)
            scores = retriever.score_all([f"u{u}" for u in range(20)], [f"i{i}" for i in range(30)]).mean(axis=0)
            return float(np.polyfit(np.log(popularity), scores, 1)[0])

        assert 0.7 < slope_on_log_popularity(True) < 1.3
        assert abs(slope_on_log_popularity(False)) < 0.3


class TestCandidates:
    @pytest.fixture(scope="class")
    def model(self):
        vocabularies = {"user_id": ("u1",), "item_id": ("i1", "i2", "i3"), "genre": ("a", "b")}
        model = TwoTowerModel(vocabularies, TINY, query_features=("user_id",), candidate_features=("item_id", "genre"))
        model.candidate_tower({"item_id": tf.constant(["i1"]), "genre": tf.constant(["a"])})
        return model

    def test_repeated_candidates_are_indexed_once(self, model):
        candidates = {"item_id": np.array(["i1", "i2", "i1", "i3", "i2"]), "genre": np.array(["a", "b", "a", "a", "b"])}
        index = build_index(model, candidates, k=3)
        assert index.size == 3
        query = model.query_tower({"user_id": tf.constant(["u1"])})
        _, found = index(query, k=3)
        assert sorted(found.numpy()[0].astype(str)) == ["i1", "i2", "i3"]

    def test_a_repeated_id_with_other_features_is_rejected(self, model):
        candidates = {"item_id": np.array(["i1", "i1"]), "genre": np.array(["a", "b"])}
        with pytest.raises(ValueError, match=r"candidate item_ids repeat with different feature values, e.g. \['i1'\]"):
            build_index(model, candidates, k=1)

    def test_k_is_checked_against_the_distinct_candidates(self, model):
        candidates = {"item_id": np.array(["i1", "i1", "i2"]), "genre": np.array(["a", "a", "b"])}
        with pytest.raises(ValueError, match=r"between 1 and the number of candidates \(2\), got 3"):
            build_index(model, candidates, k=3)

    def test_approximate_index_over_a_tower(self, model):
        candidates = {"item_id": np.array(["i1", "i2", "i3"]), "genre": np.array(["a", "b", "a"])}
        exact = build_index(model, candidates, k=3)
        approximate = build_index(model, candidates, k=3, kind="approximate", num_partitions=2, nprobe=2)
        query = model.query_tower({"user_id": tf.constant(["u1"])})
        np.testing.assert_array_equal(approximate(query)[1].numpy(), exact(query)[1].numpy())


class TestHistories:
    @pytest.fixture
    def frame(self):
        # u1: a (t=1), b (t=2), c (t=3) given out of order; u2: x, y at the same time (frame order).
        return pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u1", "u2", "u1"],
                "item_id": ["c", "x", "a", "y", "b"],
                "timestamp": [3, 5, 1, 5, 2],
            }
        )

    def test_preceding_items_are_point_in_time_newest_first(self, frame):
        np.testing.assert_array_equal(
            preceding_items(frame, 2),
            [["b", "a"], ["", ""], ["", ""], ["x", ""], ["a", ""]],
        )

    def test_latest_items_per_user(self, frame):
        np.testing.assert_array_equal(
            latest_items(frame, ["u1", "u2", "nobody"], 2), [["c", "b"], ["y", "x"], ["", ""]]
        )

    def test_latest_other_items_leave_out_the_rows_own_item(self, frame):
        np.testing.assert_array_equal(
            latest_other_items(frame, 2),
            [["b", "a"], ["y", ""], ["c", "b"], ["x", ""], ["c", "a"]],
        )


def test_catalogue_scores_rank_unknown_items_last():
    scores = np.array([[0.5, -2.0], [1.0, 3.0]])
    aligned = catalogue_scores(scores, np.array(["a", "b"]), [1, "b", "a"])  # 1 -> "1", unknown
    np.testing.assert_array_equal(aligned, [[-3.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
