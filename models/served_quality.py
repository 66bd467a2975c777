"""How the served model did on one day once its outcomes are known.

``served_model_quality`` takes the served model's scores for a day's events, the events'
observed labels and the same model's scores on a reference window before the day, and
returns ``ServedModelQuality``: for a click label, the predicted and observed positive
rates overall, by score decile and by segment, the expected calibration error over score
deciles, AUC and logloss; for a regression label (ratings), RMSE and MAE and the mean
predicted and observed values; and in both cases the prediction drift (normed
Wasserstein distance between the day's scores and the reference window's, the same
measure and threshold the feature drift uses for numbers).

Which scores are judged (``day_predictions``): the scores the service actually served,
when the day's prediction logs hold ``/predict`` rows with event ids matching enough of
the day's events (``predictions_from: service_logs``; each score by the model version
that served it), else the pinned model's scores of the day's events (``rescored``).

Deciles are equal-count bins of the score, not equal-width bins of [0, 1]: with
click-through rates of a few percent almost every prediction falls in the first tenth of
[0, 1], so equal-width bins would hide the miscalibration they are meant to show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from models import evaluation

DECILES = 10
MIN_SEGMENT_ROWS = 200  # smaller segments are left out of the segment table (too noisy to read)
MIN_SERVED_ROWS = 100  # fewer events matched to logged scores: the day is judged on re-scored events


@dataclass(frozen=True)
class DayPredictions:
    """The served model's scores of a day's events, and where they come from.

    Attributes:
        rows: the events judged (rows of the day's ``training_examples``), aligned with ``scores``.
        scores: their scores.
        predictions_from: ``service_logs`` (the scores served, from the prediction logs)
            or ``rescored`` (the pinned model's scores of the events).
        served_rows: events of the day matched to a logged score (also when too few to use).
        model_versions: the versions that served the judged scores (``service_logs`` only).
    """

    rows: pd.DataFrame
    scores: np.ndarray
    predictions_from: str
    served_rows: int
    model_versions: list[str] = field(default_factory=list)


def day_predictions(
    events: pd.DataFrame,
    served: pd.DataFrame | None,
    rescore: Callable[[pd.DataFrame], np.ndarray],
    min_served_rows: int = MIN_SERVED_ROWS,
) -> DayPredictions:
    """The scores to judge a day on: the served ones when enough events match, else re-scored.

    Args:
        events: the day's ``training_examples`` rows (with ``event_id`` and the label).
        served: the day's served scores by event, columns ``event_id``, ``score`` and
            ``model_version`` (``serving.prediction_log_reader.served_event_scores``); None: no logs.
        rescore: the pinned model's scores of a frame of events (``Recommender.rank``).
        min_served_rows: events that must match a logged score for the logs to be used.

    Returns:
        On ``service_logs``, only the matched events, in ``events``' order; on
        ``rescored``, every event.
    """
    matched = pd.DataFrame()
    if served is not None and len(served):
        scores = served[["event_id", "score", "model_version"]].rename(
            columns={"event_id": "_event", "score": "_served_score", "model_version": "_served_by"}
        )
        keyed = events.assign(_event=events["event_id"].astype(str))
        matched = keyed.merge(scores.astype({"_event": str}), on="_event", how="inner", validate="many_to_one")
    if len(matched) >= min_served_rows:
        return DayPredictions(
            rows=matched.drop(columns=["_event", "_served_score", "_served_by"]).reset_index(drop=True),
            scores=matched["_served_score"].to_numpy(float),
            predictions_from="service_logs",
            served_rows=len(matched),
            model_versions=sorted(matched["_served_by"].astype(str).unique()),
        )
    return DayPredictions(events, np.asarray(rescore(events), float), "rescored", len(matched))


@dataclass(frozen=True)
class ServedModelQuality:
    """The served model on one day (see the module docstring).

    Attributes:
        kind: ``binary`` or ``regression``.
        rows: scored events of the day; reference_rows: of the reference window.
        observed / predicted: the day's mean label and mean score (CTR and pCTR for clicks).
        ratio: predicted / observed (1.0: calibrated on average).
        ece: expected calibration error over score deciles (binary only).
        ece_noise / ratio_noise: what ``ece`` and ``|ratio - 1|`` are expected to be from
            sampling alone, were the scores the true probabilities (binary only): a small
            day's calibration figures are noisy, and alerts allow for it.
        auc, logloss: binary only; rmse, mae: regression only.
        prediction_drift: normed Wasserstein distance of the day's scores from the
            reference window's (0: the same distribution).
        deciles: per score decile ``decile, rows, predicted, observed``.
        segments: segment column -> per value ``value, rows, predicted, observed``.
    """

    kind: str
    rows: int
    reference_rows: int
    observed: float
    predicted: float
    ratio: float | None
    prediction_drift: float | None
    ece: float | None = None
    ece_noise: float | None = None
    ratio_noise: float | None = None
    auc: float | None = None
    logloss: float | None = None
    rmse: float | None = None
    mae: float | None = None
    deciles: list[dict] = field(default_factory=list)
    segments: dict[str, list[dict]] = field(default_factory=dict)

    def figures(self) -> dict[str, float]:
        """The scalar figures that are defined, by name (for metadata and dashboards)."""
        names = ("observed", "predicted", "ratio", "ece", "ece_noise", "ratio_noise", "auc", "logloss", "rmse", "mae",
                 "prediction_drift")  # fmt: skip
        return {name: round(float(v), 6) for name in names if (v := getattr(self, name)) is not None}

    def to_dict(self) -> dict:
        return asdict(self)


def normed_wasserstein(current: np.ndarray, reference: np.ndarray) -> float | None:
    """The Wasserstein-1 distance between two samples divided by the reference's standard
    deviation (Evidently's ``wasserstein`` stattest); None when either is empty or the
    reference is constant."""
    from scipy.stats import wasserstein_distance

    current, reference = np.asarray(current, float), np.asarray(reference, float)
    if len(current) == 0 or len(reference) == 0:
        return None
    spread = float(np.std(reference))
    if spread == 0.0:
        return None
    return float(wasserstein_distance(current, reference) / spread)


def decile_table(labels: np.ndarray, scores: np.ndarray, bins: int = DECILES) -> pd.DataFrame:
    """Mean score and mean label per equal-count score bin:
    columns ``decile`` (0 = lowest scores), ``rows``, ``predicted``, ``observed``."""
    decile = _deciles(scores, bins)
    table = (
        pd.DataFrame({"decile": decile, "score": scores, "label": labels})
        .groupby("decile")
        .agg(rows=("label", "size"), predicted=("score", "mean"), observed=("label", "mean"))
        .reset_index()
    )
    return table


def _deciles(scores: np.ndarray, bins: int = DECILES) -> np.ndarray:
    """Each score's equal-count bin, 0 = lowest (ties broken by position)."""
    ranks = pd.Series(scores).rank(method="first").to_numpy()
    return np.minimum(((ranks - 1) * bins // len(scores)).astype(int), bins - 1)


def _segment_table(values: pd.Series, labels: np.ndarray, scores: np.ndarray) -> list[dict]:
    frame = pd.DataFrame({"value": values.astype(str).to_numpy(), "score": scores, "label": labels})
    table = frame.groupby("value").agg(rows=("label", "size"), predicted=("score", "mean"), observed=("label", "mean"))
    table = table[table["rows"] >= MIN_SEGMENT_ROWS].reset_index().sort_values("rows", ascending=False)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in table.to_dict("records")]


def served_model_quality(
    labels: np.ndarray,
    scores: np.ndarray,
    reference_scores: np.ndarray,
    kind: str,
    segments: Mapping[str, pd.Series] | None = None,
) -> ServedModelQuality:
    """The served model's quality on a day (see the module docstring).

    Args:
        labels: the day's observed labels (0/1 clicks, or ratings).
        scores: the served model's scores of the same events (pCTR, or predicted ratings).
        reference_scores: the same model's scores on the reference window before the day.
        kind: ``binary`` or ``regression`` (the spec's label kind).
        segments: segment column -> the day's values, aligned with ``labels``.

    Raises:
        ValueError: empty or misaligned inputs, or an unknown ``kind``.
    """
    labels, scores = np.asarray(labels, float), np.asarray(scores, float)
    if len(labels) == 0 or len(labels) != len(scores):
        raise ValueError(f"labels ({len(labels)}) and scores ({len(scores)}) must be non-empty and aligned")
    if kind not in ("binary", "regression"):
        raise ValueError(f"kind must be binary or regression, got {kind!r}")
    observed, predicted = float(labels.mean()), float(scores.mean())
    common = {
        "kind": kind,
        "rows": len(labels),
        "reference_rows": len(reference_scores),
        "observed": observed,
        "predicted": predicted,
        "ratio": predicted / observed if observed else None,
        "prediction_drift": normed_wasserstein(scores, reference_scores),
        "segments": {name: _segment_table(values, labels, scores) for name, values in (segments or {}).items()},
    }
    if kind == "regression":
        return ServedModelQuality(**common, rmse=evaluation.rmse(labels, scores), mae=evaluation.mae(labels, scores))
    deciles = decile_table(labels, scores)
    ece = float(((deciles["observed"] - deciles["predicted"]).abs() * deciles["rows"]).sum() / len(labels))
    # Were the scores true probabilities, each decile's observed rate would scatter around its
    # mean score with variance mean(p(1 - p)) / rows, and E|normal| = sqrt(2 / pi) * sd.
    p = np.clip(scores, 0.0, 1.0)
    variance = pd.Series(p * (1 - p)).groupby(_deciles(scores)).mean().to_numpy()
    ece_noise = float(
        np.sqrt(2 / np.pi) * (np.sqrt(variance / deciles["rows"].to_numpy()) * deciles["rows"]).sum() / len(p)
    )
    ratio_noise = float(np.sqrt((p * (1 - p)).sum()) / p.sum()) if p.sum() else None
    both_classes = 0 < labels.sum() < len(labels)
    return ServedModelQuality(
        **common,
        ece=ece,
        ece_noise=ece_noise,
        ratio_noise=ratio_noise,
        auc=evaluation.auc(labels, scores) if both_classes else None,
        logloss=evaluation.logloss(labels, np.clip(scores, 1e-7, 1 - 1e-7)),
        deciles=[
            {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in deciles.to_dict("records")
        ],
    )
