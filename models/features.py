"""The model input features over the ``training_examples`` columns: the one list.

Every model, the exporter and the serving schemas read feature names from here, so
training and serving cannot disagree about what a feature is called, what type it has
or where its value comes from at serving time:

- *request* features arrive with each serving request,
- *user* / *item lookup* features are looked up by id in the ``user_features`` /
  ``item_features`` tables (embedded in the exported SavedModel).

This module has no TensorFlow dependency.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Contract constants (docs/data-contracts.md, bronze `events`).
from reclake.contract import DEVICES, HOURS_OF_DAY, SLOT_POSITIONS  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class NumericFeature:
    """A float feature, standardised inside the model.

    Attributes:
        name: Column name.
        log1p: Whether the model applies ``log1p`` before standardising (for counts and
            prices with a long right tail).
    """

    name: str
    log1p: bool


STRING_FEATURES: tuple[str, ...] = ("user_id", "item_id", "user_segment", "device", "category")
INTEGER_FEATURES: tuple[str, ...] = ("slot_position", "hour_of_day")
NUMERIC_FEATURES: tuple[NumericFeature, ...] = (
    NumericFeature("price", log1p=True),
    NumericFeature("user_ctr_7d", log1p=False),
    NumericFeature("item_ctr_7d", log1p=False),
    NumericFeature("user_impressions_7d", log1p=True),
    NumericFeature("item_impressions_7d", log1p=True),
)
RANKING_FEATURES: tuple[str, ...] = (
    STRING_FEATURES + INTEGER_FEATURES + tuple(f.name for f in NUMERIC_FEATURES)
)
LABEL = "clicked"

# Where each ranking feature comes from at serving time.
REQUEST_FEATURES: tuple[str, ...] = ("user_id", "item_id", "device", "slot_position", "hour_of_day")
USER_LOOKUP_FEATURES: tuple[str, ...] = ("user_segment", "user_ctr_7d", "user_impressions_7d")
ITEM_LOOKUP_FEATURES: tuple[str, ...] = (
    "category",
    "price",
    "item_ctr_7d",
    "item_impressions_7d",
)

# Two-tower retrieval inputs: the query (user) tower and the candidate (item) tower.
QUERY_FEATURES: tuple[str, ...] = ("user_id", "user_segment")
CANDIDATE_FEATURES: tuple[str, ...] = ("item_id", "category")


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ValueError naming the columns of ``columns`` that ``frame`` lacks.

    Args:
        frame: The frame to check.
        columns: Required column names.
        what: What the frame is, for the error message (e.g. ``"training frame"``).
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(frame.columns)}")


def feature_arrays(frame: pd.DataFrame, names: Iterable[str] = RANKING_FEATURES) -> dict[str, np.ndarray]:
    """Convert feature columns to the numpy dtypes the Keras models take.

    Strings become ``object`` arrays of ``str``, integer categoricals ``int64``, numeric
    features ``float32``. Values are raw: transforms (log1p, standardisation, vocabulary
    lookup) happen inside the models.

    Args:
        frame: Rows with (at least) the requested columns.
        names: Feature names to convert; defaults to all ranking features.

    Returns:
        Feature name -> 1-D array of ``len(frame)`` values.

    Raises:
        ValueError: if a column is missing or holds nulls.
    """
    names = tuple(names)
    require_columns(frame, names, "feature frame")
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        column = frame[name]
        if column.isna().any():
            raise ValueError(f"feature column {name!r} holds {int(column.isna().sum())} null value(s)")
        if name in STRING_FEATURES:
            arrays[name] = column.astype(str).to_numpy(dtype=object)
        elif name in INTEGER_FEATURES:
            arrays[name] = column.to_numpy(dtype=np.int64)
        else:
            arrays[name] = column.to_numpy(dtype=np.float32)
    return arrays


def label_array(frame: pd.DataFrame) -> np.ndarray:
    """Return the ``clicked`` label as a float32 array of 0/1.

    Raises:
        ValueError: if the column is missing or holds a value other than 0 or 1.
    """
    require_columns(frame, [LABEL], "labelled frame")
    labels = frame[LABEL].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"label column {LABEL!r} must hold only 0 and 1")
    return labels.astype(np.float32)


def string_vocabulary(feature: str, values: np.ndarray, min_count: int = 1) -> tuple[str, ...]:
    """Sorted distinct strings of ``values`` seen at least ``min_count`` times.

    Values left out (and values never seen) share the models' OOV bucket, which then
    gets trained on real rows instead of staying at its random initialisation.

    Args:
        feature: Feature name, for error messages.
        values: The feature's training values.
        min_count: Minimum number of occurrences to get an own vocabulary entry.

    Raises:
        ValueError: if ``min_count < 1`` or no value occurs ``min_count`` times.
    """
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    distinct, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
    vocabulary = tuple(str(v) for v in distinct[counts >= min_count])
    if not vocabulary:
        raise ValueError(
            f"vocabulary of {feature!r} is empty: none of its {len(distinct)} distinct value(s) occurs "
            f"{min_count} times; lower the vocabulary min_count or train on more rows"
        )
    return vocabulary


def transform_numeric(feature: NumericFeature, values: np.ndarray) -> np.ndarray:
    """Apply the feature's fixed transform (log1p or identity) in float64."""
    values = np.asarray(values, dtype=np.float64)
    return np.log1p(np.maximum(values, 0.0)) if feature.log1p else values


