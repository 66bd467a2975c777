"""Batch: a stored model's scores for every row of a day, and its metrics on a chosen day."""

import json

import dagster as dg
from pydantic import Field

from assets.partitions import day_range_backfill, partition_days
from resources.lake import LakeResource
from resources.model_store import ModelStoreResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource
from sources.truth import with_true_pctr


class StoredModelConfig(dg.Config):
    """Which stored model a batch asset uses."""

    model_tag: str = Field(
        default="",
        description="A BentoML tag of the source's model store (name:version); empty: the served (pinned) model.",
    )


class BatchPredictionsConfig(StoredModelConfig):
    """Which stored model scores the day, how many rows at a time, and the top-k per user."""

    chunk_rows: int = Field(default=50_000, description="Rows scored and written per Parquet part.")
    top_k: int = Field(
        default=10,
        ge=0,
        description="Items per active user written to predictions/<source>/topk/ (models with retrieval); 0: none.",
    )
    chunk_users: int = Field(default=2_000, ge=1, description="Users recommended for and written per top-k part.")


def topk_dir(store, source: str, day) -> str:
    """Where a day's top-k lists go: ``predictions/<source>/topk/dt=YYYY-MM-DD/``."""
    return store.url("predictions", source, "topk", f"dt={day.isoformat()}")


def active_users(warehouse: WarehouseResource, day, context_columns, chunk_users: int):
    """The users with an event on ``day``, one row each (``user_id`` and the context
    columns of their newest event), ordered by ``user_id``, as frames of at most
    ``chunk_users`` rows streamed from DuckDB."""
    columns = ", ".join(["user_id", *context_columns])
    sql = f"""
        select {columns} from training_examples
        where event_date = ? and user_id is not null
        qualify row_number() over (partition by user_id order by event_ts desc, event_id desc) = 1
        order by user_id
    """
    with warehouse.connect() as connection:
        relation = connection.sql(sql, params=[day])
        reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
        for batch in reader(chunk_users):
            yield batch.to_pandas()


def _model_tag(config: StoredModelConfig, model_store: ModelStoreResource) -> str:
    tag = config.model_tag or model_store.pinned()
    if not tag:
        raise dg.Failure("no served model yet: materialize bento_model first (the main job does), or set model_tag")
    return tag


def batch_predictions(
    context: dg.AssetExecutionContext,
    config: BatchPredictionsConfig,
    warehouse: WarehouseResource,
    lake: LakeResource,
    pipeline: PipelineResource,
    model_store: ModelStoreResource,
) -> dg.MaterializeResult:
    """Every ``training_examples`` row of the day scored by the served model (or the
    stored version ``model_tag`` names), written to
    ``predictions/<source>/dt=YYYY-MM-DD/part-NNNNN.parquet``.

    The day is read from the warehouse as a stream of ``chunk_rows``-row record batches
    and each is scored through the model's ``rank`` signature (the rows' point-in-time
    features) and written as one part, so memory stays bounded on a day of any size. A
    row: ``event_id``, ``event_date``, the ids, the labels, ``score`` (plus ``pctr``,
    ``pcvr``, ``pctcvr`` for a multi-task ranker) and ``model_version``.

    For a model with retrieval (sources with user and item ids), every active user of the
    day (an event that day) also gets their top ``top_k`` through the model's
    ``recommend`` signature, with the context of their newest event, written
    ``chunk_users`` users at a time to
    ``predictions/<source>/topk/dt=YYYY-MM-DD/part-NNNNN.parquet``: ``user_id``, ``rank``
    (1 = best), ``item_id``, ``score``, ``model_version`` and ``popularity_fallback``
    (users the model does not know get the popularity list).
    """
    from models.batch_inference import score_chunks
    from models.export.savedmodel import load_recommender

    tag = _model_tag(config, model_store)
    recommender = load_recommender(model_store.savedmodel_dir(tag))
    store = lake.get_lake()
    for day in partition_days(context):
        folder = store.batch_predictions_dir(pipeline.source, day)
        store.remove(folder)  # a day scored again replaces its parts

        def write_part(index, predictions, folder=folder):
            url = f"{folder}/part-{index:05d}.parquet"
            store.write_parquet(predictions, url)
            return url

        summary = score_chunks(recommender, warehouse.iter_day("training_examples", day, config.chunk_rows), write_part)
        context.log.info(f"{day}: {summary.rows} rows scored by {summary.model_version} in {summary.seconds:.1f} s")
        topk = _write_topk(context, config, warehouse, store, lake, pipeline.source, recommender, day)
        context.add_asset_metadata(
            {
                **topk,
                "dagster/row_count": summary.rows,
                "rows": summary.rows,
                "parts": len(summary.parts),
                "seconds": round(summary.seconds, 2),
                "model_tag": tag,
                "model_version": summary.model_version,
                "outputs": ", ".join(summary.outputs),
                "mean_score": summary.mean_score,
                "path": lake.file_link(folder),
            },
            partition_key=day.isoformat(),
        )
    return dg.MaterializeResult()


