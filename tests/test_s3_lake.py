"""The lake on S3: a local S3-compatible server (moto) on 127.0.0.1, read through s3fs.

Landing files, bronze Parquet and quarantine go to ``s3://``; dbt-duckdb reads bronze
through the fsspec filesystem it registers (no httpfs extension), and the marts land
in the local DuckDB warehouse.
"""

import os

import dagster as dg
import duckdb
import pytest
import s3fs
from conftest import free_port, make_settings
from moto.server import ThreadedMotoServer

BUCKET = "reclake-test"
DAYS = ["2024-03-01", "2024-03-02"]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        filesystem = s3fs.S3FileSystem(endpoint_url=endpoint)
        # moto keeps its buckets per process: another module of this test worker
        # (test_prediction_logs uses this fixture) may have created it already.
        if not filesystem.exists(BUCKET):
            filesystem.mkdir(BUCKET)
        yield endpoint
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def s3_run(s3_endpoint, tmp_path_factory, session_state_dir):
    from definitions import build_definitions

    settings = make_settings(
        tmp_path_factory.mktemp("s3"), session_state_dir,
        LAKE_ROOT=f"s3://{BUCKET}/lake", S3_ENDPOINT_URL=s3_endpoint,
        SYNTHETIC_DAYS="2", SYNTHETIC_EVENTS_PER_DAY="500",
    )
    defs = build_definitions(settings)
    assert defs.resources["dbt"].target == "s3"
    assets = [defs.get_assets_def(key) for key in ("landing_logs", "raw_events", "training_examples")]
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        result = dg.materialize(assets, partition_key=day, resources=defs.resources, instance=instance)
        assert result.success, day
    return settings, s3_endpoint


def test_lake_files_live_in_the_bucket(s3_run):
    _, endpoint = s3_run
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    for day in DAYS:
        assert fs.ls(f"{BUCKET}/lake/landing/synthetic/dt={day}") == [
            f"{BUCKET}/lake/landing/synthetic/dt={day}/events-00000.jsonl.gz"
        ]
        assert fs.exists(f"{BUCKET}/lake/bronze/synthetic/dt={day}/part-0.parquet")


def test_dbt_reads_bronze_from_s3_into_the_warehouse(s3_run):
    settings, _ = s3_run
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        counts = dict(con.execute(
            "select cast(event_date as varchar), count(*) from training_examples group by 1"
        ).fetchall())
        facts = con.execute("select count(*), count(distinct event_id) from fct_events").fetchone()
    assert counts == {day: 500 for day in DAYS}
    assert facts == (1000, 1000)


def test_reports_in_the_bucket_are_served_over_http(s3_run):
    """A browser cannot open ``s3://``: the report server reads the bucket through s3fs."""
    import requests

    from monitoring.report_server import ReportRoots, start_report_server
    from reclake.lake import Lake

    settings, endpoint = s3_run
    lake = Lake.open(settings.lake_root, endpoint)
    report = "reports/drift/dt=2024-03-02/drift_report.html"
    lake.write_bytes(lake.url(report), b"<!doctype html><title>drift in the bucket</title>")
    port = free_port()
    server = start_report_server(ReportRoots(lake), "127.0.0.1", port)
    try:
        page = requests.get(f"http://127.0.0.1:{port}/{report}", timeout=30)
        assert page.status_code == 200 and "drift in the bucket" in page.text
        assert report.replace("=", "%3D") in requests.get(f"http://127.0.0.1:{port}/", timeout=30).text
        assert requests.get(f"http://127.0.0.1:{port}/data_docs/index.html", timeout=30).status_code == 404
    finally:
        server.shutdown()
        server.server_close()