@dataclass(frozen=True)
class FeatureVocabularies:
    """Vocabularies and standardisation moments learned from a training frame.

    Every categorical vocabulary is sorted; values outside it map to one out-of-vocabulary
    (OOV) bucket inside the models, so unseen users, items and categories at serving time
    share one learned embedding instead of failing.

    Attributes:
        strings: Feature name -> sorted distinct string values.
        integers: Feature name -> sorted distinct integer values.
        moments: Numeric feature name -> (mean, variance) after its transform.
    """

    strings: dict[str, tuple[str, ...]]
    integers: dict[str, tuple[int, ...]]
    moments: dict[str, tuple[float, float]]

    def to_dict(self) -> dict[str, dict[str, list]]:
        """JSON-compatible form (lists instead of tuples); inverse of ``from_dict``."""
        return {
            "strings": {name: list(values) for name, values in self.strings.items()},
            "integers": {name: list(values) for name, values in self.integers.items()},
            "moments": {name: list(values) for name, values in self.moments.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, list]]) -> FeatureVocabularies:
        """Rebuild from ``to_dict`` output."""
        return cls(
            strings={name: tuple(str(v) for v in values) for name, values in data["strings"].items()},
            integers={name: tuple(int(v) for v in values) for name, values in data["integers"].items()},
            moments={name: (float(values[0]), float(values[1])) for name, values in data["moments"].items()},
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, min_count: int = 1) -> FeatureVocabularies:
        """Learn vocabularies and moments from the ranking feature columns of ``frame``.

        Args:
            frame: Training rows with every ranking feature column.
            min_count: String values seen fewer times are left out of their vocabulary
                (see ``string_vocabulary``).

        Raises:
            ValueError: if ``frame`` is empty or misses a ranking feature column, or
                a vocabulary ends up empty (see ``string_vocabulary``).
        """
        if frame.empty:
            raise ValueError("cannot build feature vocabularies from an empty frame")
        arrays = feature_arrays(frame)
        strings = {name: string_vocabulary(name, arrays[name], min_count) for name in STRING_FEATURES}
        integers = {name: tuple(int(v) for v in np.unique(arrays[name])) for name in INTEGER_FEATURES}
        moments = {}
        for feature in NUMERIC_FEATURES:
            transformed = transform_numeric(feature, arrays[feature.name])
            moments[feature.name] = (float(transformed.mean()), float(transformed.var()))
        return cls(strings=strings, integers=integers, moments=moments)
