"""The whole asset graph, materialized for real over a few synthetic days.

One run of ``reclake_main_job`` over three days in a temporary lake: the generator,
pandera validation, a real ``dbt build`` on DuckDB (its tests as asset checks), the
Great Expectations suites per mart and their Data Docs, the dataset splits, real
TensorFlow training and export, the BentoML model store and an Evidently report; then a
real ``bentoml serve`` of the pinned model answers over HTTP.
"""

import json
import re
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import requests
from conftest import free_port, make_settings
from serving_support import running_service

from automation.serve import environment_for

pytestmark = pytest.mark.integration

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
TINY_DEEPFM = str(Path(__file__).parent / "fixtures" / "configs" / "tiny_deepfm.yaml")


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, session_state_dir):
    from automation.run_summary import check_outcomes, run_main_job

    settings = make_settings(
        tmp_path_factory.mktemp("pipeline"),
        session_state_dir,
        REPORTS_URL=f"http://127.0.0.1:{free_port()}",
        # The automatic choice between two rankers (models.selection), reported in the summary.
        RANKER_CONFIG="auto",
        AUTO_CANDIDATES=f"{TINY_DEEPFM},dcn_v2_stacked",
    )
    instance = dg.DagsterInstance.ephemeral()
    summary, summary_url = run_main_job(settings, instance)
    return settings, instance, summary, summary_url, check_outcomes(instance, summary["run_id"])


def test_summary_is_written_and_names_every_output(main_run):
    settings, _, summary, summary_url, _ = main_run
    assert summary_url == str(Path(settings.lake_root) / "run_summary.json")
    written = json.loads(Path(summary_url).read_text())
    assert {k: written[k] for k in summary} == summary
    assert summary["partitions"] == DAYS
    assert Path(summary["savedmodel_path"], "saved_model.pb").is_file()
    assert Path(summary["drift_report_path"]).read_text().lstrip().lower().startswith("<!doctype html")
    assert summary["bento_model_tag"].startswith("reclake_synthetic:")
    assert settings.current_model_tag_file.read_text().strip() == summary["bento_model_tag"]


