"""BentoML service serving the exported recommender.

Run: ``RECLAKE_BENTO_MODEL_TAG=reclake_recommender:<version> bentoml serve
serving.service:RecommenderService``. The tag must name an exact version (the one
training recorded); ``latest`` is refused so a deployment never changes model silently.

Endpoints (JSON, all ``POST``):

- ``/recommend`` ``{"user_id", "k"=10, "context": {<context columns>}}`` ->
  ``{"user_id", "items": [{"item_id", "score", "rank"}], "fallback", "model_version"}``;
  users unknown to the model get the popularity list with ``"fallback": "popularity"``.
  Only for sources with user and item ids; ``hour_of_day`` / ``day_of_week`` default
  to the request time (UTC).
- ``/predict`` ``{"rows": [{<ids and context columns>}]}`` -> ``{"scores": [...],
  "score_kind", "model_version"}``: pCTR for click sources, the predicted rating for
  rating sources.
- ``/model_info`` -> tag, version, source, inputs of each endpoint, training window
  and offline metrics.

BentoML also serves ``GET /readyz`` and ``GET /livez``. Invalid bodies get a 400 that
names the offending field.
"""

from __future__ import annotations

import os

from reclake.runtime import configure_process

configure_process()  # before anything imports tensorflow

from datetime import UTC, datetime  # noqa: E402

import bentoml  # noqa: E402
import pandas as pd  # noqa: E402
from bentoml.exceptions import InvalidArgument  # noqa: E402

from models.export.savedmodel import load_recommender  # noqa: E402
from serving.bento_store import SAVEDMODEL_SUBDIR  # noqa: E402
from serving.schemas import (  # noqa: E402
    ModelInfoResponse,
    PredictRequest,
    PredictResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RowValidator,
    context_fields,
    fill_derived_context,
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
            "e.g. reclake_synthetic:<version>"
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
    """Recommendations and scores from one pinned model; inputs follow its feature spec."""

    bento_model = bentoml.models.BentoModel(model_tag_from_env())

    def __init__(self) -> None:
        self.recommender = load_recommender(self.bento_model.path_of(SAVEDMODEL_SUBDIR))
        inputs = self.recommender.metadata["inputs"]
        spec = self.recommender.spec
        self.predict_rows = RowValidator(spec, inputs["predict"])
        self.context = RowValidator(spec, context_fields(spec, inputs["recommend"])) if "recommend" in inputs else None
        label = self.recommender.metadata["label"]
        self.score_kind = "probability" if label["kind"] == "binary" else label["column"]

    @bentoml.api(route="/recommend")
    def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Top-k items for one user, re-ranked by the ranker (popularity for unknown users)."""
        if self.context is None:
            raise InvalidArgument(
                f"the {self.recommender.spec.source} model cannot recommend: the source has no user and item ids; "
                "use /predict"
            )
        if request.k > self.recommender.item_count:
            raise InvalidArgument(f"k: at most {self.recommender.item_count} (the indexed items), got {request.k}")
        now = datetime.now(UTC)
        try:
            (context,) = self.context.validate([fill_derived_context(request.context, now.hour, now.weekday())], "context")
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        (recommendation,) = self.recommender.recommend([request.user_id], request.k, pd.DataFrame([context]))
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
        """The ranker's score for each row of request features."""
        try:
            rows = self.predict_rows.validate(request.rows, "rows")
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        outputs = self.recommender.predict_outputs(pd.DataFrame(rows))
        tasks = {name: values.tolist() for name, values in outputs.items() if name != "score"}
        return PredictResponse(
            scores=outputs["score"].tolist(),
            score_kind=self.score_kind,
            tasks=tasks or None,
            model_version=self.recommender.model_version,
        )

    @bentoml.api(route="/model_info")
    def model_info(self) -> ModelInfoResponse:
        """Which model is served: bento tag, version, source, inputs, training window, metrics."""
        metadata = self.recommender.metadata
        return ModelInfoResponse(
            bento_model_tag=str(self.bento_model.tag),
            model_version=self.recommender.model_version,
            source=metadata["source"],
            trained_on=[str(day) for day in metadata["trained_on"]],
            evaluated_on=str(metadata["evaluated_on"]),
            item_count=self.recommender.item_count,
            inputs=metadata["inputs"],
            metrics=metadata["metrics"],
        )
