"""Model inputs from a feature spec: arrays in, fitted preprocessing statistics out.

The per-source feature spec (``reclake.feature_spec``) is the one list of features:
which columns exist, their role (user / item lookup, or request context), dtype and
transform. This module turns ``training_examples`` frames into the arrays the Keras
models take, and fits on the training window the statistics the in-graph transforms
need: vocabularies (embedding), quantile boundaries (bucketize) and moments
(normalize). ``FittedFeatures`` travels with every model (``get_config``) and into the
SavedModel, so training and serving transform a value the same way.

No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reclake.feature_spec import FeatureColumn, FeatureSpec, feature_spec_from_dict

HISTORY_COLUMN = "user_history"
HISTORY_PADDING = ""


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ValueError naming the columns of ``columns`` that ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(frame.columns)}")


def column_array(frame: pd.DataFrame, column: FeatureColumn) -> np.ndarray:
    """One feature column as the numpy dtype its model input takes.

    Strings become ``object`` arrays of ``str`` (null -> ``""``), ints ``int64``
    (null -> 0), floats ``float32`` (null -> 0). Values are raw: the transforms run
    inside the models.
    """
    values = frame[column.name]
    if column.dtype == "string":
        return values.astype(object).where(values.notna(), "").astype(str).to_numpy(dtype=object)
    if column.dtype == "int":
        return pd.to_numeric(values, errors="raise").fillna(0).to_numpy(dtype=np.int64)
    return pd.to_numeric(values, errors="raise").fillna(0.0).to_numpy(dtype=np.float32)


def feature_arrays(frame: pd.DataFrame, spec: FeatureSpec, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The spec's model features (or ``names`` of them) of ``frame`` as model input arrays.

    Raises:
        ValueError: a feature column is missing from ``frame``.
    """
    columns = [c for c in spec.model_features if names is None or c.name in names]
    require_columns(frame, [c.name for c in columns], "feature frame")
    return {column.name: column_array(frame, column) for column in columns}


def history_array(frame: pd.DataFrame, length: int) -> np.ndarray:
    """``user_history`` lists as a ``[rows, length]`` string array, newest first, padded with ``""``."""
    require_columns(frame, [HISTORY_COLUMN], "feature frame")
    out = np.full((len(frame), length), HISTORY_PADDING, dtype=object)
    for row, items in enumerate(frame[HISTORY_COLUMN]):
        if items is None or (isinstance(items, float) and np.isnan(items)):
            continue
        values = [str(v) for v in list(items)[:length]]
        out[row, : len(values)] = values
    return out


def label_array(frame: pd.DataFrame, spec: FeatureSpec, column: str | None = None) -> np.ndarray:
    """A label column as float32: 0/1 for binary labels, the raw value for regression.

    Args:
        frame: labelled rows.
        spec: the feature spec (says the label kind).
        column: the label to read; default the spec's main label.

    Raises:
        ValueError: the column is missing, holds nulls, or a binary label holds other
            values than 0 and 1.
    """
    column = column or spec.label.column
    require_columns(frame, [column], "labelled frame")
    values = pd.to_numeric(frame[column], errors="raise")
    if values.isna().any():
        raise ValueError(f"label column {column!r} holds {int(values.isna().sum())} null value(s)")
    labels = values.to_numpy(dtype=np.float64)
    binary = column != spec.label.column or spec.label.kind == "binary"
    if binary and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"label column {column!r} must hold only 0 and 1")
    return labels.astype(np.float32)


def string_vocabulary(feature: str, values: np.ndarray, min_count: int = 1) -> tuple[str, ...]:
    """Sorted distinct strings of ``values`` seen at least ``min_count`` times.

    Values left out (and values never seen) share the models' out-of-vocabulary bucket,
    which then gets trained on real rows instead of staying at its random initialisation.

    Raises:
        ValueError: ``min_count < 1`` or no value occurs ``min_count`` times.
    """
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    distinct, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
    vocabulary = tuple(str(v) for v in distinct[counts >= min_count])
    if not vocabulary:
        raise ValueError(
            f"vocabulary of {feature!r} is empty: none of its {len(distinct)} distinct value(s) occurs "
            f"{min_count} times; lower min_count in the feature spec or train on more rows"
        )
    return vocabulary


def transform_numeric(column: FeatureColumn, values: np.ndarray) -> np.ndarray:
    """The fixed part of a ``normalize`` transform (``log1p(max(x, 0))`` or identity), float64."""
    values = np.asarray(values, dtype=np.float64)
    return np.log1p(np.maximum(values, 0.0)) if column.log else values


def quantile_boundaries(values: np.ndarray, quantiles: int) -> tuple[float, ...]:
    """Distinct inner quantile cut points of ``values`` for ``quantiles`` buckets."""
    cuts = np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0, 1, quantiles + 1)[1:-1])
    return tuple(float(v) for v in np.unique(cuts))


def covers_period(values: np.ndarray, period: float) -> bool:
    """Whether integer phases ``values mod period`` take every value ``0 .. period - 1``."""
    phases = np.unique(np.mod(np.asarray(values, dtype=np.int64), int(period)))
    return phases.size == int(period)


