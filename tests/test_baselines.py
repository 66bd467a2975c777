"""Recommender baselines on tiny hand-made data."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from models.evaluation import rmse
from models.retrieval.baselines import (
    BPRMF,
    EASE,
    BayesianMF,
    BayesianMFConfig,
    BiasedMF,
    BiasedMFConfig,
    BPRConfig,
    EASEConfig,
    InteractionIndex,
    Popularity,
    PopularityConfig,
    RandomConfig,
    RandomScores,
    ScoreBlend,
)

# Users a, b, c over items x, y, z, w: a={x, y}, b={x, z}, c={x}.
FRAME = pd.DataFrame(
    {
        "user_id": ["a", "a", "b", "b", "c"],
        "item_id": ["x", "y", "x", "z", "x"],
        "rating": [5.0, 3.0, 4.0, 1.0, 2.0],
    }
)
INDEX = InteractionIndex.from_frames(FRAME, pd.DataFrame({"user_id": ["c"], "item_id": ["w"]}))


class TestInteractionIndex:
    def test_ids_sorted_and_catalogue_from_every_frame(self):
        assert INDEX.user_ids.tolist() == ["a", "b", "c"]
        assert INDEX.item_ids.tolist() == ["w", "x", "y", "z"]  # w only appears in the second frame
        assert INDEX.item_indices(["z", "w"]).tolist() == [3, 0]

    def test_binary_and_rating_matrices(self):
        binary = INDEX.matrix(pd.concat([FRAME, FRAME.iloc[:1]]))  # a repeated pair collapses to 1
        assert binary.toarray().tolist() == [[0, 1, 1, 0], [0, 1, 0, 1], [0, 1, 0, 0]]
        ratings = INDEX.matrix(FRAME, "rating")
        assert ratings.toarray().tolist() == [[0, 5, 3, 0], [0, 4, 0, 1], [0, 2, 0, 0]]

    def test_items_per_user(self):
        assert [items.tolist() for items in INDEX.items_per_user(FRAME.iloc[[1, 3]])] == [[2], [3], []]

    def test_unknown_id_and_repeated_rating_raise(self):
        with pytest.raises(ValueError, match="1 item id"):
            INDEX.item_indices(["x", "nope"])
        with pytest.raises(ValueError, match="repeats a"):
            INDEX.matrix(pd.concat([FRAME, FRAME.iloc[:1]]), "rating")


class TestPopularity:
    def test_orders_items_by_interactions(self):
        model = Popularity().fit(INDEX.matrix(FRAME))
        # Counts per column w, x, y, z: 0, 3, 1, 1, the same for every user.
        assert model.score_users([0, 2]).tolist() == [[0, 3, 1, 1], [0, 3, 1, 1]]

    def test_exclude_seen_puts_training_items_last(self):
        model = Popularity(PopularityConfig(exclude_seen=True)).fit(INDEX.matrix(FRAME))
        assert model.score_users([0]).tolist() == [[0, -1, -1, 1]]

    def test_unfitted_and_bad_users_raise(self):
        with pytest.raises(ValueError, match="not fitted"):
            Popularity().score_users([0])
        with pytest.raises(ValueError, match=r"\[0, 3\)"):
            Popularity().fit(INDEX.matrix(FRAME)).score_users([3])


def test_random_scores_are_seeded_uniform():
    train = INDEX.matrix(FRAME)
    first = RandomScores(RandomConfig(seed=1)).fit(train).score_users([0, 1, 2])
    again = RandomScores(RandomConfig(seed=1)).fit(train).score_users([0, 1, 2])
    other = RandomScores(RandomConfig(seed=2)).fit(train).score_users([0, 1, 2])
    assert first.shape == (3, 4) and ((first >= 0) & (first < 1)).all()
    assert np.array_equal(first, again) and not np.array_equal(first, other)


class TestEASE:
    # 5 users x 4 items.
    X = np.array(
        [
            [1, 1, 0, 0],
            [1, 1, 1, 0],
            [0, 1, 1, 1],
            [0, 0, 1, 1],
            [1, 0, 0, 1],
        ],
        dtype=float,
    )

    def test_matches_per_item_ridge_regression(self):
        # diag(B) = 0 means column j is predicted from the other columns only, so each
        # column of B is an ordinary ridge regression of X[:, j] on X without column j:
        # b = (X_-j^T X_-j + lambda I)^-1 X_-j^T X[:, j].
        l2 = 0.7
        expected = np.zeros((4, 4))
        for j in range(4):
            others = [c for c in range(4) if c != j]
            design = self.X[:, others]
            expected[others, j] = np.linalg.solve(design.T @ design + l2 * np.eye(3), design.T @ self.X[:, j])
        model = EASE(EASEConfig(l2=l2)).fit(sparse.csr_matrix(self.X))
        np.testing.assert_allclose(model.weights, expected, atol=1e-10)
        np.testing.assert_allclose(model.score_users([1, 3]), self.X[[1, 3]] @ expected, atol=1e-10)

    def test_ratings_are_treated_as_interactions(self):
        binary = EASE().fit(sparse.csr_matrix(self.X))
        rated = EASE().fit(sparse.csr_matrix(self.X * 4))
        np.testing.assert_allclose(rated.weights, binary.weights)

    def test_bad_l2_and_dense_input_raise(self):
        with pytest.raises(ValueError, match="l2 must be > 0"):
            EASEConfig(l2=0)
        with pytest.raises(ValueError, match="scipy.sparse"):
            EASE().fit(self.X)


def two_groups(n_users: int = 20, n_items: int = 10) -> tuple[sparse.csr_matrix, list[int]]:
    """Users in the first half like the first half of the items, the others the rest.

    Each user misses one in-group item, returned as their held-out item.
    """
    half_users, half_items = n_users // 2, n_items // 2
    dense = np.zeros((n_users, n_items))
    held_out = []
    for user in range(n_users):
        group = range(0, half_items) if user < half_users else range(half_items, n_items)
        dense[user, list(group)] = 1
        missing = group[user % half_items]
        dense[user, missing] = 0
        held_out.append(missing)
    return sparse.csr_matrix(dense), held_out


def test_bpr_ranks_held_out_in_group_item_above_the_other_group():
    train, held_out = two_groups()
    # Few factors and a penalty make the model generalise from the groups instead of
    # memorising that each user's held-out item is one of their negatives.
    config = BPRConfig(factors=4, learning_rate=0.05, l2=0.01, epochs=30, batch_size=32, seed=0)
    scores = BPRMF(config).fit(train).score_users(np.arange(20))
    for user, item in enumerate(held_out):
        other_group = range(5, 10) if user < 10 else range(0, 5)
        assert scores[user, item] > scores[user, list(other_group)].max()
    assert np.array_equal(scores, BPRMF(config).fit(train).score_users(np.arange(20)))  # seeded


def test_bpr_needs_a_negative_per_user():
    with pytest.raises(ValueError, match="miss at least one item"):
        BPRMF(BPRConfig(epochs=1)).fit(sparse.csr_matrix(np.ones((2, 3))))


def planted_ratings(seed: int = 0) -> tuple[sparse.csr_matrix, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Ratings 3 + (rank-2 matrix) + small noise on 40 users x 30 items.

    Returns the training matrix (60% of the entries) and the held-out (users, items, ratings).
    """
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(40, 2)), rng.normal(size=(30, 2))
    ratings = 3 + users @ items.T + rng.normal(0, 0.1, size=(40, 30))
    observed = rng.random((40, 30)) < 0.6
    train = sparse.csr_matrix(np.where(observed, ratings, 0.0))
    rows, columns = np.nonzero(~observed)
    return train, (rows, columns, ratings[rows, columns])


