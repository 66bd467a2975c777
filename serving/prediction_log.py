"""Prediction logs, the writing side: one record per request, and a logger that never
blocks the request that logs it.

``build_record`` gives a record its fixed schema (``PREDICTION_LOG_COLUMNS``);
``PredictionLogger.log`` puts it on a bounded queue and returns at once (False when the
queue is full: the record is dropped and counted). A daemon thread writes what is queued
as new JSON-lines files, never appending (object stores cannot)::

    <lake_root>/landing/prediction_logs/<source>/dt=YYYY-MM-DD/part-<host>-<pid>-<seq>-<uuid>.jsonl

each record in the folder of its ``logged_at`` day (UTC). On a local lake a file is
written under a hidden temporary name and renamed, so a reader never sees half of one; on
S3 one put is atomic. ``serving.prediction_log_reader`` reads the days back.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import posixpath
import queue
import re
import socket
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs

from reclake.lake import Lake

ENDPOINTS = ("recommend", "predict", "bid")

# Column -> kind of a prediction log record, in the order the writer puts them. Kinds:
# ``string``, ``timestamp`` (ISO 8601 text with a time zone), ``float``, ``object`` (a
# JSON object), ``float[]`` and ``string[]`` (JSON arrays); ``?`` marks a nullable column.
PREDICTION_LOG_COLUMNS: dict[str, str] = {
    "request_id": "string",
    "logged_at": "timestamp",
    "endpoint": "string",
    "model_version": "string",
    "arm": "string?",
    "user_id": "string?",
    "features": "object",
    "scores": "float[]",
    "items": "string[]",
    "fallback": "string?",
    "latency_ms": "float",
    "shadow_of": "string?",
}

# A batch whose write failed is tried again at the next flushes, this many times in all.
MAX_WRITE_ATTEMPTS = 3


def format_logged_at(moment: dt.datetime) -> str:
    """``moment`` (time-zone aware) as UTC ISO 8601 with milliseconds: ``2024-03-01T12:00:00.123Z``.

    Raises:
        ValueError: when ``moment`` has no time zone.
    """
    if moment.tzinfo is None:
        raise ValueError(f"logged_at {moment} has no time zone; pass an aware datetime (UTC)")
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_logged_at(value: str) -> dt.datetime:
    """An ISO 8601 timestamp with a time zone, as an aware UTC datetime.

    Raises:
        ValueError: when ``value`` is not such a timestamp (a naive one included).
    """
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return moment.astimezone(dt.UTC)


def build_record(
    *,
    endpoint: str,
    model_version: str,
    features: Mapping[str, Any],
    scores: Iterable[float],
    latency_ms: float,
    items: Iterable[str] = (),
    user_id: str | None = None,
    arm: str | None = None,
    fallback: str | None = None,
    request_id: str | None = None,
    logged_at: dt.datetime | None = None,
    shadow_of: str | None = None,
) -> dict[str, Any]:
    """One prediction log record, its keys those of ``PREDICTION_LOG_COLUMNS`` in order.

    Args:
        endpoint: ``recommend``, ``predict`` or ``bid``.
        model_version: the served model's version.
        features: the features the model was given (column -> value).
        scores: the scores returned, in the order of ``items`` when there are items.
        latency_ms: the request's latency in milliseconds.
        items: the item ids shown or scored (may be empty).
        user_id: the user the request was for, if any (ids are kept as text).
        arm: the experiment arm that served the request, if any.
        fallback: the fallback used instead of the model (``popularity``), if any.
        request_id: the request's id; default a new UUID4 (hex).
        logged_at: when the request was served (aware datetime); default now.
        shadow_of: for a shadow arm's answer (scored, never served): the ``request_id``
            of the answer that was served; None for a served answer.

    Raises:
        ValueError: for an unknown endpoint or a naive ``logged_at``.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint {endpoint!r} is not one of {', '.join(ENDPOINTS)}")
    return {
        "request_id": request_id or uuid.uuid4().hex,
        "logged_at": format_logged_at(logged_at or dt.datetime.now(dt.UTC)),
        "endpoint": endpoint,
        "model_version": str(model_version),
        "arm": None if arm is None else str(arm),
        "user_id": None if user_id is None else str(user_id),
        "features": dict(features),
        "scores": [float(score) for score in scores],
        "items": [str(item) for item in items],
        "fallback": fallback,
        "latency_ms": float(latency_ms),
        "shadow_of": shadow_of,
    }


@dataclass
class _Pending:
    """Records of one day whose write failed, waiting for another attempt."""

    day: dt.date
    records: list[dict[str, Any]]
    attempts: int