@dataclass(frozen=True)
class FittedFeatures:
    """A feature spec plus the statistics its transforms learned on a training window.

    Attributes:
        spec: the source's feature spec.
        vocabularies: ``embedding`` column -> sorted vocabulary (strings, or ints for
            int columns); the models add ``oov_buckets`` rows for everything else.
        boundaries: ``bucketize`` column -> quantile cut points.
        moments: ``normalize`` column -> (mean, variance) after its fixed transform.
        label_clip: (low, high) bounds of a regression label (spec ``clip_percentiles``).
        item_vocabulary: every item id in the training window (retrieval candidates and
            ``user_history`` lookups); empty when the source has no item ids.
        incomplete_cycles: integer ``cyclical`` columns whose training values miss a phase
            of their period (e.g. ``day_of_week`` over a window of fewer than 7 days). The
            encoder feeds them as zeros: the effect of a phase never seen in training
            would be extrapolated from the others' noise (a test day on an unseen weekday
            came out 12% under-predicted on the synthetic source).
    """

    spec: FeatureSpec
    vocabularies: dict[str, tuple[Any, ...]]
    boundaries: dict[str, tuple[float, ...]]
    moments: dict[str, tuple[float, float]]
    label_clip: tuple[float, float] | None = None
    item_vocabulary: tuple[str, ...] = field(default=())
    incomplete_cycles: tuple[str, ...] = field(default=())

    @classmethod
    def fit(cls, spec: FeatureSpec, frame: pd.DataFrame) -> FittedFeatures:
        """Learn every statistic the spec's transforms need from training rows.

        Raises:
            ValueError: ``frame`` is empty, misses a feature column, or a vocabulary
                comes out empty.
        """
        if frame.empty:
            raise ValueError(f"cannot fit the {spec.source} features on an empty frame")
        arrays = feature_arrays(frame, spec)
        vocabularies: dict[str, tuple[Any, ...]] = {}
        boundaries: dict[str, tuple[float, ...]] = {}
        moments: dict[str, tuple[float, float]] = {}
        incomplete_cycles: list[str] = []
        for column in spec.model_features:
            values = arrays[column.name]
            if column.transform == "embedding":
                if column.dtype == "string":
                    vocabularies[column.name] = string_vocabulary(column.name, values, column.min_count)
                else:
                    distinct, counts = np.unique(values, return_counts=True)
                    kept = distinct[counts >= column.min_count]
                    vocabularies[column.name] = tuple(int(v) for v in (kept if len(kept) else distinct))
            elif column.transform == "bucketize":
                boundaries[column.name] = quantile_boundaries(values, column.quantiles or 2)
            elif column.transform == "normalize":
                transformed = transform_numeric(column, values)
                moments[column.name] = (float(transformed.mean()), float(transformed.var()))
            elif column.transform == "cyclical" and column.dtype == "int" and not covers_period(values, column.period):
                incomplete_cycles.append(column.name)
        label_clip = None
        if spec.label.kind == "regression" and spec.label.clip_percentiles:
            labels = label_array(frame, spec)
            low, high = np.percentile(labels, spec.label.clip_percentiles)
            label_clip = (float(low), float(high))
        items = tuple(np.unique(arrays["item_id"]).tolist()) if spec.item_id else ()
        return cls(spec, vocabularies, boundaries, moments, label_clip, items, tuple(incomplete_cycles))

    def training_target(self, labels: np.ndarray) -> np.ndarray:
        """The label as the ranker learns it: clipped, then ``log1p`` when the spec says so."""
        target = np.asarray(labels, dtype=np.float32)
        if self.label_clip is not None:
            target = np.clip(target, *self.label_clip)
        if self.spec.label.log:
            target = np.log1p(np.maximum(target, 0.0))
        return target.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form; inverse of ``from_dict``."""
        return {
            "spec": self.spec.to_dict(),
            "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
            "boundaries": {k: list(v) for k, v in self.boundaries.items()},
            "moments": {k: list(v) for k, v in self.moments.items()},
            "label_clip": list(self.label_clip) if self.label_clip else None,
            "item_vocabulary": list(self.item_vocabulary),
            "incomplete_cycles": list(self.incomplete_cycles),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FittedFeatures:
        spec = feature_spec_from_dict(data["spec"])
        vocabularies = {}
        for name, values in data["vocabularies"].items():
            dtype = next(c.dtype for c in spec.model_features if c.name == name)
            vocabularies[name] = tuple(str(v) for v in values) if dtype == "string" else tuple(int(v) for v in values)
        return cls(
            spec=spec,
            vocabularies=vocabularies,
            boundaries={k: tuple(float(x) for x in v) for k, v in data["boundaries"].items()},
            moments={k: (float(v[0]), float(v[1])) for k, v in data["moments"].items()},
            label_clip=tuple(data["label_clip"]) if data.get("label_clip") else None,
            item_vocabulary=tuple(str(v) for v in data.get("item_vocabulary", ())),
            incomplete_cycles=tuple(data.get("incomplete_cycles", ())),
        )
