"""The model zoo as Dagster assets: a config partition trains, evaluates and exports.

Runs four partitions of ``zoo_model`` on a small synthetic warehouse built by the real
pipeline (landing -> dbt), in the same process: a single-task ranker (metrics,
training curve, checkpoints, SavedModel, ONNX with parity) and a multi-task one, both
streamed from Parquet (the window is above ``stream_training_rows``), and two
retrievers: closed-form EASE and the two-tower model with a pooled history (epoch count
chosen on the validation day, checkpoints, training curve, ``retrieve`` SavedModel).
"""

import json
from pathlib import Path

import dagster as dg
import pytest
from conftest import make_settings

pytestmark = pytest.mark.integration

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory, session_state_dir):
    from definitions import build_definitions

    # 9,000 rows above a 5,000-row stream_training_rows: the rankers train streamed from Parquet,
    # the retrievers read only the positives.
    settings = make_settings(
        tmp_path_factory.mktemp("zoo"), session_state_dir, SYNTHETIC_EVENTS_PER_DAY="3000", STREAM_TRAINING_ROWS="5000"
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    features = defs.resolve_job_def("reclake_main_job").get_subset(
        asset_selection={dg.AssetKey(k) for k in ("landing_logs", "raw_events")}
        | {key for key in defs.resolve_asset_graph().get_all_asset_keys() if key.path[0] in (
            "stg_bronze__events", "fct_events", "int_user_daily_activity", "int_item_daily_activity",
            "dim_users", "dim_items", "training_examples", "user_features", "item_features")}
    )  # fmt: skip
    built = features.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
    )
    assert built.success
    zoo = defs.get_assets_def("zoo_model")
    for config in ("fm", "esmm", "ease", "two_tower_history"):
        assert dg.materialize([zoo], partition_key=config, resources=defs.resources, instance=instance).success
    return instance


def _metadata(instance, partition: str) -> dict:
    records = instance.fetch_materializations(dg.AssetKey("zoo_model"), limit=10).records
    (record,) = [r for r in records if r.partition_key == partition]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_a_ranker_config_trains_evaluates_and_exports(zoo_run):
    metadata = _metadata(zoo_run, "fm")
    assert 0.5 < metadata["auc"] <= 1.0 and metadata["logloss"] > 0
    assert metadata["best_epoch"] <= metadata["epochs"] and metadata["examples_per_second"] > 0
    folder = Path(metadata["savedmodel_path"]).parent
    assert (folder / "savedmodel" / "saved_model.pb").is_file()
    assert sorted(p.name for p in (folder / "checkpoints").glob("epoch-*.index"))[0] == "epoch-001.index"
    assert "plotly" in (folder / "training_curve.html").read_text()[:200_000]
    assert (folder / "ranker.onnx").is_file() and metadata["onnx_max_abs_diff"] < 1e-5
    # Trained streamed from the exported training day, which is not uploaded with the model.
    assert metadata["training_streamed"] is True and not list(folder.rglob("*.parquet"))


def test_a_multitask_config_reports_its_three_tasks(zoo_run):
    metadata = _metadata(zoo_run, "esmm")
    assert {"ctr_auc", "ctcvr_auc", "ctr_logloss"} <= set(metadata)
    assert "onnx_path" not in metadata  # ONNX covers single-output rankers


def _retrieve(folder: Path, user_ids: list[str], k: int):
    from models.export.retrievers import load_retriever

    return load_retriever(folder / "savedmodel").retrieve(user_ids, k)


def test_a_closed_form_retriever_ranks_the_catalogue_and_exports_retrieve(zoo_run):
    metadata = _metadata(zoo_run, "ease")
    assert metadata["model_family"] == "retriever" and metadata["model_type"] == "ease"
    assert {"hr@10", "hr@100", "recall@10", "ndcg@10", "mrr@10"} <= set(metadata)
    assert 0.0 <= metadata["recall@10"] <= metadata["hr@100"] <= 1.0 and metadata["users"] > 0
    assert metadata["topk_agreement"] == 1.0 and metadata["examples_per_second"] > 0
    assert "epochs" not in metadata and "checkpoints" not in metadata  # closed form: no epochs
    # The window is above STREAM_TRAINING_ROWS: only its positives were read, ranked
    # against every item of the window.
    assert metadata["positives_only"] is True
    folder = Path(metadata["savedmodel_path"]).parent
    document = json.loads((folder / "savedmodel" / "assets" / "reclake_model.json").read_text())
    assert document["item_count"] == metadata["catalogue_items"] and document["metrics"]["users"] == metadata["users"]
    ids, scores = _retrieve(folder, ["nobody"], 5)
    assert list(ids[0]) == [item for item, _ in document["popular_items"][:5]]


def test_a_tensorflow_retriever_chooses_its_epochs_and_serves_its_history(zoo_run):
    metadata = _metadata(zoo_run, "two_tower_history")
    assert metadata["model_family"] == "retriever" and 0.0 <= metadata["ndcg@10"] <= 1.0
    assert 1 <= metadata["best_epoch"] <= metadata["epochs"] and metadata["topk_agreement"] == 1.0
    folder = Path(metadata["savedmodel_path"]).parent
    checkpoints = sorted(p.name for p in (folder / "checkpoints").glob("epoch-*.index"))
    assert checkpoints == [f"epoch-{epoch:03d}.index" for epoch in range(1, metadata["best_epoch"] + 1)]
    assert "val_recall@10" in (folder / "training_curve.html").read_text()
    document = json.loads((folder / "savedmodel" / "assets" / "reclake_model.json").read_text())
    assert document["model"]["model"]["history_length"] == 20 and document["inputs"]["retrieve"] == {
        "user_id": "string",
        "k": "int",
    }
    ids, scores = _retrieve(folder, ["nobody", "also-nobody"], document["item_count"])
    assert ids.shape == (2, document["item_count"]) and (scores[:, :-1] >= scores[:, 1:]).all()
