"""The training window the model assets read: in memory, or streamed from Parquet."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, NamedTuple

import dagster as dg
import pandas as pd

from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource

if TYPE_CHECKING:
    from models.inputs.stream import ParquetWindow


class TrainingWindow(NamedTuple):
    """The newest ``training_window_days`` of ``training_examples``.

    Attributes:
        days: the window's days, oldest first.
        examples: every row of the window, or, when streamed, only the validation and
            test days (the newest two).
        stream: None, or the training days exported to Parquet as a
            ``models.inputs.stream.ParquetWindow``.
        positives: with ``stream``, the training days' positive rows (what retrieval
            reads); None otherwise.
    """

    days: list[dt.date]
    examples: pd.DataFrame
    stream: ParquetWindow | None
    positives: pd.DataFrame | None


def read_training_window(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    pipeline: PipelineResource,
    folder: str,
) -> TrainingWindow:
    """The window in memory, or, above ``stream_training_rows`` rows of at least 3 days,
    its training days exported to Parquet files in ``folder``, which must live until the
    model is trained."""
    from models.inputs.stream import ParquetWindow

    days = warehouse.window_days(pipeline.training_window_days)
    if _beyond_memory(context, warehouse, pipeline, days, "streaming"):
        stream = ParquetWindow(warehouse.export_days("training_examples", days[:-2], folder))
        positives = _positives(warehouse, days[0], days[-3])
        return TrainingWindow(days, warehouse.read_days("training_examples", days[-2], days[-1]), stream, positives)
    return TrainingWindow(days, warehouse.read_days("training_examples", days[0], days[-1]), None, None)


class RetrievalWindow(NamedTuple):
    """The newest ``training_window_days`` of ``training_examples``, as retrievers read it.

    Attributes:
        days: the window's days, oldest first.
        examples: every row of the window, or, above ``stream_training_rows`` rows of at
            least 3 days, only its positive rows (all a retriever fits and is scored on).
        catalogue: with positives only, every item id of the window (the items ranked);
            None otherwise (the items of ``examples``).
    """

    days: list[dt.date]
    examples: pd.DataFrame
    catalogue: list[str] | None


def read_retrieval_window(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, pipeline: PipelineResource
) -> RetrievalWindow:
    """The window for a retriever: in memory, or, where ``read_training_window`` would
    stream, its positive rows and its catalogue (memory bounded by the positives)."""
    days = warehouse.window_days(pipeline.training_window_days)
    if _beyond_memory(context, warehouse, pipeline, days, "positives only"):
        items = warehouse.query(
            "select distinct item_id from training_examples where event_date between ? and ?", [days[0], days[-1]]
        )
        return RetrievalWindow(days, _positives(warehouse, days[0], days[-1]), items["item_id"].astype(str).tolist())
    return RetrievalWindow(days, warehouse.read_days("training_examples", days[0], days[-1]), None)


def _beyond_memory(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    pipeline: PipelineResource,
    days: list[dt.date],
    what: str,
) -> bool:
    """Whether the window of ``days`` (at least 3) holds more than ``stream_training_rows``
    rows; logs ``what`` is done about it when it does."""
    if len(days) < 3:
        return False
    rows = warehouse.count_days("training_examples", days[0], days[-1])
    if rows <= pipeline.stream_training_rows:
        return False
    context.log.info(f"{rows} rows > stream_training_rows {pipeline.stream_training_rows}: {what}")
    return True


def _positives(warehouse: WarehouseResource, first_day: dt.date, last_day: dt.date) -> pd.DataFrame:
    """The positive rows of ``training_examples`` from ``first_day`` to ``last_day``, in time order."""
    return warehouse.query(
        "select * from training_examples where event_date between ? and ? and is_positive = 1"
        " order by event_ts, event_id",
        [first_day, last_day],
    )
