"""Every real source runs end to end through the main job with its documented config:
what the ``test_real_sources_*`` modules share (two modules, so two test workers split them).

Each case runs the main job with ``RECLAKE_CONFIG=configs/<source>.yaml`` (state in a
temporary folder; a small ranker and one drift report per run, to keep CI short) in the
test's process (``run_main_job``, from the same settings ``make run`` would read). The
source's files are imported into the landing zone, validated into bronze, built into the
dbt marts with their tests and Great Expectations suites, split, trained, exported,
registered in the BentoML store and reported on. MovieLens-100K, Criteo, Avazu and the
AliExpress samples are the real files in ../shared/data; Amazon Reviews and iPinYou,
which have no sample there, are written in their raw layouts by ``raw_formats``.

That a config file named by ``RECLAKE_CONFIG`` reaches the run workers Dagster launches,
through the environment, is tests/test_launched_runs.py's part: its world is such a file.
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import requests
from conftest import PROJECT_ROOT, SHARED_DATA, TEST_CONFIGS, TINY_RANKER
from raw_formats import write_amazon_reviews, write_ipinyou_logs
from serving_support import running_service

from automation.run_summary import run_main_job
from reclake.settings import load_settings

GENERATED_DAYS = [dt.date(2024, 5, 1) + dt.timedelta(days=i) for i in range(4)]


def _generated_source(source: str, folder: Path) -> dict[str, str]:
    if source == "amazon_reviews":
        path = write_amazon_reviews(folder / "reviews.jsonl", GENERATED_DAYS)
    else:
        path = write_ipinyou_logs(folder / "ipinyou", GENERATED_DAYS)
    return {
        "RECLAKE_SOURCE_PATH": str(path),
        "RECLAKE_SOURCE_OPTIONS": "{}",
        "RECLAKE_PARTITIONS_START": GENERATED_DAYS[0].isoformat(),
        "RECLAKE_PARTITIONS_END": GENERATED_DAYS[-1].isoformat(),
        "RECLAKE_TRAINING_WINDOW_DAYS": "4",
    }


# Source -> settings beyond its config file (besides the state folders).
CASES = {
    # The real MovieLens-100K, its last ten days (the whole history is `make run`'s job).
    "movielens": {"RECLAKE_PARTITIONS_START": "1998-04-13", "RECLAKE_TRAINING_WINDOW_DAYS": "10"},
    "criteo": {},
    "avazu": {},
    # The multi-task source trains, promotes and serves a multi-task ranker (ESMM).
    "multitask": {"RECLAKE_RANKER_CONFIG": str(TEST_CONFIGS / "tiny_esmm.yaml")},
    "amazon_reviews": None,  # generated files
    "ipinyou": None,
}


def run_source_end_to_end(source: str, tmp_path: Path, session_state_dir: Path) -> None:
    """Run the main job for ``source`` with its config file and check what it produced
    (see the module docstring)."""
    if CASES[source] is not None and not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not found at {SHARED_DATA} (../shared/data from the repo root)")
    environ = {
        "RECLAKE_CONFIG": str(PROJECT_ROOT / "configs" / f"{source}.yaml"),
        "RECLAKE_STATE_DIR": str(session_state_dir),
        "RECLAKE_LAKE_ROOT": str(tmp_path / "lake"),
        "RECLAKE_WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
        "RECLAKE_RANKER_CONFIG": TINY_RANKER,  # unless the case names its own
        "RECLAKE_DRIFT_DAYS_PER_RUN": "1",
        **(CASES[source] if CASES[source] is not None else _generated_source(source, tmp_path)),
    }
    settings = load_settings(environ)
    spec = settings.load_feature_spec()
    instance = dg.DagsterInstance.ephemeral()
    summary, summary_url = run_main_job(settings, instance)
    assert summary_url == str(Path(settings.lake_root) / "run_summary.json")

    days = settings.run_days()
    assert summary["partitions"] == [d.isoformat() for d in days]
    assert summary["checks"]["failed"] == []
    assert summary["bento_model_tag"].startswith(f"reclake_{source}:")
    metrics = summary["metrics"]
    if spec.label.kind == "regression":
        # No worse than predicting the training window's mean rating for every test row.
        with duckdb.connect(settings.warehouse_path, read_only=True) as con:
            train_mean, baseline = con.execute(
                f"""with train as (select avg(label) as mean from training_examples where event_date < '{days[-1]}')
                    select max(train.mean), sqrt(avg(power(label - train.mean, 2)))
                    from training_examples, train where event_date = '{days[-1]}'"""
            ).fetchone()
        assert 0 < metrics["ranking_rmse"] <= 1.05 * baseline, (metrics["ranking_rmse"], baseline, train_mean)
    else:
        assert 0.0 <= metrics["ranking_auc"] <= 1.0 and metrics["ranking_logloss"] > 0
    assert ("retrieval_recall_at_k" in metrics) == spec.has_ids

    # Counts reconcile from the source files to the marts: every input row is in bronze
    # or quarantined, and every bronze row is in fct_events.
    landing = instance.get_latest_materialization_event(dg.AssetKey("landing_logs")).asset_materialization.metadata
    input_rows, rejected = landing["input_rows"].value, landing["rejected_rows"].value
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        facts = con.execute("select count(*), count(distinct event_id) from fct_events").fetchone()
        columns = {row[0] for row in con.execute("describe training_examples").fetchall()}
    quarantined = sum(
        len(pd.read_parquet(path))
        for path in Path(settings.lake_root, "quarantine", source).rglob("dt=*/quarantine.parquet")
    )
    first, last = days[0].isoformat(), days[-1].isoformat()
    in_run = sum(rows for day, rows in _rows_per_day(settings.lake_root, source).items() if first <= day <= last)
    assert facts[0] == facts[1] == in_run - quarantined
    assert rejected <= input_rows
    assert set(spec.model_feature_names) <= columns

    # The served model answers with the spec's inputs.
    from models.export.savedmodel import load_recommender
    from resources.model_store import ModelStoreResource

    store = ModelStoreResource(
        bentoml_home=str(settings.bentoml_home), pinned_tag_file=str(settings.current_model_tag_file),
        model_name=settings.bento_model_name,
    )  # fmt: skip
    recommender = load_recommender(store.savedmodel_dir(summary["bento_model_tag"]))
    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(f"select * from training_examples where event_date = '{last}' limit 5").df()
    scores = recommender.predict(rows[list(spec.request_features)])
    assert scores.shape == (len(rows),) and (scores == scores).all()
    assert recommender.can_recommend == spec.has_ids
    if source == "multitask":
        _check_multitask_served(summary, settings, rows[list(spec.request_features)])
    if source == "ipinyou":  # its logs carry paying prices: the held-out day's auctions are replayed
        simulated = instance.get_latest_materialization_event(dg.AssetKey("bidding_simulation")).asset_materialization
        assert simulated.partition == last and simulated.metadata["status"].value == "simulated", simulated.metadata


def _check_multitask_served(summary: dict, settings, rows: pd.DataFrame) -> None:
    """An ESMM ranker was promoted on its click task's AUC and ``/predict`` returns its three tasks."""
    metrics = summary["metrics"]
    assert metrics["ranking_auc"] == metrics["ranking_ctr_auc"] and "ranking_ctcvr_auc" in metrics
    body = {"rows": json.loads(rows.to_json(orient="records"))}
    with running_service(summary["bento_model_tag"], Path(settings.bentoml_home)) as url:
        response = requests.post(f"{url}/predict", json=body, timeout=60)
    assert response.status_code == 200, response.text
    served = response.json()
    assert set(served["tasks"]) == {"pctr", "pcvr", "pctcvr"} and served["scores"] == served["tasks"]["pctr"]
    for pctr, pcvr, pctcvr in zip(*(served["tasks"][name] for name in ("pctr", "pcvr", "pctcvr")), strict=True):
        assert pctcvr == pytest.approx(pctr * pcvr, rel=1e-4)


def _rows_per_day(lake_root: str, source: str) -> dict[str, int]:
    """Landed rows per day, from the import manifest."""
    manifest = json.loads(Path(lake_root, "landing", source, "_import_manifest.json").read_text())
    days: dict[str, int] = {}
    for entry in manifest:
        for day, rows in entry["rows_per_day"].items():
            days[day] = days.get(day, 0) + rows
    return days
