"""BentoML service serving the exported recommender.

Run: ``RECLAKE_BENTO_MODEL_TAG=reclake_recommender:<version> bentoml serve
serving.service:RecommenderService``. The tag must name an exact version (the one
training recorded); ``latest`` is refused so a deployment never changes model silently.

Endpoints (JSON, all ``POST``):

- ``/recommend`` ``{"user_id", "top_k"=10, "device"="mobile", "hour_of_day"=now (UTC)}``
  -> ``{"user_id", "items": [{"item_id", "score", "rank"}], "fallback", "model_version"}``;
  users unknown to the model get the popularity list with ``"fallback": "popularity"``.
- ``/predict`` ``{"rows": [{"user_id", "item_id", "device", "slot_position",
  "hour_of_day"}]}`` -> ``{"pctr": [...], "model_version"}``.
- ``/model_info`` -> tag, version, training window and offline metrics.

BentoML also serves ``GET /readyz`` and ``GET /livez``. Invalid bodies get a 400 that
names the offending field.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before anything imports tensorflow

from datetime import UTC, datetime  # noqa: E402

import bentoml  # noqa: E402
import pandas as pd  # noqa: E402

from models.export import load_recommender  # noqa: E402
from serving.bento_store import SAVEDMODEL_SUBDIR  # noqa: E402
from serving.schemas import (  # noqa: E402
    ModelInfoResponse,
    PredictRequest,
    PredictResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
)

MODEL_TAG_ENV = "RECLAKE_BENTO_MODEL_TAG"


def model_tag_from_env() -> str:
    """Read the bento model tag to serve from ``RECLAKE_BENTO_MODEL_TAG``.

    Raises:
        RuntimeError: if the variable is unset, malformed, or does not pin a version
            (no ``:<version>`` or ``:latest``).
    """
    value = os.environ.get(MODEL_TAG_ENV, "").strip()
    if not value:
        raise RuntimeError(
            f"{MODEL_TAG_ENV} is not set: set it to the bento model tag that training recorded, "
            "e.g. reclake_recommender:<version>"
        )
    try:
        tag = bentoml.Tag.from_str(value)
    except ValueError as error:
        raise RuntimeError(f"{MODEL_TAG_ENV}={value!r} is not a valid bento tag: {error}") from error
    if tag.version in (None, "latest"):
        raise RuntimeError(
            f"{MODEL_TAG_ENV}={value!r} does not pin a model version; use the exact tag training "
            "recorded (name:version), never latest"
        )
    return str(tag)


@bentoml.service(name="reclake_recommender", traffic={"timeout": 30})
class RecommenderService:
    """Recommendations and pCTR predictions from one pinned recommender model."""

    bento_model = bentoml.models.BentoModel(model_tag_from_env())

    def __init__(self) -> None:
        self.recommender = load_recommender(self.bento_model.path_of(SAVEDMODEL_SUBDIR))

    @bentoml.api(route="/recommend")
    def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Top-k items for one user, re-ranked by pCTR (popularity for unknown users)."""
        hour = request.hour_of_day if request.hour_of_day is not None else datetime.now(UTC).hour
        (recommendation,) = self.recommender.recommend(
            [request.user_id], top_k=request.top_k, hour_of_day=hour, device=request.device
        )
        return RecommendResponse(
            user_id=recommendation.user_id,
            items=[
                RecommendedItem(item_id=item.item_id, score=item.score, rank=rank)
                for rank, item in enumerate(recommendation.items, start=1)
            ],
            fallback=recommendation.fallback,
            model_version=self.recommender.model_version,
        )

    @bentoml.api(route="/predict")
    def predict(self, request: PredictRequest, /) -> PredictResponse:
        """pCTR for each (user, item, device, slot_position, hour_of_day) row."""
        rows = pd.DataFrame([row.model_dump() for row in request.rows])
        return PredictResponse(
            pctr=[float(p) for p in self.recommender.predict(rows)],
            model_version=self.recommender.model_version,
        )

    @bentoml.api(route="/model_info")
    def model_info(self) -> ModelInfoResponse:
        """Which model is served: bento tag, model version, training window, metrics."""
        metadata = self.recommender.metadata
        return ModelInfoResponse(
            bento_model_tag=str(self.bento_model.tag),
            model_version=self.recommender.model_version,
            trained_on=[str(day) for day in metadata["trained_on"]],
            evaluated_on=str(metadata["evaluated_on"]),
            candidate_count=self.recommender.candidate_count,
            metrics=metadata["metrics"],
        )
