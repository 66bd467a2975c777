"""The model zoo as assets: every bundled model config trained and compared on the source."""

import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from assets.progress import epoch_logger, metrics_line
from assets.training_window import read_retrieval_window, read_training_window
from models.configs import config_names
from resources.lake import LakeResource
from resources.pipeline import PipelineResource
from resources.tracking import TrackingResource
from resources.warehouse import WarehouseResource
from sources.truth import with_true_pctr

zoo_configs = dg.StaticPartitionsDefinition(config_names())
# Held-out rows the ONNX export is checked on (largest |ONNX - TensorFlow| in metadata).
ONNX_PARITY_ROWS = 1000


@dg.asset(
    partitions_def=zoo_configs,
    group_name="model_zoo",
    # A config trains on the newest window of every loaded day.
    deps=[
        dg.AssetDep(name, partition_mapping=dg.AllPartitionMapping())
        for name in ("training_examples", "user_features", "item_features")
    ],
    kinds={"tensorflow"},
    pool="duckdb_warehouse",
)
def zoo_model(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    lake: LakeResource,
    pipeline: PipelineResource,
    tracking: TrackingResource,
) -> dg.MaterializeResult:
    """One bundled model config (the partition: ``models/configs/<name>.yaml``) trained
    on the source's newest ``training_window_days`` with the pipeline's temporal split
    (train days, a validation day, the newest day held out), in one of two families:

    - a *ranker* (FM, DeepFM, DCN-v2, hashed LR, ESMM, MMoE): early stopping on the
      validation loss, a checkpoint per epoch, metrics on the held-out day's rows, a
      training-curve plot, an exported SavedModel (``predict`` / ``rank``; ``pctr`` /
      ``pcvr`` / ``pctcvr`` for the multi-task models) and, for single-task rankers, an
      ONNX export (``ranker.onnx``) checked against TensorFlow on held-out rows;
    - a *retriever* (popularity, EASE, BPR-MF, two-tower, SASRec, joint): the epoch
      count of the TensorFlow models chosen on the validation day's ranking, then a fit
      on the train and validation days (a checkpoint per epoch), full-catalogue top-K
      metrics on the held-out day, a training-curve plot and a SavedModel with a
      ``retrieve`` signature, checked against the in-memory model (``topk_agreement``).

    Materialize every partition to compare the zoo on the same rows; the served model
    stays the one ``recommender_model`` trains (``ranker_config`` picks its ranker).
    Multi-task rankers need click and conversion labels, retrievers user and item ids:
    on other sources the partition records why it was not trained.
    """
    from models.training.config import RETRIEVER, load_spec

    name = context.partition_key
    if load_spec(name).family == RETRIEVER:
        return _retriever_partition(context, name, warehouse, lake, pipeline, tracking)
    return _ranker_partition(context, name, warehouse, lake, pipeline, tracking)


def _not_applicable(context: dg.AssetExecutionContext, reason: str, source: str) -> dg.MaterializeResult:
    context.log.info(reason)
    return dg.MaterializeResult(metadata={"status": reason, "source": source})


def _export_metadata(name: str, version: str, trained: Any) -> dict[str, Any]:
    """What the exported SavedModel records about its training (``reclake_model.json``)."""
    return {
        "model_version": f"{name}-{version}",
        "trained_on": [d.isoformat() for d in trained.trained_on],
        "evaluated_on": trained.evaluated_on.isoformat(),
        "metrics": trained.metrics,
    }


def _version_metadata(source: str, model_spec: Any, version: str, trained: Any) -> dict[str, Any]:
    """The materialization metadata every partition shows: what was trained, on what, how well."""
    return {
        "source": source,
        "model_type": model_spec.type,
        "model_family": model_spec.family,
        "model_version": version,
        "trained_on": f"{trained.trained_on[0]} .. {trained.trained_on[1]}",
        "evaluated_on": trained.evaluated_on.isoformat(),
        "metrics": dg.MetadataValue.json(trained.metrics),
        **trained.metrics,
    }


def _track(context, tracking: TrackingResource, source, run_name, days, trained, model_spec, history, best_epoch):
    """Log a partition's training to MLflow; returns the metadata that links its run."""
    from models.tracking import data_window

    return tracking.log_training(
        context, source, run_name, model_config=model_spec.to_dict(), history=history or {}, metrics=trained.metrics,
        data_window=data_window(days, trained), best_epoch=best_epoch,
    )  # fmt: skip