def test_every_report_opens_from_its_asset_over_http(main_run):
    """The drift report, Data Docs and each check's validation page are one click away
    in the UI: their metadata URLs answer from the report server ``make ui`` starts."""
    from monitoring.data_quality import DataDocsSite
    from monitoring.report_server import ReportRoots, start_report_server
    from reclake.lake import Lake

    settings, instance, summary, _, _ = main_run
    drift = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), asset_partitions=[DAYS[-1]]), limit=1
    ).records[0]
    docs = instance.get_latest_materialization_event(dg.AssetKey("data_docs"))
    urls = [
        drift.asset_materialization.metadata["report_url"].value,
        docs.asset_materialization.metadata["index_url"].value,
    ]
    checks = instance.get_records_for_run(summary["run_id"], of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    pages = [
        record.event_log_entry.dagster_event.event_specific_data.metadata.get("data_docs_url") for record in checks
    ]
    urls += [page.value for page in pages if page is not None]
    assert len(urls) >= 2 + len(DAYS), urls  # a page per event-mart day, at least
    assert all(url.startswith(settings.reports_url + "/") for url in urls), urls

    roots = ReportRoots(Lake.open(settings.lake_root), str(DataDocsSite(settings.data_docs_dir).site_dir))
    server = start_report_server(roots, "127.0.0.1", int(settings.reports_url.rsplit(":", 1)[1]))
    try:
        for url in urls:
            page = requests.get(url, timeout=30)
            assert page.status_code == 200 and page.text.lstrip().lower().startswith("<!doctype html"), url
        index = requests.get(settings.reports_url + "/", timeout=30).text
        assert f"dt%3D{DAYS[-1]}/drift_report.html" in index and "data_docs/index.html" in index
    finally:
        server.shutdown()
        server.server_close()


def test_every_asset_and_partition_is_materialized(main_run):
    _, instance, _, _, _ = main_run
    for key in ("landing_logs", "raw_events", "fct_events", "training_examples", "drift_report"):
        assert instance.get_materialized_partitions(dg.AssetKey(key)) == set(DAYS), key
    for key in (
        "recommender_model", "bento_model", "dim_users", "dim_items", "user_features", "item_features",
        "dataset_splits", "data_docs",
    ):  # fmt: skip
        assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None, key


def test_quality_checks_ran_and_passed(main_run):
    _, _, summary, _, outcomes = main_run
    assert outcomes["raw_events/quarantine_share_within_threshold"] is True
    for mart in ("fct_events", "training_examples", "user_features", "item_features"):
        assert outcomes[f"{mart}/{mart}_expectations"] is True, mart
    dbt_tests = [name for name in outcomes if name.startswith(("fct_events/", "training_examples/unique"))]
    assert len(dbt_tests) >= 3, sorted(outcomes)
    assert summary["checks"]["failed"] == []


def test_warehouse_holds_every_impression_once(main_run):
    settings, *_ = main_run
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        rows, distinct = con.execute("select count(*), count(distinct event_id) from fct_events").fetchone()
        per_day = dict(
            con.execute("select cast(event_date as varchar), count(*) from training_examples group by 1").fetchall()
        )
    assert rows == distinct == 3 * settings.synthetic.events_per_day
    assert per_day == {day: settings.synthetic.events_per_day for day in DAYS}


def test_model_metrics_are_honest(main_run):
    _, _, summary, _, _ = main_run
    metrics = summary["metrics"]
    # Evaluated on the held-out newest day against the generator's truth.
    assert metrics["ranking_examples"] == 6000
    assert 0.5 < metrics["ranking_auc"] <= 1.0
    assert metrics["ranking_bayes_logloss"] < metrics["ranking_logloss"]
    assert 0.0 <= metrics["retrieval_recall_at_k"] <= 1.0


def test_the_ranker_is_chosen_on_the_validation_day_and_the_choice_reported(main_run):
    _, instance, summary, _, _ = main_run
    choice = summary["ranker_choice"]
    assert set(choice["candidates"]) == {TINY_DEEPFM, "dcn_v2_stacked"}
    assert choice["selected_on"] == f"the validation day ({DAYS[1]})"
    chosen = choice["candidates"][choice["chosen"]]
    assert chosen["validation_auc"] == max(c["validation_auc"] for c in choice["candidates"].values())
    assert chosen["test_auc"] == pytest.approx(summary["metrics"]["ranking_auc"], abs=1e-4)
    assert choice["margin"] >= 0 and choice["runner_up"] in choice["candidates"]
    event = instance.get_latest_materialization_event(dg.AssetKey("recommender_model"))
    metadata = event.asset_materialization.metadata
    assert f"**{choice['chosen']}** (chosen)" in metadata["ranker_selection"].value
    assert metadata["ranker_chosen"].value == choice["chosen"]


def test_retraining_scores_the_champion_and_registers_a_challenger(main_run):
    """A second model faces the served one on the same held-out rows; both stay in the store."""
    from definitions import build_definitions

    settings, instance, summary, _, _ = main_run
    defs = build_definitions(settings)
    result = dg.materialize(
        [defs.get_assets_def("recommender_model"), defs.get_assets_def("bento_model")],
        resources=defs.resources,
        instance=instance,
    )
    assert result.success
    metadata = instance.get_latest_materialization_event(dg.AssetKey("bento_model")).asset_materialization.metadata
    stage, registered = metadata["stage"].value, metadata["registered_tag"].value
    assert registered != summary["bento_model_tag"]
    assert re.search(r"champion \d\.\d{4}", metadata["promotion_reason"].value)  # the champion was scored
    served = settings.current_model_tag_file.read_text().strip()
    assert served == (registered if stage == "champion" else summary["bento_model_tag"])
    assert "|" in metadata["versions"].value and summary["bento_model_tag"] in metadata["versions"].value


def test_bentoml_serves_the_pinned_model_over_http(main_run, session_state_dir):
    settings, instance, summary, _, _ = main_run
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        known_user = con.execute("select user_id from user_features order by user_events_7d desc limit 1").fetchone()[0]
    context = {"device": "mobile", "slot_position": 1}
    # Served as `make serve` serves it: the embedded online store the run's online_features
    # published, the pinned tag file (hot swap) and prediction logs into the lake.
    environment = environment_for(settings, summary["bento_model_tag"])
    with running_service(summary["bento_model_tag"], Path(settings.bentoml_home), environment) as base_url:
        info = requests.post(f"{base_url}/model_info", json={}, timeout=30).json()
        published = instance.get_latest_materialization_event(dg.AssetKey("online_features")).asset_materialization
        assert info["online_store"].startswith("embedded")
        assert info["online_features_version"] == published.metadata["version"].value
        known = requests.post(
            f"{base_url}/recommend", json={"user_id": known_user, "k": 5, "context": context}, timeout=30
        )
        assert known.status_code == 200, known.text
        body = known.json()
        assert body["fallback"] is None and body["model_version"] == summary["model_version"]
        scores = [item["score"] for item in body["items"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)

        unknown = requests.post(
            f"{base_url}/recommend", json={"user_id": "nobody", "k": 3, "context": context}, timeout=30
        )
        assert unknown.status_code == 200 and unknown.json()["fallback"] == "popularity"

        bad = requests.post(f"{base_url}/recommend", json={"user_id": known_user, "k": 0}, timeout=30)
        assert 400 <= bad.status_code < 500
