"""Request and response bodies of the recommender HTTP API (pydantic).

Requests are strict: unknown fields, wrong JSON types and out-of-range values are
rejected, which BentoML turns into a 400 response that names the offending field.
Allowed devices, slot positions and hours come from ``models.features``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.features import DEVICES, HOURS_OF_DAY, SLOT_POSITIONS

MAX_TOP_K = 100
MAX_PREDICT_ROWS = 1000

Device = Literal[DEVICES]
Id = Annotated[str, Field(min_length=1, max_length=256)]
HourOfDay = Annotated[int, Field(ge=HOURS_OF_DAY[0], le=HOURS_OF_DAY[-1])]
SlotPosition = Annotated[int, Field(ge=SLOT_POSITIONS[0], le=SLOT_POSITIONS[-1])]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(_Request):
    """``POST /recommend`` body."""

    user_id: Id
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = 10
    device: Device = Field(default="mobile", description="Device the items will be shown on.")
    hour_of_day: HourOfDay | None = Field(
        default=None, description="Request hour (0..23, UTC); defaults to the current UTC hour."
    )


class PredictRow(_Request):
    """One (user, item, context) to score."""

    user_id: Id
    item_id: Id
    device: Device
    slot_position: SlotPosition
    hour_of_day: HourOfDay


class PredictRequest(_Request):
    """``POST /predict`` body."""

    rows: Annotated[list[PredictRow], Field(min_length=1, max_length=MAX_PREDICT_ROWS)]


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
    """``POST /predict`` result: one pCTR per request row, in order."""

    pctr: list[float]
    model_version: str


class ModelInfoResponse(BaseModel):
    """``POST /model_info`` result: which model is being served and how it scored."""

    bento_model_tag: str
    model_version: str
    trained_on: list[str]
    evaluated_on: str
    candidate_count: int
    metrics: dict[str, Any]
