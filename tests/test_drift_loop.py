"""The monitoring loop end to end, small: bench/drift_loop.py's ``run_loop`` (imported,
not shelled out) bootstraps a served model with the main job, lands day after day through
``ingest_to_monitor_job`` and evaluates ``drift_retrain_sensor`` as the daemon would,
running the retrain it asks for. Drift is planted on the synthetic source's day 5."""

import importlib.util
import sys
from pathlib import Path

import dagster as dg
import pytest
from conftest import PROJECT_ROOT, TINY_RANKER

pytestmark = pytest.mark.integration

DATA_DOCS_RESULTS_PER_SUITE = 2  # below the loop's four validations of each event mart


def load_bench():
    if "bench_drift_loop" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_drift_loop", PROJECT_ROOT / "bench" / "drift_loop.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["bench_drift_loop"] = module
    return sys.modules["bench_drift_loop"]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    instance = dg.DagsterInstance.ephemeral()
    line = load_bench().run_loop(
        tmp_path_factory.mktemp("drift_loop"), kind="user_mix", seed=7, events_per_day=4000, bootstrap_days=4,
        monitored_days=3, drift_from_day=5, training_window_days=4, reference_days=3,
        extra={"RECLAKE_SYNTHETIC_USERS": "400", "RECLAKE_SYNTHETIC_ITEMS": "150",
               "RECLAKE_DATA_DOCS_RESULTS_PER_SUITE": str(DATA_DOCS_RESULTS_PER_SUITE),
               "RECLAKE_RANKER_CONFIG": TINY_RANKER},
        instance=instance,
    )  # fmt: skip
    return line, instance


def test_planted_drift_is_detected_on_its_first_day_and_nothing_before(loop):
    line, _ = loop
    assert line["drift_planted_day"] == "2024-03-06"
    assert line["false_alert_days"] == [] and line["detected_on_first_day"], line["days"]


def test_the_alert_retrains_and_the_retrained_model_serves_the_next_day(loop):
    line, _ = loop
    assert line["retrain_triggered_by_drift"] and line["retrained_after_day"] == "2024-03-06", line["retrains"]
    first = line["retrains"][0]
    assert "drift_report" in first["alerts"] or "served_model_quality" in first["alerts"]
    days = {d["day"]: d for d in line["days"]}
    assert days["2024-03-05"]["quality_status"] == "judged"  # the bootstrapped model, after its window
    if first["promoted"]:  # champion/challenger decides; the judged model is whichever it serves
        assert days["2024-03-07"]["served_model"] == first["model_version"]


def test_monitoring_checks_warn_and_do_not_block(loop):
    _, instance = loop
    evaluations: dict[tuple[str, str], object] = {}  # (check, partition) -> its newest evaluation
    for run in reversed(instance.get_runs()):  # oldest first
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            data = entry.dagster_event.event_specific_data
            evaluations[(data.check_name, data.partition)] = data
    drift = {p: e for (name, p), e in evaluations.items() if name == "features_within_drift_alert"}
    assert drift["2024-03-05"].passed and not drift["2024-03-06"].passed
    assert drift["2024-03-06"].severity == dg.AssetCheckSeverity.WARN and not drift["2024-03-06"].blocking
    judged = {p: e for (name, p), e in evaluations.items() if name == "served_model_calibrated"}
    assert judged["2024-03-05"].metadata["ece"].value > 0  # the bootstrapped model, judged after its window


def test_the_data_docs_keep_the_newest_results_and_count_every_run(loop):
    """Four runs validate each event mart (the main job, then three landed days); the
    site keeps the newest two of each suite in GX's store and counts all four."""
    _, instance = loop
    docs = instance.get_latest_materialization_event(dg.AssetKey("data_docs")).asset_materialization.metadata
    assert (docs["fct_events_runs"].value, docs["fct_events_runs_passed"].value) == (4, 4)
    site = Path(docs["index"].value).parents[4]  # <site root>/gx/uncommitted/data_docs/local_site/index.html
    stored = list((site / "gx" / "uncommitted" / "validations" / "synthetic" / "fct_events").rglob("*.json"))
    archived = list((site / "archive" / "validations" / "synthetic" / "fct_events").rglob("*.json"))
    assert (len(stored), len(archived)) == (DATA_DOCS_RESULTS_PER_SUITE, 4 - DATA_DOCS_RESULTS_PER_SUITE)
