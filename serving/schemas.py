"""Request and response bodies of the recommender HTTP API (pydantic).

What a request row or context must hold depends on the served model's source, so the
request models are built per model from its feature spec and its metadata
(``request_models``): every input with its JSON type, the allowed values of categorical
columns (enums), numeric ranges, and ``k`` up to the indexed items. The same models
validate requests (``serving.http_guard``) and generate the OpenAPI schema, so generated
clients and schema-driven tests see the real inputs. Unknown fields and wrong JSON types
are rejected (strict mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from reclake.feature_spec import DERIVED_COLUMNS, FeatureSpec

MAX_K = 1000
MAX_PREDICT_ROWS = 1000
_PYTHON_TYPES = {"string": str, "int": int, "float": float}
_STRICT = ConfigDict(extra="forbid", strict=True)


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    rank: int


DefaultsUsed = Field(
    default_factory=list,
    description="Entities (user, item) the online feature store did not hold; the model's "
    "defaults (no events, the rate prior, the median) were used for them.",
)


Arm = Field(default=None, description="The experiment arm that answered (RECLAKE_EXPERIMENT); null without one.")


class RecommendResponse(BaseModel):
    """``POST /recommend`` result; ``fallback`` is ``"popularity"`` for users unknown to the model."""

    request_id: str
    user_id: str
    items: list[RecommendedItem]
    fallback: Literal["popularity"] | None
    defaults_used: list[Literal["user", "item"]] = DefaultsUsed
    arm: str | None = Arm
    model_version: str


class PredictResponse(BaseModel):
    """``POST /predict`` result: one score per request row, in order. ``score_kind`` is
    ``probability`` (pCTR) for a click label, the label's name (e.g. ``rating``) otherwise."""

    request_id: str
    scores: list[float]
    score_kind: str
    tasks: dict[str, list[float]] | None = Field(
        default=None, description="Multi-task rankers (ESMM, MMoE): pctr, pcvr and pctcvr per row."
    )
    defaults_used: list[Literal["user", "item"]] = DefaultsUsed
    arm: str | None = Arm
    model_version: str


class ModelInfoResponse(BaseModel):
    """``POST /model_info`` result: which model is served, what it takes and how it scored,
    and the state of the serving tier around it."""

    bento_model_tag: str
    model_version: str
    source: str
    trained_on: list[str]
    evaluated_on: str
    item_count: int
    inputs: dict[str, dict[str, str]]
    metrics: dict[str, Any]
    online_store: str | None = Field(description="The online feature store, or null: features frozen at export.")
    online_features_version: str | None = Field(description="The store's served version of the features.")
    swaps: int = Field(description="Models swapped in since this worker started.")
    prediction_log: dict[str, Any] | None = Field(description="The prediction logger's counters, or null.")
    experiment: dict[str, Any] | None = Field(default=None, description="The A/B experiment: arms, shares, models.")
    campaigns: list[str] = Field(default_factory=list, description="Campaigns /bid bids for.")
    worker_pid: int | None = Field(default=None, description="The process id of the worker that answered.")


class ErrorResponse(BaseModel):
    """The body of every 4xx and 503 (docs/data-contracts.md)."""

    error: str
    field: str | None
    status: int
    retry_after_s: int | None = None


class NoRecommendRequest(BaseModel):
    """``POST /recommend`` of a source without user and item ids: always answered with a 400."""

    model_config = _STRICT
    user_id: Annotated[str, Field(min_length=1, max_length=256)]
    k: Annotated[int, Field(ge=1, le=MAX_K)] = 10
    context: dict[str, Any] = Field(default_factory=dict)


EventId = (
    Annotated[str | None, Field(min_length=1, max_length=256)],
    Field(
        default=None,
        description="The id of the event this row scores, if known: logged with the row's features (the "
        "served model's calibration joins the logged scores to the event's observed label); never scored.",
    ),
)
"""The optional ``event_id`` of a ``/predict`` row (not a model input; ``/bid`` rows have none)."""


