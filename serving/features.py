"""Request-time feature assembly: request fields + online-store rows + the spec's defaults.

The served model's inputs are the feature spec's model features. At request time they
come from three places, in this order of precedence: the request (ids and context
columns), the online store's row for the user and for the item (role columns and trailing
aggregates, written by the ``online_features`` asset), and, for a user or item the store
does not hold, the defaults the exporter recorded (``lookup_defaults``: no events, the rate
prior, the median). ``FeatureAssembler`` turns such rows into the input arrays the
SavedModel's signatures take, with the dtypes training used
(``models.inputs.features.column_array``): no pandas on the request path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reclake.feature_spec import FeatureColumn, FeatureSpec

ENTITIES = ("user", "item")


def to_array(values: Sequence[Any], dtype: str) -> np.ndarray:
    """``values`` as the model input array of a spec ``dtype``; ``None`` becomes ``""`` or 0."""
    if dtype == "string":
        return np.array(["" if value is None else str(value) for value in values], dtype=object)
    if dtype == "int":
        return np.array([0 if value is None else value for value in values], dtype=np.int64)
    return np.array([0.0 if value is None else value for value in values], dtype=np.float32)


class FeatureAssembler:
    """Builds a model's input arrays from request rows and online-store rows.

    Args:
        spec: the served model's feature spec.
        defaults: entity (``user`` / ``item``) -> feature -> value for ids the store lacks
            (the SavedModel metadata's ``lookup_defaults``).
    """

    def __init__(self, spec: FeatureSpec, defaults: Mapping[str, Mapping[str, Any]]) -> None:
        self.spec = spec
        self.columns: tuple[FeatureColumn, ...] = spec.model_features
        self.dtypes = {c.name: c.dtype for c in self.columns}
        self.entities = tuple(entity for entity in ENTITIES if f"{entity}_id" in spec.id_columns)
        self.lookups = {entity: spec.lookup_features(entity) for entity in self.entities}
        self.defaults = {entity: dict(defaults.get(entity, {})) for entity in self.entities}
        missing = {e: [n for n in self.lookups[e] if n not in self.defaults[e]] for e in self.entities}
        if any(missing.values()):
            raise ValueError(f"the model's lookup_defaults lack {missing}: re-export it")

    def entity_features(self, entity: str, stored: Mapping[str, Any] | None) -> dict[str, Any]:
        """The lookup features of one user or item: the store's row, defaults where it has none."""
        defaults = self.defaults[entity]
        if stored is None:
            return dict(defaults)
        return {name: stored.get(name, defaults[name]) for name in self.lookups[entity]}

    def arrays(self, rows: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Input arrays (every model feature, or ``names``) from complete feature rows.

        Raises:
            KeyError: a row lacks a feature (a bug in the caller: rows come from
                ``entity_features`` and a validated request).
        """
        wanted = self.dtypes if names is None else {name: self.dtypes[name] for name in names}
        return {name: to_array([row[name] for row in rows], dtype) for name, dtype in wanted.items()}
