"""Prediction logs: the service's non-blocking logger, the day reader and the
``prediction_logs`` asset, on a real local lake (and one round trip through S3)."""

import datetime as dt
import json
import posixpath
import threading
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from conftest import make_settings
from test_s3_lake import BUCKET, s3_endpoint  # noqa: F401 - the moto server fixture

from reclake.lake import Lake
from serving.prediction_log import PREDICTION_LOG_COLUMNS, PredictionLogger, build_record
from serving.prediction_log_reader import (
    QUARANTINE_COLUMNS,
    compact_prediction_logs,
    prediction_log_schema,
    read_prediction_logs,
)

SOURCE = "synthetic"
DAY = dt.date(2024, 3, 1)
NOON = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)


def _record(i: int, at: dt.datetime = NOON, **overrides) -> dict:
    fields = {
        "endpoint": "recommend",
        "model_version": "v1",
        "features": {"user_id": f"u{i}", "hour_of_day": 12, "price": 1.5},
        "scores": [0.9, 0.5],
        "items": ["i1", "i2"],
        "user_id": f"u{i}",
        "latency_ms": 3.25,
        "request_id": f"r{i}",
        "logged_at": at,
        **overrides,
    }
    return build_record(**fields)


def _day_files(root: Path, day: dt.date) -> list[Path]:
    return sorted(Path(Lake(str(root)).prediction_log_dir(SOURCE, day)).glob("*"))


