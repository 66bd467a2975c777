"""``/bid`` and the A/B router against the real parts: a real ``bentoml serve`` (two
workers) with campaigns and an experiment configured, budgets kept in a real Redis."""

import json
import threading
from contextlib import ExitStack

import pytest
import requests
from serving_support import export_toy_recommender, running_service
from test_online_serving import NAMESPACE, Redis, store_entities

from serving.bento_store import save_to_bento_store
from serving.experiments import load_experiment
from serving.online_store import open_store

pytestmark = pytest.mark.integration

CAMPAIGNS = {
    "campaigns": {
        "linear_i7": {"item_id": "i0007", "strategy": "linear", "daily_budget": 1000.0, "base_bid": 50.0,
                      "average_ctr": 0.1, "max_bid": 400.0},
        "tiny_budget": {"item_id": "i0008", "strategy": "constant", "daily_budget": 0.5, "base_bid": 100.0},
    }
}  # fmt: skip
WORLD_ROOT: dict = {}  # the module's world folder, for the test that reads what the service left
EXPERIMENT = {
    "name": "v2-vs-v1",
    "salt": "test-salt",
    "arms": [
        {"name": "champion", "model_tag": None, "share": 0.5},
        {"name": "challenger", "model_tag": "<v2>", "share": 0.5},
        {"name": "shadow", "model_tag": "<v2>", "shadow": True, "shadow_of": "champion"},
    ],
}


