"""The online serving tier against its real parts: a real ``bentoml serve`` (two workers)
reading user and item features from a real Redis server, swapping models while under load,
logging predictions to a lake folder, and failing cleanly while Redis is down."""

import json
import shutil
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import free_port
from serving_support import CONTEXT, HISTORY, NAMESPACE, SPEC, export_toy_recommender, running_service, store_entities

from models.export.savedmodel import METADATA_FILE, load_recommender
from serving.bento_store import save_to_bento_store
from serving.features import FeatureAssembler
from serving.online_store import open_store
from serving.redis_server import running_redis

pytestmark = pytest.mark.integration


class Redis:
    """A real redis-server on a fixed port that a test can stop and start again."""

    def __init__(self, data_dir: Path) -> None:
        self.port, self.data_dir, self.stack = free_port(), data_dir, ExitStack()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.stack.enter_context(running_redis(self.port, self.data_dir))

    def stop(self) -> None:
        self.stack.close()
        self.stack = ExitStack()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    examples, users, items = export_toy_recommender(root / "v1", "online-v1")
    shutil.copytree(root / "v1", root / "v2")  # the same graph, promoted as a new version
    metadata = json.loads((root / "v2" / METADATA_FILE).read_text())
    (root / "v2" / METADATA_FILE).write_text(json.dumps({**metadata, "model_version": "online-v2"}))
    home = root / "bentoml"
    tags = [save_to_bento_store(home, root / v, name="reclake_synthetic") for v in ("v1", "v2")]
    redis = Redis(root / "redis")
    redis.start()
    users = users[users["user_id"] != "u0003"]  # a user the model knows but the store lacks
    with open_store(redis.url) as store:
        store.publish(NAMESPACE, "day1", store_entities(users, items, {"u0001": HISTORY}))
    yield {"root": root, "home": home, "tags": tags, "redis": redis, "users": users, "items": items}
    redis.stop()


@pytest.fixture(scope="module")
def server(world):
    root = world["root"]
    (root / "pinned").write_text(world["tags"][0])
    settings = {
        "RECLAKE_ONLINE_STORE_URL": world["redis"].url,
        "RECLAKE_PINNED_TAG_FILE": str(root / "pinned"),
        "RECLAKE_SWAP_POLL_S": "0.5",
        "RECLAKE_PREDICTION_LOG_ROOT": str(root / "lake"),
        "RECLAKE_SERVE_WORKERS": "2",
    }
    stack = ExitStack()
    url = stack.enter_context(running_service(world["tags"][0], world["home"], settings))
    yield {"url": url, "stop": stack.close}
    stack.close()


def post(server, route: str, body, **kwargs) -> requests.Response:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    headers = kwargs.pop("headers", {"Content-Type": "application/json"})
    return requests.post(f"{server['url']}{route}", data=data, headers=headers, timeout=30, **kwargs)


