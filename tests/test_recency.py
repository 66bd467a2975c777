"""EASE over a recency-weighted profile: hand-computed profiles and a real MovieLens-100K check."""

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from models import evaluation
from models.inputs import protocols
from models.retrieval.baselines import EASE, EASEConfig, InteractionIndex
from models.retrieval.recency import RecencyEASE, RecencyEASEConfig

pytestmark = pytest.mark.unit

# User a met x at t=0, y at t=100 and z at t=1000; user b met x and w at t=50.
FRAME = pd.DataFrame(
    {
        "user_id": ["a", "a", "a", "b", "b"],
        "item_id": ["x", "y", "z", "x", "w"],
        "timestamp": [0, 100, 1000, 50, 50],
    }
)
INDEX = InteractionIndex.from_frames(FRAME)  # items w, x, y, z


def test_profile_weights_only_items_met_before_the_request():
    model = RecencyEASE(RecencyEASEConfig(l2=1.0, decay_seconds=100.0, baseline_weight=0.1)).fit(FRAME, INDEX)
    profile = model.profiles(INDEX.user_indices(["a", "b"]), [200, 50]).toarray()
    # a at t=200: x met 200 s ago -> 0.1 + e^-2, y 100 s ago -> 0.1 + e^-1, z later -> 0.1 only.
    assert profile[0] == pytest.approx([0.0, 0.1 + np.exp(-2), 0.1 + np.exp(-1), 0.1])
    # b at t=50: both items met at the request's own second count as not yet met.
    assert profile[1] == pytest.approx([0.1, 0.1, 0.0, 0.0])


def test_scores_are_the_profile_times_ease_weights():
    model = RecencyEASE(RecencyEASEConfig(l2=1.0, decay_seconds=100.0, baseline_weight=0.1)).fit(FRAME, INDEX)
    users, times = INDEX.user_indices(["a", "b"]), [200, 60]
    expected = model.profiles(users, times).toarray() @ EASE(EASEConfig(l2=1.0)).fit(INDEX.matrix(FRAME)).weights
    assert model.score_requests(users, times) == pytest.approx(expected)


def test_a_long_decay_reduces_to_plain_ease_ranking():
    model = RecencyEASE(RecencyEASEConfig(l2=1.0, decay_seconds=1e12, baseline_weight=0.0)).fit(FRAME, INDEX)
    ease = EASE(EASEConfig(l2=1.0)).fit(INDEX.matrix(FRAME))
    users = INDEX.user_indices(["a"])
    # Every item met long before the request weighs ~1: the profile is the binary history.
    assert model.score_requests(users, [10_000]) == pytest.approx(ease.score_users(users), rel=1e-6)


def test_user_without_history_scores_zero_and_bad_calls_raise():
    # c is in the index (another frame) but has no training history.
    with_c = InteractionIndex.from_frames(FRAME, pd.DataFrame({"user_id": ["c"], "item_id": ["x"]}))
    model = RecencyEASE().fit(FRAME, with_c)
    assert model.score_requests(with_c.user_indices(["c"]), [5]).tolist() == [[0.0] * 4]
    with pytest.raises(ValueError, match="2 users but 1 timestamps"):
        model.profiles([0, 1], [5])
    with pytest.raises(ValueError, match="timestamp"):
        RecencyEASE().fit(FRAME.drop(columns="timestamp"), INDEX)
    with pytest.raises(RuntimeError, match="not fitted"):
        RecencyEASE().profiles([0], [1])
    with pytest.raises(ValueError, match="decay_seconds > 0"):
        RecencyEASEConfig(decay_seconds=0)


@pytest.mark.skipif(not (SHARED_DATA / "ml-100k" / "u.data").is_file(), reason="MovieLens-100K not available")
def test_recent_items_lift_hit_ratio_over_plain_ease_on_movielens():
    ratings = pd.read_csv(
        SHARED_DATA / "ml-100k" / "u.data", sep="\t", header=None, names=list(protocols.INTERACTION_COLUMNS)
    )
    index = InteractionIndex.from_frames(ratings)
    train, test = protocols.tfrs_random_split(ratings)
    test = test.sample(4000, random_state=0)
    users, targets = index.user_indices(test["user_id"]), [[item] for item in index.item_indices(test["item_id"])]
    mask = index.matrix(train)[users]
    plain = EASE(EASEConfig(l2=300.0)).fit(index.matrix(train)).score_users(users)
    recent = RecencyEASE(RecencyEASEConfig(l2=300.0, decay_seconds=300.0)).fit(train, index)
    timed = recent.score_requests(users, test["timestamp"].to_numpy())
    plain_hr = evaluation.ranking_metrics(plain, mask, targets, (10,))["hr@10"]
    timed_hr = evaluation.ranking_metrics(timed, mask, targets, (10,))["hr@10"]
    # Plain EASE finds ~0.17 of the held-out ratings in the top 10; the session profile ~0.2.
    assert timed_hr > plain_hr + 0.02
