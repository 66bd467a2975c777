"""The served model on one day as an Evidently snapshot, for the workspace's dashboards.

``served_model_snapshot`` runs an Evidently report over the day's served scores and
observed labels against the reference window's: the mean score and the mean label (the
predicted and observed positive rate, or mean rating), the drift of the scores (normed
Wasserstein, as the feature drift judges numbers), and AUC and logloss for a click label
(RMSE and MAE for a rating), and for a source with user and item ids Evidently's ranking
metrics of each user's impressions ordered by score (NDCG, recall and hit rate at
``RANKING_K``), the personalisation of the users' top ``RANKING_K`` and their popularity
bias: how popular, among the reference window's clicks, the items the model puts in
users' top ``RANKING_K`` are (Evidently's ``PopularityBiasMetric``: normalised average
recommendation popularity, coverage of the clicked items and Gini of the top items). The
figures Reclake acts on (calibration over deciles, alerts) come from
``models.served_quality``; this snapshot is what a person browses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

SCORE, LABEL = "score", "label"
TIE_STEP = 1e-9
"""What separates a user's tied scores in the snapshot (``untied``)."""


RANKING_K = 10
POPULARITY_BIAS = ("arp", "coverage", "gini")
"""The popularity-bias figures in the snapshot (``PopularityBiasMetric(metric=...)``)."""


def untied(scores: np.ndarray, users: np.ndarray) -> np.ndarray:
    """``scores`` with the ties within a user broken by position: each further row of a
    user with the same score is lowered by ``TIE_STEP`` more (a user's 1,000 tied rows move
    by at most 1e-6); unchanged without ties. Evidently ranks tied scores by their average
    rank (2.5, ...) and its top-k metrics (the classification ones share the score column,
    so a separate rank column is not an option) fail on a k no rank equals."""
    place = pd.DataFrame({"user": users, "score": scores}).groupby(["user", "score"]).cumcount().to_numpy()
    return scores - place * TIE_STEP if place.any() else scores


def ranking_k(ids: pd.DataFrame, reference_ids: pd.DataFrame) -> int:
    """The cut-off of the ranking metrics: ``RANKING_K``, or the longest list a user has on
    either side when shorter (Evidently's top-k metrics fail on a k no user's list reaches).

    Args:
        ids, reference_ids: ``user_id`` (and ``item_id``) of the day's and the reference's rows.
    """
    longest = min(int(ids["user_id"].value_counts().max()), int(reference_ids["user_id"].value_counts().max()))
    return max(1, min(RANKING_K, longest))


def served_model_snapshot(
    labels: np.ndarray,
    scores: np.ndarray,
    reference_labels: np.ndarray,
    reference_scores: np.ndarray,
    kind: str,
    ids: pd.DataFrame | None = None,
    reference_ids: pd.DataFrame | None = None,
) -> Snapshot:
    """The Evidently snapshot of a served model's day (see the module docstring).

    Args:
        labels, scores: the day's observed labels and the served model's scores.
        reference_labels, reference_scores: the same for the reference window (non-empty).
        kind: ``binary`` or ``regression``.
        ids, reference_ids: ``user_id`` and ``item_id`` of the same rows, for a source
            with both: the report then ranks each user's impressions of the day by score
            and adds Evidently's ranking metrics at ``RANKING_K`` (``ranking_k``: less on a
            day whose users have shorter lists) (NDCG, recall, hit rate), the
            personalisation of the top ``RANKING_K`` and, when the reference window
            has clicks, their popularity bias against the items clicked in it
            (``POPULARITY_BIAS``; the reference window is the "training data" Evidently
            measures popularity in).
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Recsys, Regression, Report
    from evidently.metrics import (
        MAE,
        NDCG,
        RMSE,
        HitRate,
        LogLoss,
        MeanValue,
        Personalization,
        PopularityBiasMetric,
        RecallTopK,
        RocAuc,
        ValueDrift,
    )

    if kind == "binary":
        task = {"classification": [BinaryClassification(target=LABEL, prediction_probas=SCORE)]}
        quality = [RocAuc(), LogLoss()]
    else:
        task = {"regression": [Regression(target=LABEL, prediction=SCORE)]}
        quality = [RMSE(), MAE()]
    ranked = ids is not None and reference_ids is not None and kind == "binary"
    if ranked:
        task["ranking"] = [Recsys(user_id="user_id", item_id="item_id", target=LABEL, prediction=SCORE)]
        k = ranking_k(ids, reference_ids)
        quality += [NDCG(k=k), RecallTopK(k=k), HitRate(k=k), Personalization(k=k)]
    definition = DataDefinition(
        numerical_columns=[SCORE, LABEL], categorical_columns=["user_id", "item_id"] if ranked else None, **task
    )

    def dataset(y, s, entity_ids) -> Dataset:
        frame = pd.DataFrame({SCORE: np.asarray(s, float), LABEL: np.asarray(y, int if kind == "binary" else float)})
        if ranked:
            frame["user_id"] = entity_ids["user_id"].astype(str).to_numpy()
            frame["item_id"] = entity_ids["item_id"].astype(str).to_numpy()
            frame[SCORE] = untied(frame[SCORE].to_numpy(), frame["user_id"].to_numpy())
        return Dataset.from_pandas(frame, data_definition=definition)

    current, reference = dataset(labels, scores, ids), dataset(reference_labels, reference_scores, reference_ids)
    additional = {}
    if ranked and np.asarray(reference_labels, float).sum() > 0:
        clicked = reference.as_dataframe()
        clicked = clicked[clicked[LABEL] > 0]
        additional["current_train_data"] = Dataset.from_pandas(clicked, data_definition=definition)
        quality += [PopularityBiasMetric(k=k, normalize_arp=True, metric=figure) for figure in POPULARITY_BIAS]
    report = Report(
        [MeanValue(column=SCORE), MeanValue(column=LABEL), ValueDrift(column=SCORE, method="wasserstein"), *quality]
    )
    return report.run(current, reference, additional_data=additional or None)