def _wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.unit
def test_a_record_has_the_schema_columns_and_a_utc_millisecond_timestamp():
    local = dt.datetime(2024, 3, 1, 14, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    record = _record(1, at=local, arm="b", user_id=7)
    assert list(record) == list(PREDICTION_LOG_COLUMNS)
    assert record["logged_at"] == "2024-03-01T12:00:00.123Z"
    assert (record["user_id"], record["arm"], record["fallback"]) == ("7", "b", None)
    assert prediction_log_schema().names == list(PREDICTION_LOG_COLUMNS)
    with pytest.raises(ValueError, match="endpoint"):
        _record(1, endpoint="rank")
    with pytest.raises(ValueError, match="time zone"):
        _record(1, at=dt.datetime(2024, 3, 1))


@pytest.mark.unit
def test_records_logged_from_several_threads_are_all_written_after_close(tmp_path):
    logger = PredictionLogger(str(tmp_path), SOURCE, max_batch=150, flush_interval_s=0.05)
    threads = [
        threading.Thread(target=lambda t=t: [logger.log(_record(t * 1000 + i)) for i in range(400)]) for t in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert logger.close() is True
    stats = logger.stats()
    assert (stats["logged"], stats["written"], stats["dropped"], stats["write_errors"]) == (2400, 2400, 0, 0)
    assert stats["files"] == len(_day_files(tmp_path, DAY)) > 1
    logs = read_prediction_logs(str(tmp_path), SOURCE, DAY)
    assert sorted(logs.rows["request_id"]) == sorted(f"r{t * 1000 + i}" for t in range(6) for i in range(400))
    assert logs.quarantined.empty
    assert logger.close() is True  # idempotent
    assert logger.log(_record(99_999)) is False and logger.stats()["dropped"] == 1


@pytest.mark.unit
def test_log_never_blocks_when_the_queue_is_full(tmp_path):
    # The writer sleeps an hour between flushes and max_batch exceeds the queue, so
    # nothing drains the queue until close(): it fills after 10 records.
    logger = PredictionLogger(str(tmp_path), SOURCE, max_queue=10, flush_interval_s=3600, max_batch=5000)
    records = [_record(i) for i in range(1000)]
    accepted, slowest = [], 0.0
    started = time.perf_counter()
    for record in records:
        before = time.perf_counter()
        accepted.append(logger.log(record))
        slowest = max(slowest, time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    assert accepted == [True] * 10 + [False] * 990
    assert slowest < 0.05 and elapsed < 0.5, (slowest, elapsed)
    stats = logger.stats()
    assert (stats["logged"], stats["dropped"], stats["queued"], stats["written"]) == (10, 990, 10, 0)
    assert logger.close(timeout_s=10) is True
    assert logger.stats()["written"] == 10
    assert sorted(read_prediction_logs(str(tmp_path), SOURCE, DAY).rows["request_id"]) == sorted(
        f"r{i}" for i in range(10)
    )


@pytest.mark.unit
def test_records_spanning_midnight_go_to_two_day_folders(tmp_path):
    midnight = dt.datetime(2024, 3, 2, tzinfo=dt.UTC)
    with PredictionLogger(str(tmp_path), SOURCE, flush_interval_s=3600) as logger:  # one batch, at close
        for i, offset_ms in enumerate([-1500, -1, 0, 700]):
            assert logger.log(_record(i, at=midnight + dt.timedelta(milliseconds=offset_ms)))
    assert logger.stats()["files"] == 2
    first, second = (read_prediction_logs(str(tmp_path), SOURCE, day) for day in (DAY, DAY + dt.timedelta(days=1)))
    assert first.rows["request_id"].tolist() == ["r0", "r1"] and len(first.files) == 1
    assert second.rows["request_id"].tolist() == ["r2", "r3"] and len(second.files) == 1
    assert str(first.rows["logged_at"].iloc[-1]) == "2024-03-01 23:59:59.999000+00:00"


@pytest.mark.unit
def test_no_partial_file_is_ever_visible(tmp_path):
    """A reader listing the folder while the logger writes big files parses every part it
    sees in full; only hidden temporary names can be incomplete."""
    big = {f"f{j}": "x" * 200 for j in range(50)}  # ~10 kB a record
    logger = PredictionLogger(str(tmp_path), SOURCE, max_batch=40, flush_interval_s=0.01)
    folder = Path(Lake(str(tmp_path)).prediction_log_dir(SOURCE, DAY))
    stop, checked, failures = threading.Event(), set(), []

    def read_while_written():
        while not stop.is_set():
            for path in folder.glob("*.jsonl") if folder.exists() else []:
                try:
                    lines = path.read_text().splitlines()
                    assert lines and all(json.loads(line)["request_id"] for line in lines)
                    checked.add(path.name)
                except Exception as error:  # noqa: BLE001 - collected, asserted below
                    failures.append(f"{path.name}: {error!r}")

    reader = threading.Thread(target=read_while_written)
    reader.start()
    for i in range(1200):
        logger.log(_record(i, features=big))
        if i % 100 == 0:
            time.sleep(0.01)
    assert logger.close() is True
    stop.set()
    reader.join()
    assert not failures, failures[:3]
    assert len(checked) > 5
    assert logger.stats()["written"] == 1200
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".jsonl")] == []  # no temporary left


@pytest.mark.unit
def test_a_write_error_is_counted_and_the_batch_written_once_the_store_recovers(tmp_path):
    blocker = tmp_path / "landing"
    blocker.write_text("a file where the landing folder should be")
    logger = PredictionLogger(str(tmp_path), SOURCE, flush_interval_s=0.5)
    for i in range(5):
        assert logger.log(_record(i))
    _wait_for(lambda: logger.stats()["write_errors"] >= 1)
    blocker.unlink()
    _wait_for(lambda: logger.stats()["written"] == 5)
    assert logger.close() is True
    stats = logger.stats()
    assert (stats["write_errors"], stats["dropped"], stats["files"]) == (1, 0, 1)
    assert stats["last_error"]
    assert len(read_prediction_logs(str(tmp_path), SOURCE, DAY).rows) == 5


@pytest.mark.unit
def test_a_batch_that_keeps_failing_is_dropped_and_counted_and_the_writer_lives_on(tmp_path):
    (tmp_path / "landing").write_text("blocks the landing folder")
    logger = PredictionLogger(str(tmp_path), SOURCE, flush_interval_s=3600)
    for i in range(5):
        logger.log(_record(i))
    assert logger.close() is True  # tries the batch MAX_WRITE_ATTEMPTS times, then gives up
    stats = logger.stats()
    assert (stats["written"], stats["dropped"], stats["write_errors"], stats["pending_retry"]) == (0, 5, 3, 0)
    assert "Error" in stats["last_error"]


@pytest.mark.unit
def test_the_reader_quarantines_bad_lines_with_file_line_field_and_reason(tmp_path):
    with PredictionLogger(str(tmp_path), SOURCE) as logger:
        for i in range(3):
            logger.log(_record(i))
    folder = Path(Lake(str(tmp_path)).prediction_log_dir(SOURCE, DAY))
    good = json.dumps(_record(10))
    lines = [
        good,  # 1: kept
        '{"request_id": "r11", "logged_at": ',  # 2: not JSON
        json.dumps({**_record(12), "scores": "0.5"}),  # 3: wrong type
        json.dumps({k: v for k, v in _record(13).items() if k != "model_version"}),  # 4: missing
        "",  # 5: blank, skipped
        json.dumps({**_record(14), "endpoint": "rank", "latency_ms": True}),  # 6: two fields
        json.dumps(_record(15, at=NOON + dt.timedelta(days=1))),  # 7: another day
        json.dumps(_record(1)),  # 8: a request id already seen in the logger's part
        json.dumps({**_record(16), "extra": 1}),  # 9: kept, extra key ignored
    ]
    (folder / "part~handmade.jsonl").write_text("\n".join(lines) + "\n")
    (folder / ".part-unfinished.jsonl.tmp").write_text('{"request_id": "half')  # skipped: hidden
    (folder / "notes.txt").write_text("not a part")

    logs = read_prediction_logs(str(tmp_path), SOURCE, DAY)
    assert sorted(logs.rows["request_id"]) == ["r0", "r1", "r10", "r16", "r2"]
    assert len(logs.files) == 2
    q = logs.quarantined
    assert QUARANTINE_COLUMNS == ["source_file", "line_number", "field", "reason", "raw"] == list(q.columns)
    handmade = q[q["source_file"] == "part~handmade.jsonl"]
    assert handmade["line_number"].tolist() == [2, 3, 4, 6, 7, 8]
    assert handmade["field"].tolist() == [
        "<line>",
        "scores",
        "model_version",
        "endpoint, latency_ms",
        "logged_at",
        "request_id",
    ]
    reasons = handmade["reason"].tolist()
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1] == "scores: expected a list of numbers, got str"
    assert reasons[2] == "model_version: missing"
    assert (
        reasons[3] == "endpoint: 'rank' is not one of recommend, predict, bid; latency_ms: expected a number, got bool"
    )
    assert reasons[4] == "logged_at: logged on 2024-03-02 (UTC), not on 2024-03-01"
    assert reasons[5].startswith("request_id: duplicate of part-")
    assert handmade["raw"].tolist()[0] == lines[1]
    (stray,) = q[q["source_file"] == "notes.txt"].itertuples()
    assert (stray.line_number, stray.field) == (0, "<file>")

    try:  # the quarantine layout is the lake's, as bronze writes it
        from sources.bronze_schema import QUARANTINE_COLUMNS as BRONZE_QUARANTINE_COLUMNS
    except ImportError:  # pragma: no cover - pandera missing
        pytest.skip("sources.bronze_schema not importable")
    assert QUARANTINE_COLUMNS == BRONZE_QUARANTINE_COLUMNS


