"""Rating blend pieces: baseline predictors, the kNN baseline, session residuals and the fitted linear blend."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models import evaluation
from models.retrieval.baselines import InteractionIndex
from models.retrieval.rating_blend import (
    KNNBaseline,
    KNNBaselineConfig,
    RatingBlend,
    SessionResiduals,
    SessionResidualsConfig,
    baseline_predictors,
)

pytestmark = pytest.mark.unit


def planted_ratings(seed: int, users: int = 300, items: int = 120, density: float = 0.3) -> tuple:
    """Ratings ``3 + b_u + b_i + 0.8 * taste_u * genre_i + noise`` on a random ``density`` of pairs.

    Returns:
        ``(train matrix, test users, test items, test ratings, true user biases, true item biases)``.
    """
    rng = np.random.default_rng(seed)
    user_bias, item_bias = rng.normal(0, 0.4, users), rng.normal(0, 0.5, items)
    taste, genre = rng.choice([-1.0, 1.0], users), rng.choice([-1.0, 1.0], items)
    rated = rng.random((users, items)) < density
    u, i = np.nonzero(rated)
    values = 3 + user_bias[u] + item_bias[i] + 0.8 * taste[u] * genre[i] + rng.normal(0, 0.3, u.size)
    test = rng.random(u.size) < 0.2
    train = sp.csr_matrix((values[~test], (u[~test], i[~test])), shape=(users, items))
    return train, u[test], i[test], values[test], user_bias, item_bias


def test_baseline_predictors_recover_planted_biases():
    train, *_, user_bias, item_bias = planted_ratings(seed=0)
    mean, users, items = baseline_predictors(train, user_l2=1.0, item_l2=1.0)
    assert mean == pytest.approx(train.data.mean())
    # Biases are identified up to a shared constant: compare centred ones.
    assert np.corrcoef(items, item_bias)[0, 1] > 0.95
    assert np.corrcoef(users, user_bias)[0, 1] > 0.8
    with pytest.raises(ValueError, match="without any stored entry"):
        baseline_predictors(sp.csr_matrix((3, 3)))


@pytest.mark.parametrize("user_based", [False, True])
def test_knn_baseline_finds_the_planted_taste_the_biases_miss(user_based):
    train, users, items, truth, *_ = planted_ratings(seed=1)
    mean, user_bias, item_bias = baseline_predictors(train)
    biases_only = evaluation.rmse(truth, np.clip(mean + user_bias[users] + item_bias[items], 1, 5))
    model = KNNBaseline(KNNBaselineConfig(neighbours=30, user_based=user_based)).fit(train)
    knn = evaluation.rmse(truth, model.predict(users, items))
    # The +-0.8 taste x genre term is what neighbours of the same genre (taste) share.
    assert biases_only > 0.8
    assert knn < 0.6
    assert model.predict(users, items) == pytest.approx(KNNBaseline(model.config).fit(train).predict(users, items))


def test_session_residuals_are_time_weighted_shrunk_means():
    # One user rated three items equally but the baseline cannot tell them from the
    # others' ratings; user b fixes the item means.
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "item_id": ["x", "y", "x", "y"],
            "rating": [5, 4, 3, 2],
            "timestamp": [0, 100, 0, 100],
        }
    )
    index = InteractionIndex.from_frames(frame)
    config = SessionResidualsConfig(time_constants=(10.0, 1e9), shrink=1.0)
    model = SessionResiduals(config).fit(frame, index)
    mean, user_bias, item_bias = baseline_predictors(index.matrix(frame, "rating"))
    residuals = np.array([5, 4]) - mean - user_bias[0] - item_bias[[0, 1]]
    features = model.features(index.user_indices(["a"]), [100])
    near = np.array([np.exp(-10), 1.0])  # 100 s and 0 s away, tau 10 s
    far = np.exp(-np.array([100.0, 0.0]) / 1e9)
    assert features[0] == pytest.approx([near @ residuals / (near.sum() + 1), far @ residuals / (far.sum() + 1)])
    with pytest.raises(ValueError, match="rating"):
        SessionResiduals().fit(frame.drop(columns="rating"), index)
    with pytest.raises(ValueError, match="1 users but 2 timestamps"):
        model.features([0], [1, 2])


def test_blend_weights_fitted_on_validation_beat_each_component_on_test():
    rng = np.random.default_rng(3)
    truth = rng.integers(1, 6, 4000).astype(float)
    # Two unbiased predictors with independent errors and a useless column.
    columns = np.column_stack(
        [truth + rng.normal(0, 0.8, 4000), truth + rng.normal(0, 0.6, 4000), rng.normal(size=4000)]
    )
    validation, test = slice(0, 2000), slice(2000, None)
    blend = RatingBlend().fit(columns[validation], truth[validation])
    blended = evaluation.rmse(truth[test], blend.predict(columns[test]))
    best_single = min(evaluation.rmse(truth[test], columns[test, k]) for k in (0, 1))
    assert blended < best_single - 0.05
    # Inverse-variance weights: about 0.36 / 0.64 of the signal; the noise column gets ~0.
    weights = blend.coefficients[1:] / blend.coefficients[1:3].sum()
    assert weights[:2] == pytest.approx([0.36, 0.64], abs=0.05)
    assert abs(blend.coefficients[3]) < 0.05
    assert blend.predict(columns).min() >= 1 and blend.predict(columns).max() <= 5
    with pytest.raises(ValueError, match="fitted on 3 columns"):
        blend.predict(columns[:, :2])
    with pytest.raises(RuntimeError, match="not fitted"):
        RatingBlend().predict(columns)
