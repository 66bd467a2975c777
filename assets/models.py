"""Models: a two-stage recommender (two-tower retrieval + DCN pCTR ranking), trained and exported."""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from resources.lake import LakeResource
from resources.model_store import ModelStoreResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource
from sources.truth import load_truth


@dataclass(frozen=True)
class ExportedModel:
    """What ``recommender_model`` hands to serving: where the SavedModel is, and how good it is."""

    model_version: str
    savedmodel_url: str
    metrics: dict[str, float]
    promote: bool
    promotion_reason: str


@dg.asset(
    group_name="models",
    deps=[dg.AssetKey("training_examples"), dg.AssetKey("user_features"), dg.AssetKey("item_features")],
    kinds={"tensorflow"},
    pool="duckdb_warehouse",
)
def recommender_model(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    lake: LakeResource,
    pipeline: PipelineResource,
    model_store: ModelStoreResource,
) -> dg.Output[ExportedModel]:
    """Two-tower retrieval and DCN ranking trained on the newest days, exported as one SavedModel.

    The window is the newest ``training_window_days`` days of ``training_examples``: all
    but the newest train, the newest is held out and evaluated (AUC, logloss, and on the
    synthetic source the Bayes-optimal logloss of the true pCTR; Recall@K for
    retrieval). The SavedModel (``recommend``, ``retrieve``, ``predict``, ``rank`` signatures) goes
    to ``models/<version>/savedmodel`` in the lake.

    Champion and challenger: the model being served is scored on the same held-out rows
    (through its ``rank`` signature); the new model is marked for promotion only if its
    ranking AUC is at least as good. ``bento_model`` registers every model and serves
    only promoted ones.
    """
    from models.evaluation import auc
    from models.export import export_recommender
    from models.popularity import popular_items
    from models.promotion import decide_promotion
    from models.training import (
        TRUE_PCTR_COLUMN,
        evaluate_ranking,
        evaluate_retrieval,
        split_by_day,
        train_ranking,
        train_retrieval,
    )

    days = warehouse.event_dates("training_examples")[-pipeline.training_window_days :]
    if len(days) < 2:
        raise dg.Failure(f"need at least two days of training_examples (train + evaluate), found {len(days)}")
    examples = warehouse.read_days("training_examples", days[0], days[-1])
    store = lake.get_lake()
    truth = load_truth(store, pipeline.source, [days[-1]])
    if truth is not None:
        examples = examples.merge(truth[["event_id", "true_pctr"]].rename(columns={"true_pctr": TRUE_PCTR_COLUMN}), on="event_id", how="left")
    train, test = split_by_day(examples, [days[-1].isoformat()])
    user_features = warehouse.query("select * from user_features")
    item_features = warehouse.query("select * from item_features")

    ranking = train_ranking(train)
    retrieval = train_retrieval(train)
    ranking_metrics = evaluate_ranking(ranking.model, test)
    retrieval_metrics = evaluate_retrieval(retrieval.model, test, item_features, k=min(50, len(item_features)))
    metrics = {
        **{f"ranking_{name}": float(value) for name, value in ranking_metrics.items()},
        **{f"retrieval_{name}": float(value) for name, value in retrieval_metrics.items()},
    }
    decision = decide_promotion(
        "ranking_auc", metrics["ranking_auc"], _champion_auc(context, model_store, test, auc)
    )
    context.log.info(decision.reason)
    version = f"{days[-1]:%Y%m%d}-{context.run_id[:8]}"
    url = store.url("models", version, "savedmodel")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "savedmodel"
        export_recommender(
            ranking.model,
            retrieval.model,
            user_features,
            item_features,
            popular_items(train),
            {
                "model_version": version,
                "trained_on": [days[0].isoformat(), days[-2].isoformat()],
                "evaluated_on": days[-1].isoformat(),
                "metrics": metrics,
            },
            local,
            # What a user clicked in the training window is not recommended to them again.
            seen_items=train.loc[train["clicked"] == 1, ["user_id", "item_id"]].drop_duplicates(),
        )
        store.upload_dir(str(local), url)
    context.log.info(f"model {version}: {metrics}")
    return dg.Output(
        ExportedModel(
            model_version=version,
            savedmodel_url=url,
            metrics=metrics,
            promote=decision.promote,
            promotion_reason=decision.reason,
        ),
        metadata={
            "model_version": version,
            "savedmodel_path": dg.MetadataValue.path(url) if store.is_local else dg.MetadataValue.url(url),
            "trained_on": f"{days[0]} .. {days[-2]}",
            "evaluated_on": days[-1].isoformat(),
            "training_rows": len(train),
            "evaluation_rows": len(test),
            "metrics": dg.MetadataValue.json(metrics),
            # Flat numbers too, so the UI plots them across materializations.
            **{name: value for name, value in metrics.items()},
            "promote": decision.promote,
            "promotion_reason": decision.reason,
            "ranking_training_curve": dg.MetadataValue.md(_curve_table(ranking.history)),
            "ranking_train_seconds": round(ranking.seconds, 1),
            "retrieval_train_seconds": round(retrieval.seconds, 1),
        },
    )


def _champion_auc(context, model_store: ModelStoreResource, test, auc) -> float | None:
    """Ranking AUC of the served model on ``test``, or None if nothing comparable is served."""
    from models.export import load_recommender

    tag = model_store.pinned()
    if tag is None:
        return None
    try:
        champion = load_recommender(model_store.savedmodel_dir(tag))
        return float(auc(test["clicked"].to_numpy(), champion.rank(test)))
    except (KeyError, FileNotFoundError, ValueError) as error:  # no rank signature, or gone
        context.log.warning(f"cannot score the champion {tag} on the held-out day: {error}")
        return None


def _curve_table(history: dict[str, list[float]]) -> str:
    """Per-epoch training metrics as a Markdown table."""
    names = sorted(history)
    rows = [f"| {epoch} | " + " | ".join(f"{history[n][epoch - 1]:.5f}" for n in names) + " |"
            for epoch in range(1, len(history[names[0]]) + 1)] if names else []
    return "\n".join(["| epoch | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|", *rows])
