"""Request and response bodies of the recommender HTTP API (pydantic).

The envelopes are static; what a row or a context must hold depends on the served
model's source, so ``RowValidator`` builds a strict pydantic model per model from its
feature spec (input names, dtypes, allowed values and ranges) and validates each row
with it. Unknown fields, wrong JSON types and out-of-range values are rejected with a
400 response that names the row and the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from reclake.feature_spec import DERIVED_COLUMNS, FeatureSpec

MAX_K = 1000
MAX_PREDICT_ROWS = 1000
Id = Annotated[str, Field(min_length=1, max_length=256)]
_PYTHON_TYPES = {"string": str, "int": int, "float": float}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(_Request):
    """``POST /recommend`` body."""

    user_id: Id
    k: Annotated[int, Field(ge=1, le=MAX_K, description="How many items; at most the indexed items.")] = 10
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="The source's context columns (GET /model_info lists them); hour_of_day and "
        "day_of_week default to the request time (UTC).",
    )


class PredictRequest(_Request):
    """``POST /predict`` body: rows of the source's request features (ids and context)."""

    rows: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_PREDICT_ROWS)]


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    rank: int


class RecommendResponse(BaseModel):
    """``POST /recommend`` result; ``fallback`` is ``"popularity"`` for unknown users."""

    user_id: str
    items: list[RecommendedItem]
    fallback: Literal["popularity"] | None
    model_version: str


class PredictResponse(BaseModel):
    """``POST /predict`` result: one score per request row, in order. ``score_kind`` is
    ``probability`` (pCTR) for a click label, the label's name (e.g. ``rating``) otherwise."""

    scores: list[float]
    score_kind: str
    tasks: dict[str, list[float]] | None = Field(
        default=None, description="Multi-task rankers (ESMM, MMoE): pctr, pcvr and pctcvr per row."
    )
    model_version: str


class ModelInfoResponse(BaseModel):
    """``POST /model_info`` result: which model is served, what it takes and how it scored."""

    bento_model_tag: str
    model_version: str
    source: str
    trained_on: list[str]
    evaluated_on: str
    item_count: int
    inputs: dict[str, dict[str, str]]
    metrics: dict[str, Any]


class RowValidator:
    """Strict per-model validation of request rows against the feature spec.

    Args:
        spec: the served model's feature spec.
        fields: input name -> dtype, as the model's ``inputs`` metadata lists them.
    """

    def __init__(self, spec: FeatureSpec, fields: dict[str, str]) -> None:
        columns = {c.name: c for c in spec.model_features}
        definitions: dict[str, Any] = {}
        for name, dtype in fields.items():
            column = columns.get(name)
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
            if column is not None and column.nullable:
                annotation = annotation | None
            definitions[name] = (Annotated[annotation, Field(**constraints)], ...)
        self.model = create_model("RequestRow", __config__=ConfigDict(extra="forbid", strict=True), **definitions)

    def validate(self, rows: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
        """The rows, validated and typed.

        Raises:
            ValueError: naming the row index (when several) and each offending field.
        """
        out = []
        for index, row in enumerate(rows):
            try:
                out.append(self.model.model_validate(row).model_dump())
            except ValidationError as error:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '<row>'}: {e['msg']}" for e in error.errors()
                )
                where = f"{what}[{index}]" if len(rows) > 1 or what == "rows" else what
                raise ValueError(f"invalid {where}: {problems}") from None
        return out


def context_fields(spec: FeatureSpec, inputs: dict[str, str]) -> dict[str, str]:
    """The context inputs of ``recommend`` (everything but ``user_id`` and ``k``)."""
    return {name: dtype for name, dtype in inputs.items() if name not in ("user_id", "k")}


def fill_derived_context(context: dict[str, Any], hour: int, weekday: int) -> dict[str, Any]:
    """``context`` with ``hour_of_day`` / ``day_of_week`` filled from the request time when absent."""
    filled = dict(context)
    defaults = {"hour_of_day": hour, "day_of_week": weekday}
    for name in DERIVED_COLUMNS:
        filled.setdefault(name, defaults[name])
    return filled
