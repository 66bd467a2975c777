"""One job on Spark (``engine: spark``): bronze validated and written by Spark, the marts
built by dbt-spark, training and everything after reading the Parquet Spark wrote
through DuckDB views; and Spark's bronze and quarantine equal DuckDB's on the same
landing files, malformed lines included.

A 3-day x 2,000-event synthetic world: ``landing_logs`` lands it, a file of malformed
lines is added to day 2, then ``ingest_to_serve_job`` (the main job from bronze on) runs
with ``engine: spark``. DuckDB's ingestion of a copy of the same landing is the reference.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from conftest import PROJECT_ROOT, TINY_RANKER, make_settings, run_failures

from reclake.lake import Lake
from sources.bronze_schema import bronze_arrow_schema
from sources.event_ids import EventIdIndex
from sources.ingest import ingest_landing_day
from sources.spark_validation import LOOPBACK_ENVIRONMENT, local_spark_environment

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (java not on PATH)"),
]

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]


def _bad_lines(good: dict) -> list[bytes]:
    def changed(**values) -> bytes:
        return json.dumps({**good, **values}).encode()

    return [
        b'{"event_id": "broken",',
        changed(event_id="bad-type", slot_position="top"),
        changed(event_id="bad-day", event_ts="2024-03-05T00:00:01Z"),
        changed(event_id="bad-price", price=-2.5),
        changed(event_id="bad-id", user_id="null"),
        changed(event_id="bad-label", clicked=2),
        b"[1, 2]",
        b'{"event_id": "bad\xff"}',
        changed(),  # the same event again: a duplicate event_id
    ]


EXPECTED_REASONS = {
    "<line>": 3,
    "slot_position": 1,
    "event_ts": 1,
    "price": 1,
    "user_id": 1,
    "clicked": 1,
    "event_id": 1,
}


@pytest.fixture(scope="module")
def spark_run(tmp_path_factory, session_state_dir):
    from automation.run_summary import main_job_tags, summarise_run
    from definitions import build_definitions

    work = tmp_path_factory.mktemp("spark_job")
    settings = make_settings(
        work,
        session_state_dir,
        ENGINE="spark",
        SPARK_WAREHOUSE_DIR=str(work / "spark-warehouse"),
        SYNTHETIC_EVENTS_PER_DAY="2000",
        RANKER_CONFIG=TINY_RANKER,
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    tags = main_job_tags([dt.date.fromisoformat(d) for d in DAYS])
    landed = defs.resolve_job_def("landing_job").execute_in_process(instance=instance, tags=tags)
    assert landed.success
    lake = Lake.open(settings.lake_root)
    day2 = dt.date.fromisoformat(DAYS[1])
    first = sorted(Path(lake.landing_dir("synthetic", day2)).glob("*.jsonl.gz"))[0]
    import gzip

    good = json.loads(gzip.decompress(first.read_bytes()).splitlines()[0])
    lake.write_bytes(lake.landing_dir("synthetic", day2) + "/late-bad.jsonl", b"\n".join(_bad_lines(good)))
    reference = Lake(str(work / "duckdb-lake"))
    shutil.copytree(Path(settings.lake_root) / "landing", Path(reference.root) / "landing")

    result = defs.resolve_job_def("ingest_to_serve_job").execute_in_process(
        instance=instance, tags=tags, raise_on_error=False
    )
    assert result.success, "\n".join(run_failures(result))
    summary, _ = summarise_run(settings, instance, result.run_id)

    spec = settings.load_feature_spec()
    ids = EventIdIndex(reference, "synthetic")
    duckdb_days = [ingest_landing_day(reference, spec, dt.date.fromisoformat(d), event_ids=ids) for d in DAYS]
    progress = [e.message for e in instance.all_logs(result.run_id) if " on Spark: " in e.message]
    return settings, lake, reference, summary, duckdb_days, progress


def test_spark_bronze_and_quarantine_equal_duckdbs(spark_run):
    settings, lake, reference, _, duckdb_days, progress = spark_run
    schema = bronze_arrow_schema(settings.load_feature_spec())
    for day in duckdb_days:
        spark_bronze = pq.read_table(lake.bronze_file("synthetic", day.day)).cast(schema)
        duckdb_bronze = pq.read_table(reference.bronze_file("synthetic", day.day))
        assert spark_bronze.equals(duckdb_bronze), day.day
        spark_q, duckdb_q = lake.quarantine_file("synthetic", day.day), reference.quarantine_file("synthetic", day.day)
        assert Path(spark_q).exists() == Path(duckdb_q).exists(), day.day
        if Path(duckdb_q).exists():
            assert pq.read_table(spark_q).to_pylist() == pq.read_table(duckdb_q).to_pylist()
    # The child's progress reached the step's log while it ran: a line per day.
    assert [line.split(" on Spark: ")[0] for line in progress] == DAYS, progress
    day2 = duckdb_days[1]
    assert f"{day2.bronze_rows} to bronze, {day2.quarantined_rows} quarantined" in progress[1]


def test_bad_lines_are_quarantined_with_their_reasons(spark_run):
    _, lake, *_ = spark_run
    quarantined = pq.read_table(lake.quarantine_file("synthetic", dt.date.fromisoformat(DAYS[1]))).to_pylist()
    assert {row["source_file"] for row in quarantined} == {"late-bad.jsonl"}
    counts: dict[str, int] = {}
    for row in quarantined:
        for field in row["field"].split(", "):
            counts[field] = counts.get(field, 0) + 1
    assert counts == EXPECTED_REASONS
    reasons = {row["line_number"]: row["reason"] for row in quarantined}
    assert reasons[4] == "price: less than 0: -2.5"
    assert reasons[8] == "invalid UTF-8 at byte 17"  # 0-based offset of the \xff byte


def test_marts_are_built_by_dbt_spark_and_read_through_duckdb_views(spark_run):
    import duckdb

    settings, *_ = spark_run
    tables = Path(settings.spark_warehouse_dir) / "reclake.db"
    assert sorted(p.name for p in (tables / "fct_events").glob("event_date=*")) == [f"event_date={d}" for d in DAYS]
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        kinds = dict(con.execute("select table_name, table_type from information_schema.tables").fetchall())
        rows = con.execute("select count(*), count(distinct event_id) from training_examples").fetchone()
    assert {kinds[t] for t in ("fct_events", "training_examples", "user_features", "item_features")} == {"VIEW"}
    assert rows[0] == rows[1] == 3 * 2000 - 0  # day 2's bad lines never reach bronze


def test_a_model_is_trained_on_the_spark_marts(spark_run):
    _, _, _, summary, *_ = spark_run
    assert Path(summary["savedmodel_path"], "saved_model.pb").is_file()
    assert 0.5 < summary["metrics"]["ranking_auc"] <= 1.0
    assert summary["checks"]["failed"] == []


UNRESOLVABLE_HOST = "reclake-test-host.invalid"  # .invalid never resolves (RFC 6761)


def _in_unresolvable_host(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run Python ``code`` in a UTS namespace of its own whose hostname does not resolve,
    as on an offline laptop with a name no resolver knows."""
    script = f"hostname {UNRESOLVABLE_HOST} && exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}"
    return subprocess.run(
        ["unshare", "--uts", "sh", "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _can_rename_the_host() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--uts", "hostname", UNRESOLVABLE_HOST], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_rename_the_host(), reason="needs `unshare --uts` (root or CAP_SYS_ADMIN)")
