"""Serving: the exported model registered in BentoML's model store and pinned for `bentoml serve`."""

import dagster as dg

from assets.models import ExportedModel
from resources.lake import LakeResource
from resources.model_store import ModelStoreResource


@dg.asset(group_name="serving", kinds={"bentoml"})
def bento_model(
    context: dg.AssetExecutionContext,
    recommender_model: ExportedModel,
    lake: LakeResource,
    model_store: ModelStoreResource,
) -> dg.MaterializeResult:
    """The recommender in the BentoML model store, its tag pinned as the one to serve.

    ``serving/service.py`` loads the pinned tag (``make serve`` passes it as
    ``RECLAKE_BENTO_MODEL_TAG``), never ``:latest``.
    """
    tag = model_store.register(
        lake.get_lake(),
        recommender_model.savedmodel_url,
        metadata={"model_version": recommender_model.model_version, **recommender_model.metrics},
        labels={"model_version": recommender_model.model_version, "dagster_run_id": context.run_id},
    )
    previous = model_store.pinned()
    model_store.pin(tag)
    context.log.info(f"serving {tag} (was {previous})")
    return dg.MaterializeResult(
        metadata={
            "bento_model_tag": tag,
            "model_version": recommender_model.model_version,
            "previous_tag": previous or "",
            "serve_command": f"RECLAKE_BENTO_MODEL_TAG={tag} bentoml serve serving.service:RecommenderService",
        }
    )
