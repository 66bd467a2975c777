"""The online feature store: per-entity feature rows the service looks up by id.

One interface (``OnlineStore``), two implementations chosen by a URL (``open_store``):

- ``RedisStore`` (``redis://host:port/db``, also ``rediss://`` and ``unix://``): a real
  Redis (6.2 or newer: the flip is ``SET ... GET``) shared by every serving replica;
- ``EmbeddedStore`` (``sqlite:///abs/path.sqlite`` or a plain filesystem path): one SQLite
  file in WAL mode, the default of a single machine.

Both hold, per *namespace* (the source name), versioned key spaces of rows
(``entity -> id -> {feature: value}``) and one *served* version. ``publish`` writes a
whole new version, then flips the served version to it atomically (a reader sees the old
version or the new one, never a mix), then lets older versions expire. ``get_many``, the
request hot path, reads the served version's rows in one round trip.

Redis key scheme (``<x>`` are placeholders, not Redis Cluster hash tags)::

    reclake:<namespace>:served                      string: the served version
    reclake:<namespace>:versions                    sorted set: published versions, score = publish time
    reclake:<namespace>:v:<version>:<entity>        hash: id -> JSON row
    reclake:<namespace>:v:<version>:entities        set: the entities <version> holds
    reclake:<namespace>:counter:<key>               string: a float counter (INCRBYFLOAT)

SQLite tables: ``served(namespace, version, published_at)``, ``versions(namespace,
version, published_at, expires_at)``, ``feature_rows(namespace, version, entity, id,
value)`` and ``counters(namespace, key, value)``.

Rows travel as JSON objects (``encode_row`` / ``decode_row``, the one place of the
encoding): values are ``str``, ``int``, ``float``, ``None`` or lists of ``str``.
Every method raises ``StoreUnavailable`` when the store cannot be reached, fast (Redis:
0.5 s socket timeouts and one immediate retry, so a restarted server is reconnected to
by the next call).
"""

from __future__ import annotations

import abc
import datetime as dt
import decimal
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

Rows = Mapping[str, Mapping[str, Mapping[str, Any]]]
"""``{entity: {id: {feature: value}}}``, what ``publish`` takes."""

DEFAULT_KEEP_PREVIOUS_S = 3600


class StoreUnavailable(RuntimeError):
    """The online store cannot be reached (Redis down, refused or timing out; the
    embedded file missing) or holds no published version; the message says what to do."""


@dataclass(frozen=True)
class PublishStats:
    """What one ``publish`` wrote.

    Attributes:
        version: the version now served.
        keys: rows (entity ids) written, over all entities.
        bytes: encoded bytes written (ids plus JSON rows).
        seconds: wall time of the publish, flip and expiry included.
    """

    version: str
    keys: int
    bytes: int
    seconds: float


# ---- the one encoding of a row ------------------------------------------------------


def encode_row(row: Mapping[str, Any]) -> str:
    """A row as compact JSON. Raises ``TypeError`` / ``ValueError`` for values JSON
    cannot carry (numpy scalars, NaN): convert them before publishing."""
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_row(text: str | bytes) -> dict[str, Any]:
    """The row ``encode_row`` wrote."""
    return json.loads(text)


