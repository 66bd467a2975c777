"""Joint retrieval + rating model: each loss weight switches its task on, on a tiny world
where users rate and watch the items of their own group."""

import numpy as np
import pandas as pd
import pytest

from models import evaluation
from models.retrieval.joint import JointConfig, fit_joint

GROUPS, N_ITEMS, N_USERS = 4, 40, 200


def rated_world(seed: int = 0) -> pd.DataFrame:
    """Users of group g watch 10 distinct items, 8 of their group, 2 of others; a rating is
    4.5 in-group, 2 out of group, plus an item bias and noise, clipped to 1..5."""
    rng = np.random.default_rng(seed)
    item_bias = rng.normal(0.0, 0.4, N_ITEMS)
    rows = []
    for user in range(N_USERS):
        group = user % GROUPS
        own = rng.choice(np.arange(group, N_ITEMS, GROUPS), 8, replace=False)
        other = rng.choice(np.setdiff1d(np.arange(N_ITEMS), np.arange(group, N_ITEMS, GROUPS)), 2, replace=False)
        for item in np.concatenate([own, other]):
            rating = (4.5 if item % GROUPS == group else 2.0) + item_bias[item] + rng.normal(0.0, 0.3)
            rows.append((f"u{user}", f"i{item}", float(np.clip(rating, 1.0, 5.0))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).sample(frac=1.0, random_state=seed)


@pytest.fixture(scope="module")
def split():
    world = rated_world()
    test = world.groupby("user_id").head(2)
    return world.drop(test.index), test


def fit(split, epochs: int = 6, on_epoch_end=None, **weights):
    config = JointConfig(
        embedding_dim=16, rating_units=(32,), batch_size=64, epochs=epochs, learning_rate=0.2, **weights
    )
    return fit_joint(split[0], config, on_epoch_end=on_epoch_end)


def rating_rmse(model, test) -> float:
    return evaluation.rmse(test["rating"], model.predict_ratings(test["user_id"], test["item_id"]))


def global_mean_rmse(split) -> float:
    train, test = split
    return evaluation.rmse(test["rating"], np.full(len(test), train["rating"].mean()))


def retrieval_recall(model, split, k: int = 5) -> float:
    train, test = split
    users, items = np.unique(test["user_id"]), [f"i{i}" for i in range(N_ITEMS)]
    scores = model.score_all(users, items)
    row = {user: r for r, user in enumerate(users)}
    seen = np.zeros(scores.shape, bool)
    for user, item in zip(train["user_id"], train["item_id"], strict=True):
        if user in row:
            seen[row[user], int(item[1:])] = True
    held_out = [[int(i[1:]) for i in test.loc[test["user_id"] == user, "item_id"]] for user in users]
    return evaluation.ranking_metrics(scores, seen, held_out, ks=(k,))[f"hr@{k}"]


@pytest.fixture(scope="module")
def ranking_only(split):
    # Alone, the rating loss moves the small initial embeddings slowly: on this data it
    # sits on a plateau at the mean for ~15 epochs before the embeddings separate.
    return fit(split, epochs=40, retrieval_weight=0.0, ranking_weight=1.0)


@pytest.fixture(scope="module")
def retrieval_only(split):
    return fit(split, retrieval_weight=1.0, ranking_weight=0.0)


# Chance for retrieval: 5 of the ~32 unseen items.
CHANCE_RECALL = 5 / 32


def test_ranking_weight_alone_learns_ratings(ranking_only, split):
    assert rating_rmse(ranking_only, split[1]) < 0.8 * global_mean_rmse(split)


def test_retrieval_weight_alone_learns_retrieval_and_no_ratings(retrieval_only, split):
    assert retrieval_recall(retrieval_only, split) > 2 * CHANCE_RECALL
    # The rating head gets no gradient: its untrained outputs (~0, clipped to the lowest
    # training rating) are worse than predicting the mean.
    assert rating_rmse(retrieval_only, split[1]) > global_mean_rmse(split)


def test_both_weights_learn_both_tasks(split):
    validation_recall = {}
    joint = fit(
        split,
        retrieval_weight=1.0,
        ranking_weight=1.0,
        on_epoch_end=lambda epoch, model: validation_recall.update({epoch: retrieval_recall(model, split)}),
    )
    assert rating_rmse(joint, split[1]) < 0.8 * global_mean_rmse(split)
    assert retrieval_recall(joint, split) > 2 * CHANCE_RECALL
    assert len(joint.loss) == 6 and joint.loss[-1] < joint.loss[0]
    # The hook sees the model after every epoch: the last call saw the final model.
    assert sorted(validation_recall) == [1, 2, 3, 4, 5, 6]
    assert validation_recall[6] == retrieval_recall(joint, split)


def test_predictions_stay_in_the_training_rating_range(ranking_only, split):
    predictions = ranking_only.predict_ratings(["u0", "stranger"], ["i0", "never_seen"])
    assert ((predictions >= split[0]["rating"].min()) & (predictions <= split[0]["rating"].max())).all()
    with pytest.raises(ValueError, match="got 2 user ids but 1 item ids"):
        ranking_only.predict_ratings(["u0", "u1"], ["i0"])


def test_scores_cover_the_requested_catalogue(retrieval_only):
    scores = retrieval_only.score_all(["u0", "u1", "u2"], ["i0", "i1", "unknown"])
    assert scores.shape == (3, 3)
    assert (scores[:, 2] < scores[:, :2].min(axis=1)).all()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"retrieval_weight": 0.0, "ranking_weight": 0.0}, "both 0, nothing would be learned"),
        ({"retrieval_weight": -1.0}, "weights must be >= 0"),
        ({"rating_units": (0,)}, "rating_units must all be >= 1"),
    ],
)
def test_bad_config_is_named(settings, message):
    with pytest.raises(ValueError, match=message):
        JointConfig(**settings)


def test_missing_rating_column_is_named():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['rating'\]"):
        fit_joint(pd.DataFrame({"user_id": ["u"], "item_id": ["i"]}))
