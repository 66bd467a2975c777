"""Models: the source's recommender (zoo ranker + two-tower retrieval where it has ids), trained and exported."""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from assets.progress import epoch_logger, metrics_line
from assets.training_window import read_training_window
from resources.lake import LakeResource
from resources.model_store import ModelStoreResource
from resources.pipeline import PipelineResource
from resources.tracking import TrackingResource
from resources.warehouse import WarehouseResource
from sources.truth import with_true_pctr


@dataclass(frozen=True)
class ServingCandidate:
    """What ``recommender_model`` hands to serving: where the SavedModel is, and how good it is."""

    model_version: str
    savedmodel_url: str
    metrics: dict[str, float]
    promote: bool
    promotion_reason: str


@dg.asset(
    group_name="models",
    # After served_model_quality: in a day's run, the model that served the day is judged
    # on it before a new one replaces it.
    deps=[
        dg.AssetKey("training_examples"),
        dg.AssetKey("user_features"),
        dg.AssetKey("item_features"),
        dg.AssetKey("served_model_quality"),
    ],
    kinds={"tensorflow"},
    pool="duckdb_warehouse",
)
def recommender_model(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    lake: LakeResource,
    pipeline: PipelineResource,
    model_store: ModelStoreResource,
    tracking: TrackingResource,
) -> dg.Output[ServingCandidate]:
    """The source's ranker (and two-tower retrieval, where it has ids), trained on the
    newest days and exported as one SavedModel.

    The window is the newest ``training_window_days`` days of ``training_examples``: the
    newest is held out for testing, the one before is the validation day for early
    stopping, the rest train. The ranker is the configured zoo model (``ranker_config``)
    over the source's feature spec, or with ``ranker_config: auto`` the best of
    ``auto_candidates`` on the validation day (``models.selection``; every candidate's
    validation and held-out figures, the choice and its margin in ``ranker_selection``;
    for a source with ids the served two-tower is chosen the same way among the exportable
    two-tower variants and popularity, ``models.retriever_selection``, in
    ``retriever_selection``; every candidate and sweep trial is an MLflow child run).
    Metrics on the held-out day: AUC, logloss, normalized entropy and calibration for a
    click label (plus the Bayes-optimal logloss of the true pCTR on the synthetic source),
    RMSE and MAE for a rating label, Recall@K for retrieval. The SavedModel goes to ``models/<version>/savedmodel``.

    Champion and challenger: the served model of the same source is scored on the same
    held-out rows (its ``rank`` signature); the new model is marked for promotion only
    if it is at least as good on the source's promotion metric (AUC, or RMSE for
    ratings). ``bento_model`` registers every model and serves only promoted ones.
    """
    from models.export.savedmodel import export_recommender
    from models.promotion import decide_promotion
    from models.recommender import promotion_metric, train_recommender
    from models.selection import AUTO, select_ranker

    spec = pipeline.feature_spec()
    # A window above stream_training_rows trains streamed from Parquet (bounded memory),
    # exported to a folder that lives until the ranker is trained.
    window_dir = tempfile.TemporaryDirectory(prefix="reclake-window-")
    days, examples, stream, positives = read_training_window(context, warehouse, pipeline, window_dir.name)
    store = lake.get_lake()
    # The synthetic source knows the true pCTR of the held-out day: the Bayes-optimal floor.
    examples = with_true_pctr(examples, store, pipeline.source, days[-1])
    user_features = warehouse.query("select * from user_features") if spec.user_id else None
    item_features = warehouse.query("select * from item_features") if spec.item_id else None

    selection = None
    if pipeline.ranker_config == AUTO:
        selection = select_ranker(
            examples, spec, days, pipeline.auto_candidates, budget_s=pipeline.auto_budget_s,
            sweep_trials=pipeline.auto_sweep_trials, epoch_hook=lambda name: epoch_logger(context, name),
            log=context.log.info, train_stream=stream,
        )  # fmt: skip
        context.log.info(selection.markdown().splitlines()[-1])
    # With auto and ids, the served two-tower is chosen too (models.retriever_selection).
    retrievers = _select_retriever(context, pipeline, spec, examples, days, item_features, selection, positives)
    trained = train_recommender(
        examples, spec, days, item_features, ranker=pipeline.ranker_config, on_epoch_end=epoch_logger(context, "ranker"),
        ranker_run=selection.chosen if selection else None,
        **({"retrieval_config": retrievers.served_config} if retrievers else {}),
        train_stream=stream, train_positives=positives, mixed_precision=pipeline.mixed_precision(),
    )  # fmt: skip
    window_dir.cleanup()
    metrics = trained.metrics
    metric, higher_is_better = promotion_metric(spec)
    decision = decide_promotion(
        metric,
        metrics[metric],
        _champion_score(context, model_store, trained.test, metric),
        higher_is_better=higher_is_better,
    )
    context.log.info(decision.reason)
    version = f"{days[-1]:%Y%m%d}-{context.run_id[:8]}"
    url = store.url("models", version, "savedmodel")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "savedmodel"
        export_recommender(
            trained.ranking.model,
            user_features,
            item_features,
            {
                "model_version": version,
                "trained_on": [d.isoformat() for d in trained.trained_on],
                "evaluated_on": trained.evaluated_on.isoformat(),
                "metrics": metrics,
            },
            local,
            retrieval_model=trained.retrieval.model if trained.retrieval else None,
            popular_items=trained.popular_items,
            # What a user liked in the training window is not recommended to them again.
            seen_items=trained.seen_items,
        )
        store.upload_dir(str(local), url)
    context.log.info(f"model {version}: {metrics_line(metrics)}")
    from models.tracking import data_window

    # Every candidate (and sweep trial) of the automatic choices is a child run of this one.
    children = [
        *(selection.tracked_children() if selection else []),
        *(retrievers.tracked_children() if retrievers else []),
    ]
    tracked = tracking.log_training(
        context, spec.source, version, model_config=trained.ranking.spec.to_dict(), history=trained.ranking.history,
        metrics=metrics, data_window=data_window(days, trained), best_epoch=trained.ranking.best_epoch,
        children=children,
    )  # fmt: skip
    return dg.Output(
        ServingCandidate(
            model_version=version,
            savedmodel_url=url,
            metrics=metrics,
            promote=decision.promote,
            promotion_reason=decision.reason,
        ),
        metadata={
            "model_version": version,
            "source": spec.source,
            "ranker": trained.ranking.spec.type,
            "savedmodel_path": lake.file_link(url),
            "trained_on": f"{trained.trained_on[0]} .. {trained.trained_on[1]}",
            "evaluated_on": trained.evaluated_on.isoformat(),
            "training_rows": len(trained.train),
            "validation_rows": 0 if trained.validation is None else len(trained.validation),
            "evaluation_rows": len(trained.test),
            "metrics": dg.MetadataValue.json(metrics),
            # Flat numbers too, so the UI plots them across materializations.
            **{name: value for name, value in metrics.items()},
            "promotion_metric": metric,
            "promote": decision.promote,
            "promotion_reason": decision.reason,
            "ranking_best_epoch": trained.ranking.best_epoch or len(next(iter(trained.ranking.history.values()))),
            "ranking_training_curve": dg.MetadataValue.md(_curve_table(trained.ranking.history)),
            "ranking_train_seconds": round(trained.ranking.seconds, 1),
            "ranking_examples_per_second": round(trained.ranking.examples_per_second),
            "retrieval_train_seconds": round(trained.retrieval.seconds, 1) if trained.retrieval else 0.0,
            **_training_environment(trained.ranking.environment),
            **(_selection_metadata(selection) if selection else {}),
            **(_retriever_metadata(retrievers) if retrievers else {}),
            **tracked,
        },
    )


