"""``bench/replay.py`` against the real parts: a held-out day of toy logs in a DuckDB
warehouse, replayed by the bench's own functions (``replay_day``, imported, not shelled
out) against a real ``bentoml serve`` (two workers) that bids for the bench's campaigns
(``bench/serving.py``'s ``bench_campaigns_file``) with budgets in a real Redis."""

import importlib.util
import sys
import time
from contextlib import ExitStack

import duckdb
import numpy as np
import pytest
import toy_examples
from conftest import PROJECT_ROOT
from serving_support import export_toy_recommender, running_service
from test_online_serving import NAMESPACE, store_entities

from serving.bento_store import save_to_bento_store
from serving.online_store import open_store
from serving.redis_server import running_redis

pytestmark = pytest.mark.integration

SPEC = toy_examples.SPEC
HELD_OUT_DAY = "2024-01-02"  # the newest of the toy days
ROWS = 40  # events replayed by the profile test
PROFILE_SECONDS = 3.0  # their span in the day, sped up to this


def load_replay():
    """bench/replay.py as a module (it loads bench/serving.py as ``bench_serving``)."""
    if "bench_replay" in sys.modules:
        return sys.modules["bench_replay"]
    spec = importlib.util.spec_from_file_location("bench_replay", PROJECT_ROOT / "bench" / "replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["bench_replay"] = module
    return module


def write_warehouse(path, examples) -> None:
    """``training_examples`` of a DuckDB warehouse: the toy rows (two days)."""
    frame = examples.drop(columns=["true_pctr"])
    with duckdb.connect(str(path)) as connection:
        connection.register("examples", frame)
        connection.execute(
            "create table training_examples as select * replace (cast(event_date as date) as event_date) from examples"
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    replay = load_replay()
    bench = replay.serving_bench
    root = tmp_path_factory.mktemp("replay")
    examples, users, items = export_toy_recommender(root / "model", "replay-v1")
    tag = save_to_bento_store(root / "bentoml", root / "model", name="reclake_synthetic")
    warehouse = root / "warehouse.duckdb"
    write_warehouse(warehouse, examples)
    held_out = examples[examples["event_date"].astype(str) == HELD_OUT_DAY].to_dict("records")
    campaigns = bench.bench_campaigns_file(root, bench.popular_item(held_out))
    with ExitStack() as stack:
        redis_url = stack.enter_context(running_redis(data_dir=root / "redis"))
        with open_store(redis_url) as store:
            store.publish(NAMESPACE, "day1", store_entities(users, items))
        settings = {
            "RECLAKE_ONLINE_STORE_URL": redis_url,
            "RECLAKE_CAMPAIGNS": str(campaigns),
            "RECLAKE_SERVE_WORKERS": "2",
        }
        url = stack.enter_context(running_service(tag, root / "bentoml", settings))
        yield {"url": url, "redis": redis_url, "warehouse": str(warehouse), "replay": replay, "bench": bench}


def spend(world, campaign: str) -> float:
    bench = world["bench"]
    days = bench.utc_days(time.time(), time.time())
    return sum(bench.campaign_spend(world["redis"], NAMESPACE, campaign, days).values())


def test_every_event_is_one_request_sent_at_its_time_in_the_day_sped_up(world):
    replay, bench = world["replay"], world["bench"]
    day, events = replay.day_events(world["warehouse"], SPEC, None)
    assert day == HELD_OUT_DAY and len(events) > ROWS
    seconds = np.array([event["seconds"] for event in events[:ROWS]])
    assert (np.diff(seconds) >= 0).all() and seconds[0] >= 0  # in time order, from midnight
    speedup = seconds[-1] / PROFILE_SECONDS
    spent_before = spend(world, bench.BENCH_LINEAR)

    line = replay.replay_day(
        world["url"], world["warehouse"], SPEC, "bid", speedup=speedup, max_seconds=30.0, max_requests=ROWS,
        campaign=bench.BENCH_LINEAR,
    )  # fmt: skip

    assert line["day"] == HELD_OUT_DAY and line["events"] == len(events)
    assert line["requests"] == ROWS == sum(line["statuses"].values()), line
    assert set(line["statuses"]) <= {"200", "204"} and line["errors"] == 0, line
    expected = seconds / speedup
    assert line["scheduled_s"] == pytest.approx(expected.tolist(), abs=1e-5)
    sent = np.array(line["sent_s"])
    # The send times follow the events' profile: sent = event time / speedup, give or take
    # the client's scheduling (a fit of one against the other has slope 1).
    slope, intercept = np.polyfit(expected, sent, 1)
    assert slope == pytest.approx(1.0, abs=0.05) and abs(intercept) < 0.1, (slope, intercept)
    lateness = sent - expected
    assert lateness.min() > -0.002 and np.median(lateness) < 0.05 and lateness.max() < 0.25, lateness
    assert np.diff(sent) == pytest.approx(np.diff(expected), abs=0.25)
    # The answered bids are what the budget counter in the store was charged.
    assert line["bids"] == line["statuses"].get("200", 0) > 0 and line["no_bid_share"] < 1.0
    charged = spend(world, bench.BENCH_LINEAR) - spent_before
    assert charged == pytest.approx(line["bid_price_total"] / 1000, rel=1e-6, abs=1e-9)


def test_nothing_is_sent_past_max_seconds(world):
    replay, bench = world["replay"], world["bench"]
    _, events = replay.day_events(world["warehouse"], SPEC, None)
    speedup = events[ROWS - 1]["seconds"] / 6.0  # the first ROWS events in 6 s, cut at 2 s
    offsets = [event["seconds"] / speedup for event in events]
    max_seconds = 2.0
    started = time.monotonic()
    line = replay.replay_day(
        world["url"], world["warehouse"], SPEC, "recommend", speedup=speedup, max_seconds=max_seconds,
        max_requests=ROWS,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert 0 < line["requests"] == sum(1 for offset in offsets[:ROWS] if offset < max_seconds) < ROWS, line
    assert max(line["scheduled_s"]) < max_seconds and line["statuses"] == {"200": line["requests"]}, line
    assert line["seconds"] <= max_seconds + bench.CLIENT_TIMEOUT_S
    assert elapsed < max_seconds + bench.CLIENT_TIMEOUT_S + 10.0  # + reading the day, starting the client


def test_a_fixed_rate_sends_the_first_max_requests_events(world):
    replay = world["replay"]
    line = replay.replay_day(
        world["url"], world["warehouse"], SPEC, "predict", rate=50.0, max_seconds=10.0, max_requests=10
    )
    assert line["requests"] == 10 and line["statuses"] == {"200": 10}, line
    assert line["scheduled_s"] == pytest.approx([i / 50.0 for i in range(10)], abs=1e-5)


def test_a_small_budget_runs_out_and_is_never_overspent(world):
    """150 bids in 1.5 s for the bench's small-budget campaign, on two workers: its budget
    runs out, the rest are no-bids, and the spend counter ends within the budget."""
    replay, bench = world["replay"], world["bench"]
    line = replay.replay_day(
        world["url"], world["warehouse"], SPEC, "bid", rate=100.0, max_seconds=10.0, max_requests=150,
        campaign=bench.BENCH_SMALL_BUDGET,
    )  # fmt: skip
    assert line["requests"] == 150 and set(line["statuses"]) == {"200", "204"}, line
    assert 0 < line["no_bid_share"] < 1
    spent = spend(world, bench.BENCH_SMALL_BUDGET)
    assert spent <= bench.SMALL_BUDGET + 1e-9
    assert spent == pytest.approx(line["bid_price_total"] / 1000, rel=1e-6)
    assert bench.SMALL_BUDGET - spent < 5.0 / 1000  # it stopped within one bid (max_bid 5.0 CPM) of the budget
