"""A corrupted landing day: bad rows are quarantined with their reason, good rows are
kept, the blocking check fails and nothing downstream is built from the day."""

import gzip
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import make_settings

from reclake.lake import Lake

pytestmark = pytest.mark.unit

DAY = "2024-03-01"
ROWS = 200  # three bad rows are 1.5% of the day: above the 1% threshold


@pytest.fixture(scope="module")
def corrupted_run(tmp_path_factory, session_state_dir):
    from definitions import build_definitions

    settings = make_settings(
        tmp_path_factory.mktemp("quarantine"),
        session_state_dir,
        SYNTHETIC_DAYS="1",
        SYNTHETIC_EVENTS_PER_DAY=str(ROWS),
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    landed = dg.materialize(
        [defs.get_assets_def("landing_logs")],
        partition_key=DAY,
        resources={k: defs.resources[k] for k in ("lake", "synthetic", "pipeline")},
        instance=instance,
    )
    assert landed.success

    lake = Lake(settings.lake_root)
    (url,) = lake.list_files(lake.landing_dir("synthetic", pd.Timestamp(DAY).date()))
    lines = gzip.decompress(lake.read_bytes(url)).decode().splitlines()
    lines[9] = lines[9][: len(lines[9]) // 2]  # line 10: truncated, not JSON
    lines[19] = lines[19].replace('"device":', '"device_type":')  # line 20: a missing column
    lines[29] = lines[29].replace('"price":', '"price":-')  # line 30: a negative price
    lake.write_bytes(url, gzip.compress(("\n".join(lines) + "\n").encode()))

    result = defs.resolve_job_def("ingest_to_serve_job").execute_in_process(
        partition_key=DAY, instance=instance, raise_on_error=False
    )
    return settings, instance, result, lake


def test_bad_rows_are_quarantined_with_file_line_field_and_reason(corrupted_run):
    settings, _, _, lake = corrupted_run
    quarantined = lake.read_parquet(lake.quarantine_file("synthetic", pd.Timestamp(DAY).date()))
    assert quarantined["source_file"].unique().tolist() == ["events-00000.jsonl.gz"]
    assert quarantined["line_number"].tolist() == [10, 20, 30]
    assert quarantined["field"].tolist() == ["<line>", "device", "price"]
    assert quarantined["reason"][0].startswith("invalid JSON")
    assert quarantined["reason"][1] == "device: missing or null"
    assert quarantined["reason"][2].startswith("price: less than 0: -")
    assert quarantined["raw"][2].count('"price":-') == 1


def test_good_rows_are_kept_and_counts_reconcile(corrupted_run):
    _, instance, _, lake = corrupted_run
    bronze = lake.read_parquet(lake.bronze_file("synthetic", pd.Timestamp(DAY).date()))
    assert len(bronze) == ROWS - 3
    assert bronze["event_id"].is_unique and (bronze["price"] >= 0).all()
    metadata = instance.get_latest_materialization_event(dg.AssetKey("raw_events")).asset_materialization.metadata
    assert metadata["input_rows"].value == ROWS
    assert metadata["quarantined_rows"].value == 3
    assert metadata["dagster/row_count"].value == ROWS - 3


def test_blocking_check_fails_and_nothing_downstream_is_built(corrupted_run):
    _, instance, result, _ = corrupted_run
    evaluations = [
        e.event_specific_data for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    quarantine_check = [e for e in evaluations if e.check_name == "quarantine_share_within_threshold"]
    assert len(quarantine_check) == 1 and quarantine_check[0].passed is False
    assert not result.success
    for key in ("fct_events", "training_examples", "recommender_model", "bento_model", "drift_report"):
        assert instance.get_latest_materialization_event(dg.AssetKey(key)) is None, key


def test_parser_rejects_of_a_real_source_stop_the_run_at_landing(tmp_path, session_state_dir):
    """Criteo lines that do not parse (4 of the fixture's 9) count against the quarantine
    share: landing_logs' blocking check fails and bronze is not built from the import."""
    from definitions import build_definitions

    fixture = Path(__file__).parent / "fixtures" / "formats" / "criteo" / "train_sample.txt"
    settings = make_settings(
        tmp_path, session_state_dir, SOURCE="criteo", SOURCE_PATH=str(fixture),
        SOURCE_OPTIONS='{"start_date": "2024-03-01", "rows_per_day": 100}',
        QUARANTINE_MAX_SHARE="0.05",  # partitions: the open-ended defaults of this process
    )  # fmt: skip
    defs = build_definitions(settings)
    result = dg.materialize(
        [defs.get_assets_def("landing_logs"), defs.get_assets_def("raw_events")],
        partition_key=DAY,
        resources={k: defs.resources[k] for k in ("lake", "synthetic", "pipeline")},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    (evaluation,) = [
        e.event_specific_data for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert evaluation.check_name == "import_rejects_within_threshold" and evaluation.passed is False
    assert (evaluation.metadata["input_rows"].value, evaluation.metadata["rejected_rows"].value) == (9, 4)
    assert evaluation.partition == DAY
    assert not result.success
    assert not [e for e in result.get_step_success_events() if e.step_key == "raw_events"]