def _training_environment(environment: dict | None) -> dict:
    """Device, strategy, replicas, precision policy, streaming and peak RSS of the ranker's training."""
    if not environment:
        return {}
    return {
        "training_device": environment["device"],
        "training_gpus": ", ".join(environment["gpus"]) or "none",
        "training_strategy": environment["strategy"],
        "training_replicas": environment["replicas"],
        "training_precision_policy": environment["precision_policy"],
        "training_streamed": environment["streamed"],
        "training_peak_rss_mb": environment["peak_rss_mb"],
    }


def _selection_metadata(selection) -> dict:
    """``ranker_config: auto``'s candidates, choice and margin (``models.selection.Selection``)."""
    return {
        "ranker_selection": dg.MetadataValue.md(selection.markdown()),
        "ranker_choice": dg.MetadataValue.json(selection.summary()),
        "ranker_chosen": selection.chosen_config,
        "ranker_selection_seconds": round(selection.seconds, 1),
        **({"ranker_choice_margin": selection.margin} if selection.margin is not None else {}),
    }


def _select_retriever(
    context, pipeline: PipelineResource, spec, examples, days, item_features, selection, train_positives
):
    """With ``ranker_config: auto`` and ids: the retrieval choice (``models.retriever_selection``)
    within what the ranker choice left of ``auto_budget_s``; None otherwise, or when it
    cannot choose (a warning says why; the default two-tower is trained). With a streamed
    window, the candidates fit on its ``train_positives``."""
    from models.retriever_selection import select_retriever

    if selection is None or not spec.has_ids:
        return None
    try:
        retrievers = select_retriever(
            examples, spec, days, item_features, budget_s=max(pipeline.auto_budget_s - selection.seconds, 0.0),
            log=context.log.info, train_positives=train_positives,
        )  # fmt: skip
    except ValueError as error:
        context.log.warning(f"no automatic retrieval choice, the default two-tower is trained: {error}")
        return None
    context.log.info(retrievers.verdict())
    return retrievers