def _ranker_partition(
    context: dg.AssetExecutionContext,
    name: str,
    warehouse: WarehouseResource,
    lake: LakeResource,
    pipeline: PipelineResource,
    tracking: TrackingResource,
) -> dg.MaterializeResult:
    from models.export.onnx import export_onnx
    from models.export.savedmodel import export_recommender
    from models.inputs.features import feature_arrays
    from models.ranking.base import MULTITASK_LABELS
    from models.recommender import train_ranker
    from models.training.config import load_spec
    from models.training.curves import training_curve_html
    from models.training.registry import MODEL_TYPES

    spec = pipeline.feature_spec()
    model_class = MODEL_TYPES[load_spec(name).type]
    if model_class.multitask and not set(MULTITASK_LABELS.values()) <= set(spec.label_columns):
        reason = f"not applicable: {name} needs click and conversion labels; the {spec.source} spec has {list(spec.label_columns)}"
        return _not_applicable(context, reason, spec.source)
    if model_class.needs_ids and not spec.has_ids:
        reason = f"not applicable: {name} reads user and item ids; the {spec.source} spec has none"
        return _not_applicable(context, reason, spec.source)
    store = lake.get_lake()
    # Above stream_training_rows the training days stream from Parquet files in window_dir,
    # as the pipeline's ranker does; tmp holds what is uploaded.
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(prefix="reclake-window-") as window_dir:
        local = Path(tmp)
        days, examples, stream, _ = read_training_window(context, warehouse, pipeline, window_dir)
        # The synthetic source knows the true pCTR of the held-out day: the Bayes-optimal floor.
        examples = with_true_pctr(examples, store, pipeline.source, days[-1])
        version = f"{days[-1]:%Y%m%d}-{context.run_id[:8]}"
        folder = store.url("models", "zoo", name, version)
        trained = train_ranker(
            examples, spec, days, name, checkpoint_dir=local / "checkpoints", on_epoch_end=epoch_logger(context, name),
            train_stream=stream,
        )  # fmt: skip
        result = trained.result
        training_curve_html(result.history, f"{name} on {spec.source}, {version}", local / "training_curve.html")
        export_recommender(
            result.model,
            warehouse.query("select * from user_features") if spec.user_id else None,
            warehouse.query("select * from item_features") if spec.item_id else None,
            _export_metadata(name, version, trained),
            local / "savedmodel",
        )
        onnx_metadata = {}
        if not result.model.multitask:
            rows = feature_arrays(trained.test.head(ONNX_PARITY_ROWS), spec)
            onnx_ranker = export_onnx(result.model, rows)
            onnx_ranker.save(local / "ranker.onnx")
            onnx_metadata = {
                "onnx_max_abs_diff": onnx_ranker.max_abs_difference,
                "onnx_hashed_inputs": len(onnx_ranker.hashed_inputs),
            }
        store.upload_dir(str(local), folder)
    epochs = len(result.history["loss"])
    context.log.info(f"{name}: {metrics_line(trained.metrics)}")
    return dg.MaterializeResult(
        metadata={
            **_version_metadata(spec.source, result.spec, version, trained),
            "epochs": epochs,
            "best_epoch": result.best_epoch or epochs,
            "train_seconds": round(result.seconds, 1),
            "examples_per_second": round(result.examples_per_second),
            "training_streamed": stream is not None,
            **lake.report_links("training_curve", f"{folder}/training_curve.html"),
            "checkpoints": lake.file_link(f"{folder}/checkpoints"),
            "savedmodel_path": lake.file_link(f"{folder}/savedmodel"),
            **({"onnx_path": lake.file_link(f"{folder}/ranker.onnx"), **onnx_metadata} if onnx_metadata else {}),
            **_track(
                context,
                tracking,
                spec.source,
                f"{name}-{version}",
                days,
                trained,
                result.spec,
                result.history,
                result.best_epoch,
            ),
        }
    )


def _retriever_partition(
    context: dg.AssetExecutionContext,
    name: str,
    warehouse: WarehouseResource,
    lake: LakeResource,
    pipeline: PipelineResource,
    tracking: TrackingResource,
) -> dg.MaterializeResult:
    from models.export.retrievers import export_retriever
    from models.training.curves import training_curve_html
    from models.training.retrievers import train_retriever

    spec = pipeline.feature_spec()
    if not spec.has_ids:
        reason = f"not applicable: {name} ranks items for users; the {spec.source} spec has no user and item ids"
        return _not_applicable(context, reason, spec.source)
    days, examples, catalogue = read_retrieval_window(context, warehouse, pipeline)
    store = lake.get_lake()
    version = f"{days[-1]:%Y%m%d}-{context.run_id[:8]}"
    folder = store.url("models", "zoo", name, version)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        trained = train_retriever(name, examples, spec, days, checkpoint_dir=local / "checkpoints", catalogue=catalogue)
        if trained.history:
            training_curve_html(trained.history, f"{name} on {spec.source}, {version}", local / "training_curve.html")
        exported = export_retriever(
            trained,
            _export_metadata(name, version, trained),
            local / "savedmodel",
        )
        written = {path.name for path in local.iterdir()}
        store.upload_dir(str(local), folder)
    retriever = trained.retriever
    context.log.info(f"{name}: {metrics_line(trained.metrics)}")
    epochs = len(trained.history["loss"]) if trained.history else retriever.epochs
    optional = {
        "epochs": epochs,
        "best_epoch": trained.best_epoch,
        "checkpoints": lake.file_link(f"{folder}/checkpoints") if "checkpoints" in written else None,
    }
    if "training_curve.html" in written:
        optional.update(lake.report_links("training_curve", f"{folder}/training_curve.html"))
    return dg.MaterializeResult(
        metadata={
            **_version_metadata(spec.source, trained.spec, version, trained),
            "catalogue_items": len(trained.catalogue),
            "positives_only": catalogue is not None,
            "train_seconds": round(retriever.seconds, 1),
            "examples_per_second": round(retriever.examples_per_second),
            **{key: value for key, value in optional.items() if value is not None},
            "savedmodel_path": lake.file_link(f"{folder}/savedmodel"),
            "topk_agreement": exported.topk_agreement,
            **_track(
                context,
                tracking,
                spec.source,
                f"{name}-{version}",
                days,
                trained,
                trained.spec,
                trained.history,
                trained.best_epoch,
            ),
        }
    )