def test_predict_reads_the_store_and_matches_the_exported_lookups(server, world):
    rows = [{"user_id": "u0001", "item_id": "i0007", **CONTEXT}, {"user_id": "u0002", "item_id": "i0010", **CONTEXT}]
    response = post(server, "/predict", {"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["defaults_used"] == []
    # The store holds the very tables the export's in-graph lookups were built from.
    expected = load_recommender(world["root"] / "v1").predict(pd.DataFrame(rows))
    assert body["scores"] == pytest.approx(expected.tolist(), rel=1e-5)


def test_fresher_store_features_reach_the_served_model(server, world):
    rows = [{"user_id": "u0002", "item_id": "i0010", **CONTEXT}]
    before = post(server, "/predict", {"rows": rows}).json()["scores"][0]
    users = world["users"].copy()
    changed = users["user_id"] == "u0002"
    for column in [c for c in users.columns if c.startswith("user_positive_rate_")]:
        users.loc[changed, column] = 0.9
    for column in [c for c in users.columns if c.startswith("user_events_")]:
        users.loc[changed, column] = 500
    entities = store_entities(users, world["items"], {"u0001": HISTORY})
    with open_store(world["redis"].url) as store:
        store.publish(NAMESPACE, "day2", entities)
    recommender = load_recommender(world["root"] / "v1")
    assembler = FeatureAssembler(SPEC, recommender.lookup_defaults)
    row = {**rows[0], **entities["user"]["u0002"], **entities["item"]["i0010"]}
    expected = float(recommender.rank_arrays(assembler.arrays([row]))["score"][0])
    assert expected != pytest.approx(before, rel=1e-4), "the changed features must change the score"
    deadline, after = time.monotonic() + 10, before
    while time.monotonic() < deadline and after == pytest.approx(before, rel=1e-6):
        time.sleep(0.3)  # each worker caches the served version for about a second
        after = post(server, "/predict", {"rows": rows}).json()["scores"][0]
    assert after == pytest.approx(expected, rel=1e-5)


def test_recommend_leaves_out_the_users_history(server):
    response = post(server, "/recommend", {"user_id": "u0001", "k": 20, "context": CONTEXT})
    assert response.status_code == 200, response.text
    items = [item["item_id"] for item in response.json()["items"]]
    assert len(items) == 20 and not set(items) & set(HISTORY)


def test_a_user_missing_from_the_store_gets_defaults_and_is_told(server):
    body = post(server, "/recommend", {"user_id": "u0003", "k": 5, "context": CONTEXT}).json()
    assert body["defaults_used"] == ["user"] and body["fallback"] is None and len(body["items"]) == 5
    body = post(server, "/predict", {"rows": [{"user_id": "u0003", "item_id": "i0001", **CONTEXT}]}).json()
    assert body["defaults_used"] == ["user"]


def test_an_unknown_user_gets_k_items_beyond_the_popular_list(server):
    body = post(server, "/recommend", {"user_id": "newcomer", "k": 30, "context": CONTEXT}).json()
    assert body["fallback"] == "popularity"
    items = [item["item_id"] for item in body["items"]]
    assert len(items) == len(set(items)) == 30  # the toy export's popular list has 20 items


def test_error_contract(server):
    multipart = requests.post(f"{server['url']}/predict", files={"rows": ("rows.json", b"[]")}, timeout=30)
    assert multipart.status_code == 415 and multipart.json()["status"] == 415
    huge = post(server, "/predict", {"rows": [{"user_id": "u" * 200, "item_id": "i0001", **CONTEXT}] * 6000})
    assert huge.status_code == 413 and "limit" in huge.json()["error"]
    missing = post(server, "/no_such_route", {})
    assert missing.status_code == 404 and set(missing.json()) == {"error", "field", "status"}
    bad = post(server, "/recommend", {"user_id": "u0001", "context": {**CONTEXT, "device": "fridge"}})
    assert bad.status_code == 400 and bad.json()["field"] == "context.device"
    schema = requests.get(f"{server['url']}/docs.json", timeout=30).json()
    text = json.dumps(schema)
    assert '"enum": ["mobile", "desktop", "tablet"]' in text or '["mobile", "desktop", "tablet"]' in text
    assert '"maximum": 30' in text  # k is bounded by the indexed items


def test_generated_requests_from_the_published_schema_get_answers_that_match_it(server, tmp_path):
    """schemathesis, from ``/docs.json``: no 5xx, every answer matches the documented
    schema (the error envelope included), and no schema-valid request is refused."""
    import subprocess
    import sys

    schemathesis = Path(sys.executable).parent / "schemathesis"
    completed = subprocess.run(
        [str(schemathesis), "run", f"{server['url']}/docs.json", "--max-examples", "50", "--generation-deterministic",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache stays out of the repo
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-4000:]
    # Warnings may remain (a random campaign id is a documented 404), failures may not.
    assert "FAILURES" not in completed.stdout and " passed" in completed.stdout, completed.stdout[-4000:]


def test_the_store_down_is_a_503_and_the_service_recovers(server, world):
    redis = world["redis"]
    redis.stop()
    try:
        down = post(server, "/recommend", {"user_id": "u0001", "k": 5, "context": CONTEXT})
        assert down.status_code == 503, down.text
        assert down.headers["Retry-After"] == "1" and "online feature store" in down.json()["error"]
        assert requests.get(f"{server['url']}/readyz", timeout=30).status_code == 503
        assert requests.get(f"{server['url']}/livez", timeout=30).status_code == 200
    finally:
        redis.start()
    with open_store(redis.url) as store:  # a restarted Redis is empty: the asset publishes again
        store.publish(NAMESPACE, "day3", store_entities(world["users"], world["items"], {"u0001": HISTORY}))
    deadline = time.monotonic() + 10
    while requests.get(f"{server['url']}/readyz", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "not ready again 10 s after Redis came back"
        time.sleep(0.2)
    assert post(server, "/recommend", {"user_id": "u0001", "k": 5, "context": CONTEXT}).status_code == 200


def test_a_promoted_model_is_swapped_in_under_load_without_a_failed_request(server, world):
    outcomes: list[tuple[int, str]] = []
    stop = threading.Event()

    def client(user: int) -> None:
        session = requests.Session()
        while not stop.is_set():
            body = {"user_id": f"u{user:04d}", "k": 10, "context": CONTEXT}
            try:
                response = session.post(f"{server['url']}/recommend", json=body, timeout=10)
                outcomes.append((response.status_code, response.json().get("model_version", response.text)))
            except requests.RequestException as error:
                outcomes.append((0, repr(error)))
            time.sleep(0.08)  # 4 clients: about 50 requests/s

    threads = [threading.Thread(target=client, args=(user,)) for user in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        (world["root"] / "pinned").write_text(world["tags"][1])  # what the bento_model asset does on promotion
        deadline = time.monotonic() + 60
        while sum(1 for _, version in outcomes[-20:] if version == "online-v2") < 20:
            assert time.monotonic() < deadline, f"not swapped after 60 s: {outcomes[-5:]}"
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    failures = [outcome for outcome in outcomes if outcome[0] != 200]
    assert not failures, failures[:5]
    versions = [version for _, version in outcomes]
    assert versions[0] == "online-v1" and versions[-1] == "online-v2" and len(outcomes) > 50
    info = post(server, "/model_info", {}).json()
    assert info["bento_model_tag"] == world["tags"][1] and info["swaps"] == 1


def test_every_answer_is_logged_and_the_last_ones_are_flushed_on_shutdown(server, world):
    sent = []
    for user in range(5):
        response = post(server, "/recommend", {"user_id": f"u{user:04d}", "k": 3, "context": CONTEXT})
        sent.append(response.json()["request_id"])
    response = post(server, "/predict", {"rows": [{"user_id": "u0001", "item_id": "i0007", **CONTEXT}]})
    sent.append(response.json()["request_id"])
    server["stop"]()  # graceful: SIGTERM; the loggers flush what they still hold
    logged = {}
    for path in (world["root"] / "lake" / "landing" / "prediction_logs" / NAMESPACE).glob("dt=*/*.jsonl"):
        for line in filter(None, path.read_text(encoding="utf-8").split("\n")):  # JSON lines: "\n" only
            record = json.loads(line)
            logged[record["request_id"]] = record
    assert set(sent) <= set(logged)
    last = logged[sent[-1]]
    assert last["endpoint"] == "predict" and last["items"] == ["i0007"] and len(last["scores"]) == 1
    assert last["features"]["user_events_7d"] is not None and last["model_version"] == "online-v2"
    assert np.isfinite(last["latency_ms"]) and logged[sent[0]]["user_id"] == "u0000"
