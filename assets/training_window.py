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
    if len(days) >= 3:
        rows = warehouse.count_days("training_examples", days[0], days[-1])
        if rows > pipeline.stream_training_rows:
            context.log.info(f"{rows} rows > stream_training_rows {pipeline.stream_training_rows}: streaming")
            stream = ParquetWindow(warehouse.export_days("training_examples", days[:-2], folder))
            positives = warehouse.query(
                "select * from training_examples where event_date between ? and ? and is_positive = 1",
                [days[0], days[-3]],
            )
            return TrainingWindow(days, warehouse.read_days("training_examples", days[-2], days[-1]), stream, positives)
    return TrainingWindow(days, warehouse.read_days("training_examples", days[0], days[-1]), None, None)