@pytest.mark.integration
def test_the_logger_writes_to_s3_and_the_reader_reads_it_back(s3_endpoint):  # noqa: F811
    root = f"s3://{BUCKET}/prediction-logs-lake"
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    with PredictionLogger(root, SOURCE, storage_options=options, flush_interval_s=0.05) as logger:
        for i in range(20):
            logger.log(_record(i, at=NOON + dt.timedelta(hours=12 * (i % 2))))  # noon and next midnight
    stats = logger.stats()
    assert (stats["written"], stats["files"], stats["write_errors"]) == (20, 2, 0), stats
    lake = Lake.open(root, s3_endpoint)
    (part,) = lake.list_files(lake.prediction_log_dir(SOURCE, DAY))
    assert part.startswith(f"s3://{BUCKET}/prediction-logs-lake/landing/prediction_logs/{SOURCE}/dt=2024-03-01/part-")
    logs = read_prediction_logs(root, SOURCE, DAY, options)
    assert sorted(logs.rows["request_id"]) == sorted(f"r{i}" for i in range(0, 20, 2))
    summary = compact_prediction_logs(root, SOURCE, DAY, options)
    assert summary.rows == 10 and lake.exists(summary.parquet_url)


@pytest.mark.unit
def test_the_asset_writes_the_days_parquet_and_a_quiet_day_has_zero_rows(tmp_path, session_state_dir):
    from definitions import build_definitions

    settings = make_settings(tmp_path, session_state_dir, SYNTHETIC_DAYS="3")
    defs = build_definitions(settings)
    asset = defs.get_assets_def("prediction_logs")
    spec = asset.specs_by_key[dg.AssetKey("prediction_logs")]
    assert spec.group_name == "monitoring" and spec.owners and not spec.deps

    with PredictionLogger(settings.lake_root, settings.source) as logger:
        for i in range(6):
            logger.log(_record(i, endpoint=("recommend", "predict", "bid")[i % 3], arm=("a", "b")[i % 2]))
    folder = Path(Lake(settings.lake_root).prediction_log_dir(settings.source, DAY))
    (folder / "part-bad.jsonl").write_text('{"request_id": \n')

    resources = {k: defs.resources[k] for k in ("lake", "pipeline")}
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([asset], partition_key=DAY.isoformat(), resources=resources, instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("prediction_logs")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["rows"], meta["dagster/row_count"], meta["quarantined_rows"], meta["files_read"]) == (6, 6, 1, 2)
    assert meta["requests_per_endpoint"] == {"bid": 2, "predict": 2, "recommend": 2}
    assert (meta["model_versions"], meta["arms"], meta["status"]) == (["v1"], ["a", "b"], "compacted")

    lake = Lake(settings.lake_root)
    parquet_url = lake.prediction_logs_file(settings.source, DAY)
    assert meta["parquet_path"] == parquet_url
    table = pq.read_table(parquet_url)
    assert table.schema.equals(prediction_log_schema())
    rows = table.to_pylist()
    assert sorted(r["request_id"] for r in rows) == [f"r{i}" for i in range(6)]
    assert json.loads(rows[0]["features"])["hour_of_day"] == 12
    assert rows[0]["scores"] == [0.9, 0.5] and rows[0]["items"] == ["i1", "i2"]
    quarantine = lake.read_parquet(lake.prediction_logs_quarantine_file(settings.source, DAY))
    assert quarantine[["source_file", "line_number", "field"]].values.tolist() == [["part-bad.jsonl", 1, "<line>"]]

    quiet = DAY + dt.timedelta(days=1)
    started = time.perf_counter()
    result = dg.materialize([asset], partition_key=quiet.isoformat(), resources=resources, instance=instance)
    assert result.success and time.perf_counter() - started < 30
    (materialization,) = result.asset_materializations_for_node("prediction_logs")
    assert materialization.metadata["status"].value == "no logs"
    assert materialization.metadata["dagster/row_count"].value == 0
    empty = pq.read_table(lake.prediction_logs_file(settings.source, quiet))
    assert empty.num_rows == 0 and empty.schema.equals(prediction_log_schema())
    assert posixpath.basename(lake.prediction_logs_file(settings.source, quiet)) == "predictions.parquet"