def bid_request(user: str, campaign: str = "linear_i7", floor: float = 0.0, **imp) -> dict:
    return {
        "id": f"req-{user}",
        "imp": [{"id": "1", "bidfloor": floor, "tagid": "slot-a", "ext": {"context": {"slot_position": 2}}, **imp}],
        "device": {"devicetype": 4},
        "user": {"id": user},
        "ext": {"campaign_id": campaign},
        "regs": {"coppa": 0},  # an OpenRTB field this bidder does not read: ignored
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bidding")
    _, users, items = export_toy_recommender(root / "v1", "bid-v1")
    export_toy_recommender(root / "v2", "bid-v2")
    home = root / "bentoml"
    tags = [save_to_bento_store(home, root / v, name="reclake_synthetic") for v in ("v1", "v2")]
    redis = Redis(root / "redis")
    redis.start()
    with open_store(redis.url) as store:
        store.publish(NAMESPACE, "day1", store_entities(users, items))
    (root / "campaigns.yaml").write_text(json.dumps(CAMPAIGNS))
    experiment = json.loads(json.dumps(EXPERIMENT).replace("<v2>", tags[1]))
    settings = {
        "RECLAKE_ONLINE_STORE_URL": redis.url,
        "RECLAKE_CAMPAIGNS": str(root / "campaigns.yaml"),
        "RECLAKE_EXPERIMENT": json.dumps(experiment),
        "RECLAKE_PREDICTION_LOG_ROOT": str(root / "lake"),
        "RECLAKE_SERVE_WORKERS": "2",
    }
    stack = ExitStack()
    url = stack.enter_context(running_service(tags[0], home, settings))
    WORLD_ROOT["root"] = root
    yield {"url": url, "stop": stack.close, "redis": redis, "root": root, "experiment": experiment}
    stack.close()
    redis.stop()


def post(world, route: str, body) -> requests.Response:
    return requests.post(f"{world['url']}{route}", json=body, timeout=30)


def test_a_bid_is_an_openrtb_answer_priced_by_the_campaigns_strategy(world):
    response = post(world, "/bid", bid_request("u0001"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-u0001" and body["cur"] == "USD"
    (bid,) = body["seatbid"][0]["bid"]
    assert bid["impid"] == "1" and bid["adid"] == "i0007" and bid["ext"]["strategy"] == "linear"
    assert bid["price"] == pytest.approx(min(50.0 * bid["ext"]["pctr"] / 0.1, 400.0), rel=1e-6)
    assert bid["ext"]["arm"] == load_experiment(json.dumps(world["experiment"])).assign("u0001")
    expected_version = "bid-v1" if bid["ext"]["arm"] == "champion" else "bid-v2"
    assert bid["ext"]["model_version"] == expected_version


def test_a_floor_above_the_price_is_a_no_bid(world):
    response = post(world, "/bid", bid_request("u0001", floor=10_000.0))
    assert response.status_code == 204 and response.content == b""


def test_an_unknown_campaign_is_a_404_and_a_malformed_request_a_400(world):
    unknown = post(world, "/bid", bid_request("u0001", campaign="nope"))
    assert unknown.status_code == 404 and unknown.json()["field"] == "ext.campaign_id"
    no_imp_id = bid_request("u0001")
    del no_imp_id["imp"][0]["id"]
    bad = post(world, "/bid", no_imp_id)
    assert bad.status_code == 400 and bad.json()["field"] == "imp.0.id"
    bad_context = post(world, "/bid", bid_request("u0001", ext={"context": {"slot_position": 99}}))
    assert bad_context.status_code == 400 and bad_context.json()["field"] == "imp.0.features.slot_position"


def test_the_budget_is_never_overspent_across_workers(world):
    """24 bids of 0.1 each (CPM 100) from 6 concurrent clients against a budget of 0.5:
    exactly 5 bids are sent, the rest are no-bids, none an error."""
    statuses, prices = [], []

    def client(first: int) -> None:
        for user in range(first, first + 4):
            response = post(world, "/bid", bid_request(f"u{user:04d}", campaign="tiny_budget"))
            statuses.append(response.status_code)
            if response.status_code == 200:
                prices.append(response.json()["seatbid"][0]["bid"][0]["price"])

    threads = [threading.Thread(target=client, args=(4 * i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 24 and set(statuses) <= {200, 204}, statuses
    assert len(prices) == 5 and sum(prices) / 1000 <= 0.5 + 1e-9, (prices, statuses)
    with open_store(world["redis"].url) as store:
        (key,) = [k for k in store_keys(world["redis"].url) if "tiny_budget" in k]
        assert store.get_float(NAMESPACE, key.split(":counter:", 1)[1]) == pytest.approx(0.5)


def test_a_replayed_day_follows_its_time_profile_and_its_bound(world):
    """bench/replay.py against the real service: every event is one request, sent at its
    time in the day sped up, and nothing past ``max_seconds`` is sent."""
    import importlib.util
    import random

    from conftest import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("bench_replay", PROJECT_ROOT / "bench" / "replay.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    rng = random.Random(3)
    events = sorted(
        (
            {"seconds": rng.uniform(0, 600), "user_id": f"u{rng.randrange(40):04d}", "item_id": f"i{rng.randrange(30):04d}",
             "device": "mobile", "slot_position": 2, "hour_of_day": 10, "day_of_week": 3}
            for _ in range(30)
        ),
        key=lambda event: event["seconds"],
    )  # fmt: skip
    offsets = replay.schedule(events, rate=None, speedup=200.0)  # 10 minutes in 3 s
    assert offsets == [pytest.approx((e["seconds"] - events[0]["seconds"]) / 200) for e in events]
    bodies = [replay.request_body("bid", e, toy_spec(), "linear_i7", i) for i, e in enumerate(events)]
    line = replay.replay(world["url"], bodies, offsets, "bid", max_seconds=10.0)
    assert line["requests"] == 30 and set(line["statuses"]) <= {"200", "204"}, line
    assert line["scheduled_s"] == pytest.approx(offsets)
    bounded = replay.replay(world["url"], bodies, offsets, "bid", max_seconds=1.5)
    assert bounded["requests"] == sum(1 for offset in offsets if offset < 1.5) < 30


def toy_spec():
    import toy_examples

    return toy_examples.SPEC


def store_keys(url: str) -> list[str]:
    import redis

    return [key.decode() for key in redis.Redis.from_url(url).keys("*counter*")]


def test_arms_are_sticky_split_and_shadowed(world):
    experiment = load_experiment(json.dumps(world["experiment"]))
    context = {"device": "mobile", "slot_position": 1}
    answered = {}
    for user in range(40):
        user_id = f"u{user:04d}"
        body = post(world, "/recommend", {"user_id": user_id, "k": 3, "context": context}).json()
        again = post(world, "/recommend", {"user_id": user_id, "k": 3, "context": context}).json()
        assert body["arm"] == again["arm"] == experiment.assign(user_id)
        assert body["model_version"] == ("bid-v1" if body["arm"] == "champion" else "bid-v2")
        answered[body["request_id"]] = body["arm"]
    assert set(answered.values()) == {"champion", "challenger"}
    world["stop"]()  # flush the prediction logs
    logged: dict[str, set[str]] = {}
    for path in (world["root"] / "lake" / "landing" / "prediction_logs" / NAMESPACE).glob("dt=*/*.jsonl"):
        for line in filter(None, path.read_text(encoding="utf-8").split("\n")):
            record = json.loads(line)
            served = record["shadow_of"] or record["request_id"]
            logged.setdefault(served, set()).add(record["arm"])
    for request_id, arm in answered.items():
        # The champion's requests are also scored, not served, by the shadow arm.
        assert logged[request_id] == ({"champion", "shadow"} if arm == "champion" else {"challenger"})


def test_the_services_logs_feed_the_ab_test_report():
    """What the service logged (after the shutdown above), read by the ``prediction_logs``
    asset's reader and joined with outcomes by the ``ab_test_report`` asset's library:
    every served item meets its outcome, shadow answers count for no arm. (Today's
    partition only exists once the day is over, so the assets themselves run on
    yesterday's logs in tests/test_ab_test.py.)"""
    import datetime as dt

    import pandas as pd

    from monitoring.ab_test import ATTRIBUTION_WINDOW, attribute_outcomes, compare_arms
    from serving.prediction_log_reader import read_prediction_logs

    root = WORLD_ROOT["root"]
    today = dt.datetime.now(dt.UTC).date()
    day = read_prediction_logs(str(root / "lake"), NAMESPACE, today)
    assert day.quarantined.empty, day.quarantined[["field", "reason"]].head()
    logs = day.rows[day.rows["endpoint"] == "recommend"]
    served = logs[logs["shadow_of"].isna()]
    assert len(served) == 80 and (logs["arm"] == "shadow").sum() == (served["arm"] == "champion").sum()
    events = pd.DataFrame(
        [
            (row.user_id, item, row.logged_at + dt.timedelta(minutes=1), int(rank == 0))
            for row in served.sort_values("logged_at").drop_duplicates("user_id", keep="last").itertuples()
            for rank, item in enumerate(row.items)
        ],
        columns=["user_id", "item_id", "event_ts", "clicked"],
    )
    attribution = attribute_outcomes(logs, events, ATTRIBUTION_WINDOW)
    # Each user was asked twice for the same items: an outcome goes to the newer answer.
    assert attribution.served == 2 * len(events) and attribution.matched == len(events) == 120
    observed = attribution.frame[attribution.frame["matched"]]
    comparison = compare_arms(observed[["arm", "score", "clicked"]])
    clicks = {arm.arm: arm.clicks for arm in comparison.arms}
    assert set(clicks) == {"champion", "challenger"} and sum(clicks.values()) == 40
