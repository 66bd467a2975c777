"""Serving: the exported model registered in BentoML's model store and pinned for `bentoml serve`."""

import dagster as dg

from assets.models import ServingCandidate
from resources.lake import LakeResource
from resources.model_store import ModelStoreResource
from resources.online_store import OnlineStoreResource
from resources.pipeline import PipelineResource


@dg.asset(group_name="serving", kinds={"bentoml"})
def bento_model(
    context: dg.AssetExecutionContext,
    recommender_model: ServingCandidate,
    lake: LakeResource,
    model_store: ModelStoreResource,
    online_store: OnlineStoreResource,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    """The recommender in the BentoML model store; the pinned tag is the one served.

    Every trained model is registered (labelled ``champion`` or ``challenger``), so the
    history of versions and their metrics is in the store; only a promoted model
    replaces the pinned tag. ``serving/service.py`` loads the pinned tag (``make serve``
    passes it as ``RECLAKE_BENTO_MODEL_TAG``), never ``:latest``, and a running service
    swaps in a newly pinned one by itself (``serving.hot_swap``).
    """
    stage = "champion" if recommender_model.promote else "challenger"
    registered = model_store.register(
        lake.get_lake(),
        recommender_model.savedmodel_url,
        metadata={"model_version": recommender_model.model_version, **recommender_model.metrics},
        labels={
            "model_version": recommender_model.model_version,
            "stage": stage,
            "dagster_run_id": context.run_id,
        },
    )
    previous = model_store.pinned()
    if recommender_model.promote:
        model_store.pin(registered)
    served = model_store.pinned()
    context.log.info(f"registered {registered} as {stage}; serving {served} ({recommender_model.promotion_reason})")
    return dg.MaterializeResult(
        metadata={
            "bento_model_tag": served,
            "registered_tag": registered,
            "stage": stage,
            "promotion_reason": recommender_model.promotion_reason,
            "model_version": recommender_model.model_version,
            "previous_tag": previous or "",
            "versions": dg.MetadataValue.md(_versions_table(model_store.versions())),
            "serve_command": model_store.serve_command(
                served,
                online_store_url=online_store.url,
                prediction_log_root=lake.root,
                s3_endpoint_url=lake.s3_endpoint_url,
                campaigns=pipeline.campaigns_path,
            ),
        }
    )


def _versions_table(versions: list[dict]) -> str:
    """The registered versions as a Markdown table (newest first, at most 20)."""
    lines = ["| tag | created | stage | ranking_auc | ranking_logloss |", "|---|---|---|---|---|"]
    for version in versions[:20]:
        metrics = version["metadata"]
        lines.append(
            f"| {version['tag']} | {version['created']} | {version['labels'].get('stage', '')} "
            f"| {metrics.get('ranking_auc', float('nan')):.4f} | {metrics.get('ranking_logloss', float('nan')):.4f} |"
        )
    return "\n".join(lines)
