"""Batch inference: every row of a day scored by a stored model, chunk by chunk, without Dagster.

``score_chunks`` takes ``training_examples`` rows as an iterable of frames (a DuckDB
record-batch stream, say), scores each through the model's ``rank`` signature (the rows'
own point-in-time features) and hands each chunk's predictions to a writer: only one
chunk is in memory at a time, however large the day.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.export.savedmodel import Recommender

DEFAULT_CHUNK_ROWS = 50_000
# What identifies a scored row, where the rows have it.
ID_COLUMNS = ("event_id", "event_date", "user_id", "item_id")


@dataclass
class BatchSummary:
    """What ``score_chunks`` did.

    Attributes:
        model_version: the scoring model's version.
        rows: rows scored.
        parts: where each chunk's predictions went (the writer's return values), in order.
        outputs: the model outputs written (``score``, plus ``pctr``, ``pcvr``,
            ``pctcvr`` for a multi-task ranker).
        seconds: wall-clock time, reading and writing included.
        mean_score: the mean ``score`` over every row (None without rows).
    """

    model_version: str
    rows: int = 0
    parts: list[str] = field(default_factory=list)
    outputs: tuple[str, ...] = ()
    seconds: float = 0.0
    mean_score: float | None = None


def prediction_frame(recommender: Recommender, rows: pd.DataFrame) -> pd.DataFrame:
    """One chunk's predictions.

    Args:
        recommender: the loaded model.
        rows: ``training_examples`` rows (the model's features; ids and labels where present).

    Returns:
        One row per input row, in order: ``ID_COLUMNS`` and the spec's label columns that
        ``rows`` has, ``score`` (then ``pctr``, ``pcvr``, ``pctcvr`` for a multi-task
        ranker) as float32, and ``model_version``.

    Raises:
        ValueError: empty ``rows``, or a feature missing or out of the spec's range.
    """
    outputs = recommender.rank_outputs(rows)
    keep = [c for c in (*ID_COLUMNS, *recommender.spec.label_columns) if c in rows.columns]
    frame = rows[keep].reset_index(drop=True)
    for name in ["score", *sorted(n for n in outputs if n != "score")]:
        frame[name] = np.asarray(outputs[name], dtype=np.float32)
    frame["model_version"] = recommender.model_version
    return frame


def score_chunks(
    recommender: Recommender,
    chunks: Iterable[pd.DataFrame],
    write_part: Callable[[int, pd.DataFrame], str],
) -> BatchSummary:
    """Score ``chunks`` one at a time and write each chunk's predictions.

    Args:
        recommender: the loaded model.
        chunks: ``training_examples`` rows in frames of bounded size; empty frames are skipped.
        write_part: ``(part index, predictions) -> where it went``, called once per
            non-empty chunk with ``prediction_frame``'s output.

    Returns:
        The summary; ``parts`` is empty when no chunk held a row.
    """
    started = time.perf_counter()
    summary = BatchSummary(model_version=recommender.model_version)
    score_sum = 0.0
    for chunk in chunks:
        if chunk.empty:
            continue
        predictions = prediction_frame(recommender, chunk)
        summary.parts.append(write_part(len(summary.parts), predictions))
        summary.rows += len(predictions)
        summary.outputs = tuple(c for c in predictions.columns if c in ("score", "pctr", "pcvr", "pctcvr"))
        score_sum += float(predictions["score"].to_numpy(dtype=np.float64).sum())
    summary.seconds = time.perf_counter() - started
    summary.mean_score = score_sum / summary.rows if summary.rows else None
    return summary
