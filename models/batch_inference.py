"""Batch inference: every row of a day scored by a stored model, and every active user's
top-k, chunk by chunk, without Dagster.

``score_chunks`` takes ``training_examples`` rows as an iterable of frames (a DuckDB
record-batch stream, say), scores each through the model's ``rank`` signature (the rows'
own point-in-time features) and hands each chunk's predictions to a writer: only one
chunk is in memory at a time, however large the day.

``recommend_chunks`` does the same for a model with retrieval (sources with user and item
ids): it takes the day's active users in chunks (one row per user with the context of
their newest event) and writes each user's top ``k`` through the model's ``recommend``
signature (two-tower candidates re-ranked by the ranker, the training window's seen items
left out; users the model does not know get the popularity list, flagged
``popularity_fallback``), one row per (user, rank).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.export.savedmodel import Recommender

DEFAULT_CHUNK_ROWS = 50_000
DEFAULT_TOP_K = 10
DEFAULT_CHUNK_USERS = 2_000
"""Users recommended for per ``recommend`` call and Parquet part: each retrieves
``max(k, 100)`` candidates, so a chunk ranks at most 200,000 (user, item) rows."""
TOPK_COLUMNS = ("user_id", "rank", "item_id", "score", "model_version", "popularity_fallback")
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


@dataclass
class TopKSummary:
    """What ``recommend_chunks`` did.

    Attributes:
        model_version: the recommending model's version.
        k: items asked per user (capped at the model's indexed items).
        users: users recommended for; rows: (user, rank) rows written.
        fallback_users: users unknown to the model, served the popularity list.
        parts: where each chunk's rows went (the writer's return values), in order.
        seconds: wall-clock time, reading and writing included.
    """

    model_version: str
    k: int
    users: int = 0
    rows: int = 0
    fallback_users: int = 0
    parts: list[str] = field(default_factory=list)
    seconds: float = 0.0


def topk_frame(recommender: Recommender, users: pd.DataFrame, k: int) -> pd.DataFrame:
    """One chunk of users' top ``k``.

    Args:
        recommender: a loaded model with retrieval (``Recommender.can_recommend``).
        users: one row per user: ``user_id`` and the spec's context columns.
        k: items per user, 1 .. the model's indexed items.

    Returns:
        ``TOPK_COLUMNS``: one row per (user, rank), ranks from 1, best first; a user whose
        unseen candidates run out gets fewer than ``k`` rows.

    Raises:
        ValueError: no retrieval in the model, empty ``users``, ``k`` out of range, or a
            context column missing or out of the spec's range.
    """
    recommendations = recommender.recommend(users["user_id"].astype(str).tolist(), k, users)
    user_ids, ranks, item_ids, scores, fallback = [], [], [], [], []
    for recommendation in recommendations:
        for rank, item in enumerate(recommendation.items, start=1):
            user_ids.append(recommendation.user_id)
            ranks.append(rank)
            item_ids.append(item.item_id)
            scores.append(item.score)
            fallback.append(recommendation.fallback == "popularity")
    return pd.DataFrame(
        {
            "user_id": pd.Series(user_ids, dtype=object),
            "rank": np.asarray(ranks, dtype=np.int32),
            "item_id": pd.Series(item_ids, dtype=object),
            "score": np.asarray(scores, dtype=np.float32),
            "model_version": recommender.model_version,
            "popularity_fallback": np.asarray(fallback, dtype=bool),
        },
        columns=list(TOPK_COLUMNS),
    )


def recommend_chunks(
    recommender: Recommender,
    user_chunks: Iterable[pd.DataFrame],
    write_part: Callable[[int, pd.DataFrame], str],
    k: int = DEFAULT_TOP_K,
) -> TopKSummary:
    """Every user's top ``k``, one chunk of users at a time.

    Args:
        recommender: a loaded model with retrieval.
        user_chunks: frames of at most a few thousand users (``user_id`` + context
            columns, one row per user); empty frames are skipped.
        write_part: ``(part index, top-k rows) -> where it went``, once per non-empty chunk.
        k: items per user; capped at the model's indexed items.

    Raises:
        ValueError: the model has no retrieval, or ``k`` < 1.
    """
    if not recommender.can_recommend:
        raise ValueError(f"the {recommender.spec.source} model has no retrieval: no top-k to write")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    started = time.perf_counter()
    summary = TopKSummary(model_version=recommender.model_version, k=min(k, recommender.item_count))
    for users in user_chunks:
        if users.empty:
            continue
        rows = topk_frame(recommender, users.reset_index(drop=True), summary.k)
        summary.parts.append(write_part(len(summary.parts), rows))
        summary.users += len(users)
        summary.rows += len(rows)
        summary.fallback_users += int(rows.loc[rows["popularity_fallback"], "user_id"].nunique())
    summary.seconds = time.perf_counter() - started
    return summary