def _write_topk(context, config, warehouse, store, lake, source, recommender, day) -> dict:
    """The day's top-k lists (``models.batch_inference.recommend_chunks``) and their
    metadata; nothing for a model without retrieval or ``top_k: 0``."""
    from models.batch_inference import recommend_chunks

    if config.top_k == 0 or not recommender.can_recommend:
        return {}
    folder = topk_dir(store, source, day)
    store.remove(folder)

    def write_part(index, rows):
        url = f"{folder}/part-{index:05d}.parquet"
        store.write_parquet(rows, url)
        return url

    context_columns = [c.name for c in recommender.spec.role_columns("context")]
    users = active_users(warehouse, day, context_columns, config.chunk_users)
    summary = recommend_chunks(recommender, users, write_part, k=config.top_k)
    context.log.info(
        f"{day}: top {summary.k} of {summary.users} active users ({summary.fallback_users} unknown: popularity)"
        f" by {summary.model_version} in {summary.seconds:.1f} s"
    )
    return {
        "topk_k": summary.k,
        "topk_users": summary.users,
        "topk_rows": summary.rows,
        "topk_fallback_users": summary.fallback_users,
        "topk_parts": len(summary.parts),
        "topk_seconds": round(summary.seconds, 2),
        "topk_path": lake.file_link(folder),
    }


def stored_model_evaluation(
    context: dg.AssetExecutionContext,
    config: StoredModelConfig,
    warehouse: WarehouseResource,
    lake: LakeResource,
    pipeline: PipelineResource,
    model_store: ModelStoreResource,
) -> dg.MaterializeResult:
    """A stored model's metrics on the day's ``training_examples`` rows (the served
    model, or any version ``model_tag`` names), written to
    ``reports/evaluations/<name>/<version>/dt=YYYY-MM-DD.json``.

    The metrics are those of ``models.evaluation`` (AUC, logloss, normalized entropy,
    calibration; RMSE and MAE for a rating label; the Bayes-optimal logloss on the
    synthetic source), computed by ``models.stored_evaluation.evaluate_stored_model``:
    materialize the same day with two ``model_tag`` values to compare two versions on the
    same rows (each materialization keeps its metrics in the catalog's history).
    """
    from models.stored_evaluation import evaluate_stored_model

    tag = _model_tag(config, model_store)
    store = lake.get_lake()
    savedmodel = model_store.savedmodel_dir(tag)
    for day in partition_days(context):
        examples = with_true_pctr(warehouse.read_days("training_examples", day, day), store, pipeline.source, day)
        if examples.empty:
            raise dg.Failure(f"training_examples holds no rows of {day}: materialize the day first")
        metrics = evaluate_stored_model(savedmodel, examples)
        url = store.evaluation_file(tag, day)
        report = {"model_tag": tag, "source": pipeline.source, "day": day.isoformat(), "metrics": metrics}
        store.write_bytes(url, json.dumps(report, indent=2).encode())
        context.log.info(f"{tag} on {day}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        context.add_asset_metadata(
            {
                "model_tag": tag,
                "metrics": dg.MetadataValue.json(metrics),
                **metrics,
                **lake.report_links("evaluation", url),
            },
            partition_key=day.isoformat(),
        )
    return dg.MaterializeResult()


def build_batch_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``batch_predictions`` and ``stored_model_evaluation`` on the source's daily
    ``partitions``, after the day's ``training_examples`` (and, for the served model,
    after ``bento_model``)."""
    deps = [dg.AssetKey("training_examples"), dg.AssetKey("bento_model")]
    common = {
        "partitions_def": partitions,
        "backfill_policy": day_range_backfill,
        "group_name": "batch",
        "deps": deps,
        "pool": "duckdb_warehouse",
    }
    return [
        dg.asset(kinds={"tensorflow", "parquet"}, **common)(batch_predictions),
        dg.asset(kinds={"tensorflow", "json"}, **common)(stored_model_evaluation),
    ]