class PredictionLogger:
    """Writes prediction log records to the lake from a background thread.

    Args:
        lake_root: fsspec URL of the lake (a local folder or ``s3://bucket/prefix``).
        source: the source the served model was trained on (a folder of the layout).
        storage_options: keyword arguments of the fsspec filesystem (for S3 on another
            endpoint: ``{"client_kwargs": {"endpoint_url": ...}}``).
        max_queue: records that may wait to be written; beyond it ``log`` drops them.
        flush_interval_s: the writer writes what is queued this often ...
        max_batch: ... or as soon as this many records wait; a file holds at most this
            many records.

    The writer thread starts at once and is a daemon; call ``close`` on shutdown to write
    what is still queued. Nothing is registered globally (no ``atexit``): the caller
    decides. A write error never stops the writer: it is counted, the batch is tried
    again at the next flushes (``MAX_WRITE_ATTEMPTS`` in all, while at most ``max_queue``
    records wait for a retry) and then dropped and counted.
    """

    def __init__(
        self,
        lake_root: str,
        source: str,
        storage_options: dict[str, Any] | None = None,
        max_queue: int = 10_000,
        flush_interval_s: float = 2.0,
        max_batch: int = 5_000,
    ) -> None:
        if max_queue < 1 or max_batch < 1 or flush_interval_s <= 0:
            raise ValueError("max_queue and max_batch must be at least 1 and flush_interval_s positive")
        self._lake = Lake(root=lake_root, storage_options=dict(storage_options or {}))
        self._fs, _ = url_to_fs(lake_root, **self._lake.storage_options)
        protocols = self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
        self._local = "file" in protocols
        self._source = source
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._flush_interval_s = flush_interval_s
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self._host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
        self._sequence = itertools.count()
        self._pending: list[_Pending] = []  # the writer thread's only
        # Guards the counters and ``_closing``; never held across I/O.
        self._lock = threading.Lock()
        self._counts = {"logged": 0, "written": 0, "dropped": 0, "files": 0, "write_errors": 0}
        self._last_error: str | None = None
        self._closing = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"prediction-logger-{source}", daemon=True)
        self._thread.start()

    # ---- the request side ------------------------------------------------------------
    def log(self, record: Mapping[str, Any]) -> bool:
        """Queue ``record`` (a ``build_record`` dict) for writing; never blocks.

        Returns:
            True when queued; False when the queue is full or the logger is closed (the
            record is dropped and counted in ``stats()["dropped"]``).
        """
        with self._lock:
            if not self._closing:
                try:
                    self._queue.put_nowait(dict(record))
                except queue.Full:
                    pass
                else:
                    self._counts["logged"] += 1
                    if self._queue.qsize() >= self._max_batch:
                        self._wake.set()
                    return True
            self._counts["dropped"] += 1
            return False

    def stats(self) -> dict[str, Any]:
        """Counters since construction: ``logged`` (accepted by ``log``), ``written``,
        ``dropped`` (queue full, logger closed, or given up after write errors),
        ``files``, ``write_errors``, ``queued``, ``pending_retry`` and ``last_error``
        (text of the last write error, or None)."""
        with self._lock:
            counts = dict(self._counts)
            last_error = self._last_error
        pending = sum(len(p.records) for p in list(self._pending))
        return {**counts, "queued": self._queue.qsize(), "pending_retry": pending, "last_error": last_error}

    def close(self, timeout_s: float = 10) -> bool:
        """Write everything still queued and stop the writer; later ``log`` calls drop.

        Idempotent. Returns True when the writer finished within ``timeout_s`` seconds
        (False: it is still busy, e.g. on a hanging store; it is a daemon thread).
        """
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- the writer thread -----------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            with self._lock:
                closing = self._closing  # no record is queued after this turns True
            self._flush()
            if closing:
                while self._pending:  # each pass spends one attempt of every pending batch
                    self._flush()
                return

    def _flush(self) -> None:
        """Retry the pending batches, then write every queued record, by day."""
        retry, self._pending = self._pending, []
        for pending in retry:
            self._write(pending.day, pending.records, pending.attempts)
        while True:
            batch = self._drain()
            for day, records in _by_day(batch).items():
                self._write(day, records, 0)
            if len(batch) < self._max_batch:
                return

    def _drain(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, day: dt.date, records: list[dict[str, Any]], attempts: int) -> None:
        """Write one day's records as a new file; on failure keep them for a retry or drop them."""
        try:
            self._write_file(day, records)
        except Exception as error:  # noqa: BLE001 - the writer must outlive any store error
            attempts += 1
            waiting = sum(len(p.records) for p in self._pending)
            give_up = attempts >= MAX_WRITE_ATTEMPTS or waiting + len(records) > self._max_queue
            with self._lock:
                self._counts["write_errors"] += 1
                self._last_error = f"{type(error).__name__}: {error}"
                if give_up:
                    self._counts["dropped"] += len(records)
            if not give_up:
                self._pending.append(_Pending(day, records, attempts))
            return
        with self._lock:
            self._counts["written"] += len(records)
            self._counts["files"] += 1

    def _write_file(self, day: dt.date, records: list[dict[str, Any]]) -> None:
        folder = self._lake.prediction_log_dir(self._source, day)
        name = f"part-{self._host}-{os.getpid()}-{next(self._sequence):08d}-{uuid.uuid4().hex[:8]}.jsonl"
        data = "".join(_json_line(record) + "\n" for record in records).encode("utf-8")
        path = posixpath.join(folder, name)
        if self._local:
            # Hidden while written (readers skip names starting with "."), then renamed.
            self._fs.makedirs(folder, exist_ok=True)
            temporary = posixpath.join(folder, f".{name}.tmp")
            self._fs.pipe_file(temporary, data)
            self._fs.mv(temporary, path)
        else:
            self._fs.pipe_file(path, data)  # one PUT: the object appears whole or not at all


def _by_day(records: list[dict[str, Any]]) -> dict[dt.date, list[dict[str, Any]]]:
    """Records grouped by their ``logged_at`` day (UTC); a record without a readable
    ``logged_at`` goes to today's folder, where the reader quarantines it."""
    days: dict[dt.date, list[dict[str, Any]]] = {}
    for record in records:
        try:
            day = parse_logged_at(record["logged_at"]).date()
        except (KeyError, TypeError, ValueError):
            day = dt.datetime.now(dt.UTC).date()
        days.setdefault(day, []).append(record)
    return days


def _json_line(record: Mapping[str, Any]) -> str:
    """A record as one JSON line: the schema's columns first, in order, then any others."""
    ordered = {column: record[column] for column in PREDICTION_LOG_COLUMNS if column in record}
    ordered.update({key: value for key, value in record.items() if key not in ordered})
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, default=_jsonable)


def _jsonable(value: Any) -> Any:
    """JSON for what ``json`` cannot write: NumPy scalars and arrays, dates, else text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)