def test_local_spark_starts_on_a_machine_whose_name_does_not_resolve():
    """Spark alone fails on such a machine before its session starts; the bronze child's
    session (``spark_session``: a local master on loopback) starts and runs a query."""
    env = {k: v for k, v in os.environ.items() if k not in LOOPBACK_ENVIRONMENT}
    plain = _in_unresolvable_host(
        "from pyspark.sql import SparkSession; SparkSession.builder.master('local[1]').getOrCreate()", env
    )
    if plain.returncode == 0:  # a resolver that answers every name: nothing to guard against here
        pytest.skip(f"{UNRESOLVABLE_HOST} resolves on this machine")
    assert "UnknownHostException" in plain.stderr, plain.stderr[-2000:]
    ours = _in_unresolvable_host(
        "from sources.spark_validation import spark_session; print(spark_session().range(5).count())", env
    )
    assert ours.returncode == 0 and ours.stdout.split() == ["5"], ours.stderr[-4000:]


def test_only_a_local_master_is_kept_on_loopback_and_the_users_settings_win():
    assert local_spark_environment("local[2]", {}) == LOOPBACK_ENVIRONMENT
    assert local_spark_environment("local[*]", {"SPARK_LOCAL_IP": "10.0.0.5"}) == {"SPARK_LOCAL_HOSTNAME": "localhost"}
    assert local_spark_environment("spark://spark-master:7077", {}) == {}
