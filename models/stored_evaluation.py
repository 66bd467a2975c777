"""Evaluate a stored model on chosen rows, without Dagster: one version's offline metrics
on one day, so that any two versions can be compared on the same day.

The model is an exported SavedModel (``models.export.savedmodel``); the rows are
``training_examples`` rows with their point-in-time features and labels, scored through
the model's ``rank`` signature. The metrics are those of ``models.evaluation``, named as
``models.training.registry.evaluate_model`` names them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from models import evaluation
from models.export.savedmodel import Recommender, load_recommender
from models.inputs.features import label_array
from models.ranking.base import MULTITASK_LABELS

TRUE_PCTR_COLUMN = "true_pctr"
MULTITASK_OUTPUTS = ("pctr", "pcvr", "pctcvr")


def evaluate_stored_model(model: str | os.PathLike[str] | Recommender, examples: pd.DataFrame) -> dict[str, float]:
    """A stored model's metrics on ``examples``.

    Args:
        model: the SavedModel folder (``export_recommender``'s output, e.g. a BentoML
            store's ``savedmodel/``), or a loaded ``Recommender``.
        examples: ``training_examples`` rows with the model's features and labels (and,
            on the synthetic source, ``true_pctr`` for the Bayes-optimal logloss).

    Returns:
        A click label: ``auc``, ``logloss``, ``normalized_entropy``, ``calibration`` (mean
        score over observed rate), ``expected_calibration_error``, ``examples`` and
        ``bayes_logloss`` with a complete ``true_pctr``; a multi-task ranker adds
        ``ctr_auc``, ``ctr_logloss``, ``ctcvr_auc``, ``ctcvr_logloss`` and ``cvr_auc``
        (over clicked rows, when they hold both classes). A rating label: ``rmse``,
        ``mae``, ``examples``.

    Raises:
        ValueError: empty ``examples``, a missing column, or a label of a single class.
        FileNotFoundError: ``model`` is not a Reclake SavedModel.
    """
    recommender = model if isinstance(model, Recommender) else load_recommender(model)
    spec = recommender.spec
    outputs = recommender.rank_outputs(examples)
    labels = label_array(examples, spec)
    score = outputs["score"]
    if spec.label.kind == "regression":
        return {"rmse": evaluation.rmse(labels, score), "mae": evaluation.mae(labels, score), "examples": len(examples)}
    metrics: dict[str, Any] = {
        "auc": evaluation.auc(labels, score),
        "logloss": evaluation.logloss(labels, score),
        "normalized_entropy": evaluation.normalized_entropy(labels, score),
        "calibration": float(score.mean() / labels.mean()) if labels.mean() > 0 else None,
        "expected_calibration_error": evaluation.expected_calibration_error(labels, score),
        "examples": len(examples),
    }
    if TRUE_PCTR_COLUMN in examples.columns and examples[TRUE_PCTR_COLUMN].notna().all():
        metrics["bayes_logloss"] = evaluation.bayes_logloss(labels, examples[TRUE_PCTR_COLUMN].to_numpy())
    if set(MULTITASK_OUTPUTS) <= set(outputs):
        metrics.update(_multitask_metrics(examples, recommender, outputs))
    return {name: float(value) for name, value in metrics.items() if value is not None}


def _multitask_metrics(examples: pd.DataFrame, recommender: Recommender, outputs: dict[str, np.ndarray]) -> dict:
    """The click, click-and-convert and (over clicked rows) conversion figures of a multi-task ranker."""
    clicked, converted = (label_array(examples, recommender.spec, column) for column in MULTITASK_LABELS.values())
    on_clicked = clicked == 1
    cvr_auc = None
    if 0 < converted[on_clicked].sum() < on_clicked.sum():
        cvr_auc = evaluation.auc(converted[on_clicked], outputs["pcvr"][on_clicked])
    return {
        "ctr_auc": evaluation.auc(clicked, outputs["pctr"]),
        "ctr_logloss": evaluation.logloss(clicked, outputs["pctr"]),
        "ctcvr_auc": evaluation.auc(converted, outputs["pctcvr"]),
        "ctcvr_logloss": evaluation.logloss(converted, outputs["pctcvr"]),
        "cvr_auc": cvr_auc,
    }