def json_native(value: Any) -> Any:
    """``value`` as a type ``encode_row`` takes: numpy scalars and arrays, tuples,
    decimals and dates (what DuckDB and pandas return) become ``int`` / ``float`` /
    ``str`` / ``list``; NaN and pandas' missing values become None."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if type(value).__name__ in {"NAType", "NaTType"}:  # pandas.NA, pandas.NaT
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "ndarray":
        return [json_native(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return json_native(float(value))
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if hasattr(value, "item"):  # a numpy scalar
        return json_native(value.item())
    raise TypeError(f"not a JSON-native feature value: {value!r} ({type(value).__name__})")


def _encoded(rows: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    for entity_id, row in rows.items():
        yield str(entity_id), encode_row(row)


def _chunks(pairs: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    chunk: list[tuple[str, str]] = []
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ---- the interface ------------------------------------------------------------------


class OnlineStore(abc.ABC):
    """Versioned per-entity feature rows, one served version per namespace."""

    @abc.abstractmethod
    def publish(
        self, namespace: str, version: str, entities: Rows, keep_previous_s: int = DEFAULT_KEEP_PREVIOUS_S
    ) -> PublishStats:
        """Write every row of ``entities`` (``{"user": {id: {feature: value}}, ...}``)
        under ``version`` of ``namespace``, then serve ``version`` (an atomic flip), then
        expire older versions: the previously served one after ``keep_previous_s``
        seconds (readers that cached it keep working meanwhile), older ones now.

        A publish that fails before the flip leaves the served version as it was and
        removes what it wrote. Publishing the served version again overwrites its rows in
        place (a retried step). Returns what was written.
        """

    @abc.abstractmethod
    def served_version(self, namespace: str) -> str | None:
        """The version ``get_many`` reads for ``namespace``; None before any publish."""

    def reading_version(self, namespace: str) -> str | None:
        """The version ``get_many`` reads now: the served one, possibly as cached by this
        client for up to a second (Redis). Rows of a version never change, so callers may
        cache them under it."""
        return self.served_version(namespace)

    @abc.abstractmethod
    def get_many(self, namespace: str, entity: str, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Rows of the served version for ``ids`` of ``entity``, aligned with ``ids``;
        None for an id the version does not hold. One round trip; thread-safe.

        Raises:
            StoreUnavailable: the store cannot be reached or ``namespace`` has no
                published version.
        """

    @abc.abstractmethod
    def incr_float(self, namespace: str, key: str, amount: float) -> float:
        """Add ``amount`` to the counter ``key`` (0.0 when new), atomically for every
        process sharing the store; returns the new value."""

    @abc.abstractmethod
    def get_float(self, namespace: str, key: str) -> float:
        """The counter ``key``'s value; 0.0 when it was never incremented."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Return when the store answers; raise ``StoreUnavailable`` otherwise."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store is, for ``/readyz`` and metadata (no password)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the object is not used afterwards."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _nothing_published(self, namespace: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"the online store {self.describe()} holds no published version of {namespace!r}: "
            "materialize the online_features asset first"
        )


def open_store(url: str, **options: Any) -> OnlineStore:
    """The store ``url`` names: ``redis://host:port/db`` (also ``rediss://``,
    ``unix://``) -> ``RedisStore``; ``sqlite:///abs/path.sqlite`` or a plain filesystem
    path -> ``EmbeddedStore``. ``options`` go to the implementation's constructor.

    Raises:
        ValueError: a URL of another scheme.
    """
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, **options)
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        return EmbeddedStore("/" + path.lstrip("/") if path.startswith("/") else path, **options)
    if "://" in url:
        raise ValueError(f"not an online store URL: {url!r} (redis://host:port/db, sqlite:///path or a path)")
    return EmbeddedStore(url, **options)


# ---- Redis --------------------------------------------------------------------------

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class RedisStore(OnlineStore):
    """The online store in a Redis server (key scheme in the module docstring).

    Args:
        url: ``redis://host:port/db``.
        timeout_s: connect and read timeout of every call but ``publish``'s.
        publish_timeout_s: read timeout of ``publish``'s pipelines.
        served_cache_s: how long ``get_many`` reuses the served version it read (so a
            lookup is one ``HMGET``); a flip published by another process is seen after
            at most this long. 0 reads it every time.
        chunk_rows: rows per ``HSET`` while publishing.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 0.5,
        publish_timeout_s: float = 30.0,
        served_cache_s: float = 1.0,
        chunk_rows: int = 2_000,
    ) -> None:
        self.url = url
        self.served_cache_s = served_cache_s
        self.chunk_rows = chunk_rows

        def client(read_timeout_s: float) -> redis.Redis:
            return redis.Redis.from_url(
                url,
                socket_connect_timeout=timeout_s,
                socket_timeout=read_timeout_s,
                # One immediate retry: a pooled connection a restarted server dropped is
                # replaced by the next call; a server that is down fails within ~2 timeouts.
                retry=Retry(NoBackoff(), 1),
                decode_responses=True,
            )

        self._client = client(timeout_s)
        self._publisher = client(publish_timeout_s)
        self._served: dict[str, tuple[str, float]] = {}
        kwargs = self._client.connection_pool.connection_kwargs
        self._where = (
            f"unix://{kwargs['path']}" if "path" in kwargs else f"redis://{kwargs.get('host')}:{kwargs.get('port')}"
        ) + f"/{kwargs.get('db', 0)}"

    # keys
    @staticmethod
    def served_key(namespace: str) -> str:
        return f"reclake:{namespace}:served"

    @staticmethod
    def versions_key(namespace: str) -> str:
        return f"reclake:{namespace}:versions"

    @staticmethod
    def rows_key(namespace: str, version: str, entity: str) -> str:
        return f"reclake:{namespace}:v:{version}:{entity}"

    @staticmethod
    def entities_key(namespace: str, version: str) -> str:
        return f"reclake:{namespace}:v:{version}:entities"

    @staticmethod
    def counter_key(namespace: str, key: str) -> str:
        return f"reclake:{namespace}:counter:{key}"

    def _unavailable(self, error: Exception) -> StoreUnavailable:
        return StoreUnavailable(
            f"Redis at {self._where} is unavailable ({type(error).__name__}: {error}): start Redis there "
            "(`make redis`, or `python -m serving.redis_server --port PORT`) or set online_store_url"
        )

    def _version_keys(self, client: redis.Redis, namespace: str, version: str) -> list[str]:
        entities = client.smembers(self.entities_key(namespace, version))
        return [self.rows_key(namespace, version, e) for e in sorted(entities)] + [
            self.entities_key(namespace, version)
        ]

    def publish(
        self, namespace: str, version: str, entities: Rows, keep_previous_s: int = DEFAULT_KEEP_PREVIOUS_S
    ) -> PublishStats:
        started, keys, size = time.perf_counter(), 0, 0
        client = self._publisher
        try:
            republish = client.get(self.served_key(namespace)) == version
            if not republish:  # a clean slate: nothing left of an earlier, failed attempt
                stale = self._version_keys(client, namespace, version)
                client.unlink(*stale, *(self.rows_key(namespace, version, e) for e in entities))
            try:
                if entities:
                    client.sadd(self.entities_key(namespace, version), *entities)
                for entity, rows in entities.items():
                    rows_key = self.rows_key(namespace, version, entity)
                    pipe = client.pipeline(transaction=False)
                    for chunk in _chunks(_encoded(rows), self.chunk_rows):
                        pipe.hset(rows_key, mapping=dict(chunk))
                        keys += len(chunk)
                        size += sum(len(i.encode()) + len(v.encode()) for i, v in chunk)
                        if len(pipe) >= 8:
                            pipe.execute()
                    pipe.execute()
            except BaseException:
                if not republish:
                    try:
                        client.unlink(*self._version_keys(client, namespace, version))
                    except _REDIS_DOWN:
                        pass
                raise
            # The flip: serve the new version and record it, in one MULTI/EXEC.
            flip = client.pipeline(transaction=True)
            flip.set(self.served_key(namespace), version, get=True)
            flip.zadd(self.versions_key(namespace), {version: time.time()})
            for key in self._version_keys(client, namespace, version):
                flip.persist(key)
            previous = flip.execute()[0]
            self._served[namespace] = (version, time.monotonic() + self.served_cache_s)
            # Expiry: the previous version after keep_previous_s, older ones now.
            for old in {*client.zrange(self.versions_key(namespace), 0, -1), *([previous] if previous else [])}:
                if old == version:
                    continue
                old_keys = self._version_keys(client, namespace, old)
                if old == previous and keep_previous_s > 0:
                    expire = client.pipeline(transaction=False)
                    for key in old_keys:
                        expire.expire(key, keep_previous_s)
                    expire.execute()
                else:
                    client.unlink(*old_keys)
                    client.zrem(self.versions_key(namespace), old)
        except _REDIS_DOWN as error:
            raise self._unavailable(error) from error
        return PublishStats(version=version, keys=keys, bytes=size, seconds=time.perf_counter() - started)

    def reading_version(self, namespace: str) -> str | None:
        return self._cached_served_version(namespace)

    def served_version(self, namespace: str) -> str | None:
        try:
            return self._client.get(self.served_key(namespace))
        except _REDIS_DOWN as error:
            raise self._unavailable(error) from error

    def _cached_served_version(self, namespace: str) -> str:
        cached = self._served.get(namespace)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        version = self.served_version(namespace)
        if version is None:
            raise self._nothing_published(namespace)
        self._served[namespace] = (version, time.monotonic() + self.served_cache_s)
        return version

    def get_many(self, namespace: str, entity: str, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        version = self._cached_served_version(namespace)
        if not ids:
            return []
        try:
            values = self._client.hmget(self.rows_key(namespace, version, entity), list(ids))
        except _REDIS_DOWN as error:
            raise self._unavailable(error) from error
        return [None if value is None else decode_row(value) for value in values]

    def incr_float(self, namespace: str, key: str, amount: float) -> float:
        try:
            return float(self._client.incrbyfloat(self.counter_key(namespace, key), amount))
        except _REDIS_DOWN as error:
            raise self._unavailable(error) from error

    def get_float(self, namespace: str, key: str) -> float:
        try:
            value = self._client.get(self.counter_key(namespace, key))
        except _REDIS_DOWN as error:
            raise self._unavailable(error) from error
        return 0.0 if value is None else float(value)

    def ping(self) -> None:
        try:
            self._client.ping()
        except _REDIS_DOWN as error:
            raise self._unavailable(error) from error

    def describe(self) -> str:
        return self._where

    def close(self) -> None:
        self._client.close()
        self._publisher.close()


# ---- SQLite -------------------------------------------------------------------------

_SCHEMA = """
create table if not exists served (
    namespace text primary key, version text not null, published_at real not null
);
create table if not exists versions (
    namespace text not null, version text not null, published_at real not null, expires_at real,
    primary key (namespace, version)
);
create table if not exists feature_rows (
    namespace text not null, version text not null, entity text not null, id text not null, value text not null,
    primary key (namespace, version, entity, id)
) without rowid;
create table if not exists counters (
    namespace text not null, key text not null, value real not null, primary key (namespace, key)
);
"""

_GET_MANY = """
select id, value from feature_rows
where namespace = ?1 and entity = ?2
    and version = (select version from served where namespace = ?1)
    and id in (select value from json_each(?3))
"""


class EmbeddedStore(OnlineStore):
    """The online store in one SQLite file (WAL mode; one connection per thread), shared
    by the processes of one machine. ``publish`` and the counters create the file; the
    lookups (``get_many``, ``served_version``, ``ping``) of a missing file raise
    ``StoreUnavailable``.

    Args:
        path: the SQLite file.
        busy_timeout_s: how long a writer waits for another process's write lock.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _unavailable(self, what: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"the embedded online store {self.path} {what}: materialize the online_features asset "
            "(or point online_store_url at the store the pipeline publishes to)"
        )

    def _connection(self, create: bool = False) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            if not create and not self.path.is_file():
                raise self._unavailable("does not exist")
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                connection = sqlite3.connect(
                    self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
                )
                connection.execute("pragma journal_mode=wal")
                connection.execute("pragma synchronous=normal")
            except sqlite3.Error as error:
                raise self._unavailable(f"cannot be opened ({error})") from error
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        if create and not getattr(self._local, "schema", False):
            connection.executescript(_SCHEMA)
            self._local.schema = True
        return connection

    def _read(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as error:  # no tables yet, a locked or broken file
            raise self._unavailable(f"cannot be read ({error})") from error

    def publish(
        self, namespace: str, version: str, entities: Rows, keep_previous_s: int = DEFAULT_KEEP_PREVIOUS_S
    ) -> PublishStats:
        started, counted = time.perf_counter(), {"keys": 0, "bytes": 0}
        connection = self._connection(create=True)

        def parameters() -> Iterator[tuple[str, str, str, str, str]]:
            for entity, rows in entities.items():
                for entity_id, value in _encoded(rows):
                    counted["keys"] += 1
                    counted["bytes"] += len(entity_id.encode()) + len(value.encode())
                    yield namespace, version, entity, entity_id, value

        # The rows, in one transaction: readers keep reading the served version meanwhile.
        connection.execute("begin immediate")
        try:
            served = connection.execute("select version from served where namespace = ?", [namespace]).fetchone()
            if served is None or served[0] != version:
                connection.execute("delete from feature_rows where namespace = ? and version = ?", [namespace, version])
            connection.executemany(
                "insert or replace into feature_rows (namespace, version, entity, id, value) values (?, ?, ?, ?, ?)",
                parameters(),
            )
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
        # The flip, then the expiry, in a second short transaction.
        now = time.time()
        connection.execute("begin immediate")
        try:
            previous = connection.execute("select version from served where namespace = ?", [namespace]).fetchone()
            connection.execute(
                "insert into served (namespace, version, published_at) values (?, ?, ?) "
                "on conflict (namespace) do update set version = excluded.version, published_at = excluded.published_at",
                [namespace, version, now],
            )
            connection.execute(
                "insert into versions (namespace, version, published_at, expires_at) values (?, ?, ?, null) "
                "on conflict (namespace, version) do update set published_at = excluded.published_at, expires_at = null",
                [namespace, version, now],
            )
            # Every other version expires now, but the previous one after keep_previous_s.
            connection.execute(
                "update versions set expires_at = ? where namespace = ? and version != ? "
                "and (expires_at is null or expires_at > ?)",
                [now, namespace, version, now],
            )
            if previous is not None and previous[0] != version and keep_previous_s > 0:
                connection.execute(
                    "update versions set expires_at = ? where namespace = ? and version = ?",
                    [now + keep_previous_s, namespace, previous[0]],
                )
            self._purge_expired(connection, namespace, now)
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
        return PublishStats(
            version=version, keys=counted["keys"], bytes=counted["bytes"], seconds=time.perf_counter() - started
        )

    @staticmethod
    def _purge_expired(connection: sqlite3.Connection, namespace: str, now: float) -> None:
        expired = connection.execute(
            "select version from versions where namespace = ? and expires_at <= ?", [namespace, now]
        ).fetchall()
        for (version,) in expired:
            connection.execute("delete from feature_rows where namespace = ? and version = ?", [namespace, version])
            connection.execute("delete from versions where namespace = ? and version = ?", [namespace, version])

    def purge_expired(self, namespace: str) -> int:
        """Delete the rows of ``namespace``'s versions whose time ran out (``publish``
        does it too); returns how many versions went."""
        connection = self._connection(create=True)
        connection.execute("begin immediate")
        try:
            before = connection.execute("select count(*) from versions where namespace = ?", [namespace]).fetchone()[0]
            self._purge_expired(connection, namespace, time.time())
            after = connection.execute("select count(*) from versions where namespace = ?", [namespace]).fetchone()[0]
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
        return before - after

    def served_version(self, namespace: str) -> str | None:
        rows = self._read("select version from served where namespace = ?", [namespace])
        return rows[0][0] if rows else None

    def get_many(self, namespace: str, entity: str, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        keys = [str(i) for i in ids]
        found = dict(self._read(_GET_MANY, [namespace, entity, json.dumps(keys)]))
        if not found and self.served_version(namespace) is None:
            raise self._nothing_published(namespace)
        return [None if (value := found.get(key)) is None else decode_row(value) for key in keys]

    def incr_float(self, namespace: str, key: str, amount: float) -> float:
        connection = self._connection(create=True)
        # One statement: SQLite runs it as its own write transaction, serialized across processes.
        (value,) = connection.execute(
            "insert into counters (namespace, key, value) values (?, ?, ?) "
            "on conflict (namespace, key) do update set value = value + excluded.value returning value",
            [namespace, key, float(amount)],
        ).fetchall()[0]  # fetch to the end: the statement (and its write lock) finishes
        return float(value)

    def get_float(self, namespace: str, key: str) -> float:
        self._connection(create=True)  # counters start at 0.0 in a new file
        rows = self._read("select value from counters where namespace = ? and key = ?", [namespace, key])
        return float(rows[0][0]) if rows else 0.0

    def ping(self) -> None:
        self._read("select count(*) from served", [])

    def describe(self) -> str:
        return f"embedded sqlite {self.path}"

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()
