"""``ServedModel`` in process on a real embedded online store: ``/recommend`` in one
signature call (``recommend_features``, the item table refreshed from the store) gives
what the two-call path (retrieve from store features, rank the store's item rows) gives,
and follows the store when it publishes new item features."""

import numpy as np
import pytest
from serving_support import CONTEXT, HISTORY, NAMESPACE, export_toy_recommender, store_entities

from serving.online_store import open_store
from serving.scoring import ServedModel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    _, users, items = export_toy_recommender(root / "model", "scoring-v1")
    store = open_store(str(root / "online.sqlite"))
    store.publish(NAMESPACE, "day1", store_entities(users[users["user_id"] != "u0003"], items, {"u0001": HISTORY}))
    one_call = ServedModel("reclake_synthetic:v1", str(root / "model"), store)
    two_calls = ServedModel("reclake_synthetic:v1", str(root / "model"), store)
    two_calls._item_table = None  # the path of models exported before recommend_features
    yield {"store": store, "one_call": one_call, "two_calls": two_calls, "users": users, "items": items}
    store.close()


USERS = [f"u{n:04d}" for n in range(1, 13)]


def test_the_toy_export_has_the_one_call_signature(world):
    assert world["one_call"].recommender.can_recommend_features and world["one_call"]._item_table is not None


@pytest.mark.parametrize("k", [1, 10, 25])
def test_one_call_recommends_what_retrieval_then_ranking_recommends(world, k):
    for user in USERS:
        fast = world["one_call"].recommend(user, k, CONTEXT)
        slow = world["two_calls"].recommend(user, k, CONTEXT)
        assert fast.items == slow.items, user
        assert fast.scores == pytest.approx(slow.scores, rel=1e-5, abs=1e-6)
        assert fast.defaults_used == slow.defaults_used and fast.fallback == slow.fallback
        assert len(fast.items) == k


def test_history_is_left_out_and_a_user_missing_from_the_store_gets_defaults(world):
    served = world["one_call"].recommend("u0001", 20, CONTEXT)
    assert len(served.items) == 20 and not set(served.items) & set(HISTORY)
    missing = world["one_call"].recommend("u0003", 5, CONTEXT)
    assert missing.defaults_used == ["user"] and missing.fallback is None and len(missing.items) == 5
    assert world["one_call"].recommend("newcomer", 5, CONTEXT).fallback == "popularity"


def test_new_item_features_in_the_store_reach_the_item_table(world):
    model, store = world["one_call"], world["store"]
    before = model.recommend("u0002", 10, CONTEXT)
    items = world["items"].copy()
    first = items["item_id"] == before.items[0]
    for column in [c for c in items.columns if c.startswith("item_positive_rate_")]:
        items.loc[first, column] = 0.0  # the best item loses every click it had
    for column in [c for c in items.columns if c.startswith("item_events_")]:
        items.loc[first, column] = 10_000
    without = items[items["item_id"] != before.items[-1]]  # and the last one leaves the store
    users = world["users"][world["users"]["user_id"] != "u0003"]
    store.publish(NAMESPACE, "day2", store_entities(users, without, {"u0001": HISTORY}))
    after = model.recommend("u0002", 10, CONTEXT)
    reference = world["two_calls"].recommend("u0002", 10, CONTEXT)
    assert after.items == reference.items
    assert after.scores == pytest.approx(reference.scores, rel=1e-5, abs=1e-6)
    moved = dict(zip(after.items, after.scores, strict=True)).get(before.items[0])
    assert moved is None or not np.isclose(moved, before.scores[0], rtol=1e-4), "the changed item must score anew"
    assert model._item_table.version == "day2"
    assert ("item" in after.defaults_used) == (before.items[-1] in after.items)