@pytest.mark.parametrize(
    "model",
    [
        BiasedMF(BiasedMFConfig(factors=2, l2=0.5, bias_l2=0.5, iterations=15)),
        BayesianMF(BayesianMFConfig(factors=2, samples=40, burn_in=10, noise_precision=10.0)),
    ],
    ids=["biased_mf", "bayesian_mf"],
)
def test_rating_models_recover_a_planted_low_rank_matrix(model):
    train, (users, items, truth) = planted_ratings()
    model.fit(train)
    global_mean = rmse(truth, np.full(truth.size, train.data.mean()))
    predicted = model.predict(users, items)
    # The planted signal has standard deviation ~1.4, the noise 0.1: factorising must
    # remove most of the error of predicting the mean.
    assert rmse(truth, predicted) < 0.5 * global_mean
    assert predicted.min() >= train.data.min() and predicted.max() <= train.data.max()
    assert model.score_users([0, 1]).shape == (2, 30)


def test_biased_mf_without_factors_is_the_bias_model():
    # Two users, two items, every rating observed: r = [[4, 2], [5, 3]]. With tiny
    # penalties the biases fit exactly: item x is 2 above item y, user 2 one above user 1.
    ratings = sparse.csr_matrix(np.array([[4.0, 2.0], [5.0, 3.0]]))
    model = BiasedMF(BiasedMFConfig(factors=0, l2=1.0, bias_l2=1e-6, iterations=50)).fit(ratings)
    np.testing.assert_allclose(model.predict([0, 0, 1, 1], [0, 1, 0, 1]), [4, 2, 5, 3], atol=1e-3)


def test_rating_model_input_errors():
    train, _ = planted_ratings()
    model = BiasedMF(BiasedMFConfig(factors=2, iterations=1)).fit(train)
    with pytest.raises(ValueError, match="2 user indices but 1 item"):
        model.predict([0, 1], [0])
    with pytest.raises(ValueError, match=r"item indices must lie in \[0, 30\)"):
        model.predict([0], [30])
    with pytest.raises(ValueError, match="burn_in < samples"):
        BayesianMFConfig(samples=10, burn_in=10)
    with pytest.raises(ValueError, match="without any stored entry"):
        BayesianMF().fit(sparse.csr_matrix((3, 3)))


def test_score_blend_standardises_each_model_per_user():
    train = INDEX.matrix(FRAME)
    popularity, ease = Popularity().fit(train), EASE(EASEConfig(l2=1.0)).fit(train)

    def standardised(scores):
        return (scores - scores.mean(axis=1, keepdims=True)) / scores.std(axis=1, keepdims=True)

    expected = 0.25 * standardised(popularity.score_users([0, 1])) + 0.75 * standardised(ease.score_users([0, 1]))
    blend = ScoreBlend([popularity, ease], [0.25, 0.75])
    np.testing.assert_allclose(blend.score_users([0, 1]), expected)
    with pytest.raises(ValueError, match="2 models but 1 weights"):
        ScoreBlend([popularity, ease], [1.0])
