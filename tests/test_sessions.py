"""Session co-occurrence + recency-weighted EASE: a hand-computed matrix and a planted session world."""

import numpy as np
import pandas as pd
import pytest

from models import evaluation
from models.retrieval.baselines import InteractionIndex, Popularity
from models.retrieval.recency import RecencyEASE, RecencyEASEConfig, timed_histories
from models.retrieval.sessions import SessionEASE, SessionEASEConfig, session_cooccurrence

pytestmark = pytest.mark.unit

# User a met x at t=0, y at t=10 and z at t=1000; user b met x and y at t=0 and t=20.
FRAME = pd.DataFrame(
    {
        "user_id": ["a", "a", "a", "b", "b"],
        "item_id": ["x", "y", "z", "x", "y"],
        "timestamp": [0, 10, 1000, 0, 20],
    }
)
INDEX = InteractionIndex.from_frames(FRAME)  # items x, y, z


def test_cooccurrence_weights_pairs_by_time_apart_and_damps_popular_items():
    matrix = session_cooccurrence(timed_histories(FRAME, INDEX), 3, session_seconds=10.0, degree_exponent=0.5)
    # x-y: a met them 10 s apart, b 20 s apart; both items have 2 interactions.
    assert matrix[0, 1] == pytest.approx((np.exp(-1) + np.exp(-2)) / 2)
    assert matrix[1, 0] == pytest.approx(matrix[0, 1])
    # x-z: 1000 s apart for a only; x has 2 interactions, z 1.
    assert matrix[0, 2] == pytest.approx(np.exp(-100) / np.sqrt(2))
    assert np.diag(matrix).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="session_seconds > 0"):
        session_cooccurrence({}, 3, session_seconds=0.0)


def session_world(seed: int, users: int = 150, clusters: int = 12, cluster_size: int = 8) -> pd.DataFrame:
    """Users meet items in sessions: each session takes one random cluster and 4 of its items, seconds apart.

    Every user visits several random clusters over weeks, so the whole history says
    little about the next item; what the user met just before a request says a lot.
    Items are also unequally popular within their cluster.
    """
    rng = np.random.default_rng(seed)
    rows = []
    popularity = rng.dirichlet(np.ones(cluster_size) * 2.0, size=clusters)
    for user in range(users):
        for session in range(6):
            cluster = rng.integers(clusters)
            start = session * 7 * 86_400 + rng.integers(0, 86_400)
            items = rng.choice(cluster_size, size=4, replace=False, p=popularity[cluster])
            for step, item in enumerate(items):
                rows.append((user, int(cluster * cluster_size + item), start + 20 * step))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return frame.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)


def request_hit_ratio(scores: np.ndarray, index: InteractionIndex, train: pd.DataFrame, test: pd.DataFrame) -> float:
    users = index.user_indices(test["user_id"])
    targets = [[item] for item in index.item_indices(test["item_id"])]
    return evaluation.ranking_metrics(scores, index.matrix(train)[users], targets, (10,))["hr@10"]


def split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    held_out = np.random.default_rng(seed).random(len(frame)) < 0.2
    return frame[~held_out], frame[held_out]


def test_session_blend_beats_popularity_and_recency_ease_on_planted_sessions():
    frame = session_world(seed=0)
    index = InteractionIndex.from_frames(frame)
    train, test = split(frame, seed=1)
    users, times = index.user_indices(test["user_id"]), test["timestamp"].to_numpy()
    popularity = Popularity().fit(index.matrix(train)).score_users(users)
    recency = RecencyEASE(RecencyEASEConfig(l2=10.0, decay_seconds=60.0)).fit(train, index)
    config = SessionEASEConfig(l2=10.0, decay_seconds=60.0, session_seconds=60.0, session_weight=0.6)
    blend = SessionEASE(config).fit(train, index)
    popularity_hr = request_hit_ratio(popularity, index, train, test)
    recency_hr = request_hit_ratio(recency.score_requests(users, times), index, train, test)
    blend_hr = request_hit_ratio(blend.score_requests(users, times), index, train, test)
    # Popularity finds ~0.2 of the held-out items in the top 10, recency-weighted EASE ~0.7,
    # the blend with session co-occurrence ~0.84 (0.84 on another seed too).
    assert recency_hr > popularity_hr + 0.3
    assert blend_hr > recency_hr + 0.05


def test_zero_session_weight_is_recency_ease_and_fits_are_reproducible():
    frame = session_world(seed=2, users=40)
    index = InteractionIndex.from_frames(frame)
    train, test = split(frame, seed=3)
    users, times = index.user_indices(test["user_id"]), test["timestamp"].to_numpy()
    config = SessionEASEConfig(l2=10.0, decay_seconds=60.0, baseline_weight=0.05, session_weight=0.0)
    blend = SessionEASE(config).fit(train, index)
    recency = RecencyEASE(RecencyEASEConfig(l2=10.0, decay_seconds=60.0, baseline_weight=0.05)).fit(train, index)
    expected = recency.score_requests(users, times)
    spread = expected.std(axis=1, keepdims=True)
    standardised = (expected - expected.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)
    assert blend.score_requests(users, times) == pytest.approx(standardised)
    again = SessionEASE(config).fit(train, index).set_profiles(session_weight=0.5).score_requests(users, times)
    assert blend.set_profiles(session_weight=0.5).score_requests(users, times) == pytest.approx(again)


def test_bad_settings_and_calls_raise():
    with pytest.raises(ValueError, match="session_weight must lie in"):
        SessionEASEConfig(session_weight=1.5)
    with pytest.raises(ValueError, match="> 0"):
        SessionEASEConfig(session_seconds=0.0)
    model = SessionEASE()
    with pytest.raises(RuntimeError, match="not fitted"):
        model.score_requests([0], [1.0])
    with pytest.raises(ValueError, match="timestamp"):
        model.fit(FRAME.drop(columns="timestamp"), INDEX)
    model.fit(FRAME, INDEX)
    with pytest.raises(ValueError, match="set_profiles can change"):
        model.set_profiles(l2=5.0)