@dataclass(frozen=True)
class RequestModels:
    """The request models of one served model.

    Attributes:
        recommend: the ``/recommend`` body (``NoRecommendRequest`` for a source without ids).
        predict: the ``/predict`` body: rows of ``row``'s inputs plus an optional ``event_id``.
        row: the model inputs of one row (what ``/bid`` builds per impression).
        context_columns: the context inputs of ``/recommend``.
    """

    recommend: type[BaseModel]
    predict: type[BaseModel]
    row: type[BaseModel]
    context_columns: tuple[str, ...]


def _field(spec: FeatureSpec, name: str, dtype: str, optional: bool = False) -> tuple[Any, Any]:
    """The pydantic (annotation, default) of one input, with the spec's values and range."""
    column = {c.name: c for c in spec.model_features}.get(name)
    constraints: dict[str, Any] = {}
    annotation: Any = _PYTHON_TYPES[dtype]
    if column is not None and column.values is not None:
        annotation = Literal[tuple(column.values)]
    if column is not None and column.min_value is not None:
        constraints["ge"] = column.min_value
    if column is not None and column.max_value is not None:
        constraints["le"] = column.max_value
    if dtype == "string" and name in ("user_id", "item_id"):
        constraints.update(min_length=1, max_length=256)
    if optional:
        constraints["description"] = "Defaults to the request time (UTC)."
    if (column is not None and column.nullable) or optional:
        annotation = annotation | None
    return Annotated[annotation, Field(**constraints)], (None if optional else ...)


def request_models(spec: FeatureSpec, inputs: dict[str, dict[str, str]], item_count: int) -> RequestModels:
    """The ``/recommend`` and ``/predict`` request models of a model with these inputs
    (the SavedModel metadata's ``inputs``) and ``item_count`` indexed items."""
    row = create_model(
        f"{spec.source.title()}Row",
        __config__=_STRICT,
        **{name: _field(spec, name, dtype) for name, dtype in inputs["predict"].items()},
    )
    predict_row = create_model(f"{spec.source.title()}PredictRow", __base__=row, event_id=EventId)
    predict = create_model(
        "PredictRequest",
        __config__=_STRICT,
        __doc__="``POST /predict`` body: rows of the source's request features (ids and context).",
        rows=(Annotated[list[predict_row], Field(min_length=1, max_length=MAX_PREDICT_ROWS)], ...),
    )
    if "recommend" not in inputs:
        return RequestModels(NoRecommendRequest, predict, row, ())
    context_inputs = {name: dtype for name, dtype in inputs["recommend"].items() if name not in ("user_id", "k")}
    context = create_model(
        f"{spec.source.title()}Context",
        __config__=_STRICT,
        **{name: _field(spec, name, dtype, optional=name in DERIVED_COLUMNS) for name, dtype in context_inputs.items()},
    )
    has_required = any(name not in DERIVED_COLUMNS for name in context_inputs)
    recommend = create_model(
        "RecommendRequest",
        __config__=_STRICT,
        __doc__="``POST /recommend`` body.",
        user_id=(Annotated[str, Field(min_length=1, max_length=256)], ...),
        k=(
            Annotated[
                int, Field(ge=1, le=min(MAX_K, item_count), description="How many items; at most the indexed items.")
            ],
            10,
        ),
        context=(context, ...) if has_required else (context, Field(default_factory=context)),
    )
    return RequestModels(recommend, predict, row, tuple(context_inputs))


def fill_derived_context(context: dict[str, Any], hour: int, weekday: int) -> dict[str, Any]:
    """``context`` with ``hour_of_day`` / ``day_of_week`` filled from the request time when absent."""
    filled = dict(context)
    defaults = {"hour_of_day": hour, "day_of_week": weekday}
    for name in DERIVED_COLUMNS:
        if filled.get(name) is None:
            filled[name] = defaults[name]
    return filled