def _retriever_metadata(retrievers) -> dict:
    """The retrieval choice's candidates, choice, margin and served two-tower."""
    return {
        "retriever_selection": dg.MetadataValue.md(retrievers.markdown()),
        "retriever_choice": dg.MetadataValue.json(retrievers.summary()),
        "retriever_chosen": retrievers.chosen,
        "retriever_served": retrievers.served,
        "retriever_popularity_won": retrievers.popularity_won,
        "retriever_selection_seconds": round(retrievers.seconds, 1),
        **({"retriever_choice_margin": retrievers.margin} if retrievers.margin is not None else {}),
    }


def _champion_score(context, model_store: ModelStoreResource, test, metric: str) -> float | None:
    """The served model's ``metric`` on ``test``, or None if nothing comparable is served."""
    from models import evaluation
    from models.export.savedmodel import load_recommender
    from models.inputs.features import label_array

    tag = model_store.pinned()
    if tag is None:
        return None
    try:
        champion = load_recommender(model_store.savedmodel_dir(tag))
        scores = champion.rank(test)
        labels = label_array(test, champion.spec)
        return float(evaluation.rmse(labels, scores) if metric == "ranking_rmse" else evaluation.auc(labels, scores))
    except (KeyError, FileNotFoundError, ValueError) as error:  # another contract, or gone
        context.log.warning(f"cannot score the champion {tag} on the held-out day: {error}")
        return None


def _curve_table(history: dict[str, list[float]]) -> str:
    """Per-epoch training metrics as a Markdown table."""
    names = sorted(history)
    rows = (
        [
            f"| {epoch} | " + " | ".join(f"{history[n][epoch - 1]:.5f}" for n in names) + " |"
            for epoch in range(1, len(history[names[0]]) + 1)
        ]
        if names
        else []
    )
    return "\n".join(["| epoch | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|", *rows])
