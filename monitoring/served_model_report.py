"""The served model on one day as an Evidently snapshot, for the workspace's dashboards.

``served_model_snapshot`` runs an Evidently report over the day's served scores and
observed labels against the reference window's: the mean score and the mean label (the
predicted and observed positive rate, or mean rating), the drift of the scores (normed
Wasserstein, as the feature drift judges numbers), and AUC and logloss for a click label
(RMSE and MAE for a rating), and for a source with user and item ids Evidently's ranking
metrics of each user's impressions ordered by score. The figures Reclake acts on (calibration over deciles,
alerts) come from ``models.served_quality``; this snapshot is what a person browses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

SCORE, LABEL = "score", "label"


RANKING_K = 10


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
            and adds Evidently's ranking metrics at ``RANKING_K`` (NDCG, recall, hit rate)
            and the personalisation of the top ``RANKING_K``.
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
        quality += [NDCG(k=RANKING_K), RecallTopK(k=RANKING_K), HitRate(k=RANKING_K), Personalization(k=RANKING_K)]
    definition = DataDefinition(
        numerical_columns=[SCORE, LABEL], categorical_columns=["user_id", "item_id"] if ranked else None, **task
    )

    def dataset(y, s, entity_ids) -> Dataset:
        frame = pd.DataFrame({SCORE: np.asarray(s, float), LABEL: np.asarray(y, int if kind == "binary" else float)})
        if ranked:
            frame["user_id"] = entity_ids["user_id"].astype(str).to_numpy()
            frame["item_id"] = entity_ids["item_id"].astype(str).to_numpy()
        return Dataset.from_pandas(frame, data_definition=definition)

    report = Report(
        [MeanValue(column=SCORE), MeanValue(column=LABEL), ValueDrift(column=SCORE, method="wasserstein"), *quality]
    )
    return report.run(dataset(labels, scores, ids), dataset(reference_labels, reference_scores, reference_ids))
