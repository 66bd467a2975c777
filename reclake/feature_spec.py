"""The per-source feature spec: one YAML file says what every column is and how it is used.

Like a feature store's feature view, a spec lists for each source column its role
(``user``, ``item`` or ``context``), its type, the value rules bronze enforces and the
transform the models apply (embedding, hashing, quantile bucketizing, normalization,
cyclical time), plus hashed crosses of column pairs, the label and its target
transform, and the point-in-time aggregates the dbt layer computes. The same spec
drives bronze validation (``sources.bronze_schema``), the dbt models (through
``dbt_vars``), the models' Keras preprocessing (``models.inputs.features``), the serving
schemas and the drift and quality reports, so training and serving cannot disagree.

Specs live in ``reclake/feature_specs/<source>.yaml``; ``load_feature_spec`` reads one
by source name or path. Plain Python: no TensorFlow, no Dagster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reclake.contracts import SQL_TYPES, event_sql_types

SPEC_DIR = Path(__file__).resolve().parent / "feature_specs"

ROLES = ("user", "item", "context")
DTYPES = ("string", "int", "float")
TRANSFORMS = ("embedding", "hashing", "bucketize", "normalize", "cyclical")
LABEL_KINDS = ("binary", "regression")
# Columns dbt derives from event_ts for every source; a spec may use them as features.
DERIVED_COLUMNS: dict[str, str] = {"hour_of_day": "int", "day_of_week": "int"}
# SQL type of each spec dtype in the bronze Parquet files and the dbt models.
class FeatureSpecError(ValueError):
    """A feature spec that does not describe a usable feature layer; names file and key."""


@dataclass(frozen=True)
class FeatureColumn:
    """One source column and how it becomes a model input.

    Attributes:
        name: column name in bronze and in the dbt models.
        role: ``user`` / ``item``: looked up by id at serving time (latest value per id
            in ``user_features`` / ``item_features``); ``context``: sent with each request.
        dtype: ``string``, ``int`` or ``float``.
        transform: ``embedding`` (vocabulary fitted on the training window, values seen
            fewer than ``min_count`` times share ``oov_buckets`` out-of-vocabulary rows),
            ``hashing`` (``hash_buckets`` buckets, no vocabulary), ``bucketize``
            (``quantiles`` quantile buckets fitted on the training window, embedded),
            ``normalize`` (optional ``log1p``, then standardized with training moments),
            ``cyclical`` (sin and cos of ``2 pi x / period``).
        dim: embedding width (``embedding``, ``hashing``, ``bucketize``).
        min_count, oov_buckets, hash_buckets, quantiles, log, period: transform settings.
        values: allowed values (bronze rejects others); None: any.
        min_value, max_value: allowed numeric range, inclusive; None: unbounded.
        nullable: whether bronze accepts a missing value (it becomes the column's
            ``fill`` in the models: ``""`` for strings, 0 for numbers).
        derived: computed by dbt from ``event_ts`` (hour_of_day, day_of_week), not in bronze.
    """

    name: str
    role: str
    dtype: str
    transform: str
    dim: int = 8
    min_count: int = 1
    oov_buckets: int = 1
    hash_buckets: int | None = None
    quantiles: int | None = None
    log: bool = False
    period: int | None = None
    values: tuple[Any, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    nullable: bool = False
    derived: bool = False

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.dtype]

    @property
    def embedded(self) -> bool:
        """Whether the model represents the column by an embedding row."""
        return self.transform in ("embedding", "hashing", "bucketize")


@dataclass(frozen=True)
class FeatureCross:
    """A hashed cross of two columns, embedded: e.g. user segment x item category."""

    columns: tuple[str, str]
    hash_buckets: int
    dim: int = 8

    @property
    def name(self) -> str:
        return f"{self.columns[0]}_x_{self.columns[1]}"


@dataclass(frozen=True)
class LabelSpec:
    """The label the ranking model learns.

    Attributes:
        column: ``clicked`` / ``converted`` (binary) or ``rating`` (regression) or any
            numeric bronze column.
        kind: ``binary`` (sigmoid, log loss, AUC) or ``regression`` (squared error, RMSE).
        positive_threshold: a regression label at or above it counts as a positive
            interaction (retrieval positives, the ``positives`` aggregates); binary
            labels are positive when 1.
        clip_percentiles: (low, high) percentiles of the training labels to clip the
            regression target to; None: no clipping.
        log: train on ``log1p(label)`` and invert at prediction (long-tailed targets).
    """

    column: str
    kind: str
    positive_threshold: float = 1.0
    clip_percentiles: tuple[float, float] | None = None
    log: bool = False


@dataclass(frozen=True)
class AggregateSpec:
    """Point-in-time aggregates dbt computes for each id the source has.

    For each entity (user, item) and each window ``w`` in ``windows_days``:
    ``<entity>_events_<w>d``, ``<entity>_positives_<w>d`` and the smoothed
    ``<entity>_positive_rate_<w>d`` = (positives + prior * weight) / (events + weight),
    over the events strictly before each event. ``user_history`` holds the user's last
    ``history_length`` positive items before the event within the longest window (newest
    first, not padded: ``models.inputs.features.history_array`` pads with ``""``).
    """

    windows_days: tuple[int, ...] = (1, 7, 30)
    history_length: int = 20
    rate_prior: float = 0.05
    rate_prior_weight: float = 20.0


@dataclass(frozen=True)
class FeatureSpec:
    """Everything the feature layer and the models need to know about one source."""

    source: str
    label: LabelSpec
    columns: tuple[FeatureColumn, ...]
    user_id: bool = True
    item_id: bool = True
    extra_labels: tuple[str, ...] = ()
    crosses: tuple[FeatureCross, ...] = ()
    aggregates: AggregateSpec = field(default_factory=AggregateSpec)
    id_embedding_dim: int = 32
    id_min_count: int = 2
    # Longest string bronze accepts in any column; longer values are quarantined (a
    # runaway id would otherwise reach the vocabularies and the embedding tables).
    max_string_length: int = 512

    # ---- column groups -------------------------------------------------------------
    def column(self, name: str) -> FeatureColumn:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.source}: no column {name!r} in the feature spec")

    @property
    def has_ids(self) -> bool:
        """Whether the source has both user and item ids (retrieval and /recommend)."""
        return self.user_id and self.item_id

    @property
    def bronze_feature_columns(self) -> tuple[FeatureColumn, ...]:
        """Spec columns that bronze stores (every column not derived from event_ts)."""
        return tuple(c for c in self.columns if not c.derived)

    def role_columns(self, role: str) -> tuple[FeatureColumn, ...]:
        return tuple(c for c in self.columns if c.role == role)

    @property
    def id_columns(self) -> tuple[str, ...]:
        return tuple(name for name, present in (("user_id", self.user_id), ("item_id", self.item_id)) if present)

    @property
    def entities(self) -> tuple[str, ...]:
        """Entities with point-in-time aggregates: ``user`` and/or ``item``."""
        return tuple(name.removesuffix("_id") for name in self.id_columns)

    def aggregate_columns(self, entity: str) -> tuple[str, ...]:
        """The aggregate columns of one entity, in table order."""
        names: list[str] = []
        for window in self.aggregates.windows_days:
            names += [f"{entity}_events_{window}d", f"{entity}_positives_{window}d", f"{entity}_positive_rate_{window}d"]
        return tuple(names)

    @property
    def aggregate_features(self) -> tuple[FeatureColumn, ...]:
        """Aggregates the ranker uses: log-normalized counts and normalized rates."""
        return self.aggregate_features_within(None)

    def aggregate_features_within(self, max_window_days: int | None) -> tuple[FeatureColumn, ...]:
        """The ranker's aggregates over windows of at most ``max_window_days`` (None: all)."""
        features: list[FeatureColumn] = []
        for entity in self.entities:
            for window in self.aggregates.windows_days:
                if max_window_days is not None and window > max_window_days:
                    continue
                features.append(FeatureColumn(f"{entity}_events_{window}d", entity, "float", "normalize", log=True))
                features.append(FeatureColumn(f"{entity}_positive_rate_{window}d", entity, "float", "normalize"))
        return tuple(features)

    @property
    def id_features(self) -> tuple[FeatureColumn, ...]:
        return tuple(
            FeatureColumn(
                name,
                name.removesuffix("_id"),
                "string",
                "embedding",
                dim=self.id_embedding_dim,
                min_count=self.id_min_count,
            )
            for name in self.id_columns
        )

    @property
    def model_features(self) -> tuple[FeatureColumn, ...]:
        """Every ranking-model input, in order: ids, spec columns, aggregates."""
        return self.id_features + self.columns + self.aggregate_features

    @property
    def model_feature_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.model_features)

    @property
    def request_features(self) -> tuple[str, ...]:
        """Inputs a serving request sends: the ids, then the context columns."""
        return self.id_columns + tuple(c.name for c in self.role_columns("context"))

    def lookup_features(self, entity: str) -> tuple[str, ...]:
        """Inputs looked up by ``<entity>_id`` at serving time (role columns + aggregates)."""
        return tuple(c.name for c in self.model_features if c.role == entity and c.name != f"{entity}_id")

    @property
    def label_columns(self) -> tuple[str, ...]:
        return (self.label.column, *self.extra_labels)

    # ---- dbt ----------------------------------------------------------------------
    def dbt_vars(self) -> dict[str, Any]:
        """The spec as dbt vars: what ``dbt_project`` models loop over.

        Keys: ``source``; ``canonical_columns`` (the event contract's columns -> SQL
        type, ``reclake.contracts``); ``feature_columns`` (bronze spec columns: name, sql_type, role);
        ``user_columns`` / ``item_columns`` (names); ``has_user_id`` / ``has_item_id``;
        ``label_column``; ``label_columns`` (every label); ``positive_threshold``;
        ``windows_days``; ``history_length``; ``rate_prior``; ``rate_prior_weight``.
        """
        return {
            "source": self.source,
            "canonical_columns": event_sql_types(),
            "feature_columns": [
                {"name": c.name, "sql_type": c.sql_type, "role": c.role} for c in self.bronze_feature_columns
            ],
            "user_columns": [c.name for c in self.bronze_feature_columns if c.role == "user"],
            "item_columns": [c.name for c in self.bronze_feature_columns if c.role == "item"],
            "has_user_id": self.user_id,
            "has_item_id": self.item_id,
            "label_column": self.label.column,
            "label_columns": list(self.label_columns),
            "positive_threshold": self.label.positive_threshold,
            "windows_days": list(self.aggregates.windows_days),
            "history_length": self.aggregates.history_length,
            "rate_prior": self.aggregates.rate_prior,
            "rate_prior_weight": self.aggregates.rate_prior_weight,
        }

    # ---- serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain form (the YAML layout); ``feature_spec_from_dict(spec.to_dict()) == spec``."""
        columns = {}
        for column in self.columns:
            entry = {"role": column.role, "dtype": column.dtype, "transform": column.transform}
            for key, default in _COLUMN_DEFAULTS.items():
                value = getattr(column, key)
                if value != default:
                    entry[key] = list(value) if isinstance(value, tuple) else value
            columns[column.name] = entry
        return {
            "source": self.source,
            "label": {
                "column": self.label.column,
                "kind": self.label.kind,
                "positive_threshold": self.label.positive_threshold,
                "clip_percentiles": list(self.label.clip_percentiles) if self.label.clip_percentiles else None,
                "log": self.label.log,
            },
            "extra_labels": list(self.extra_labels),
            "ids": {"user_id": self.user_id, "item_id": self.item_id},
            "id_embedding_dim": self.id_embedding_dim,
            "id_min_count": self.id_min_count,
            "max_string_length": self.max_string_length,
            "aggregates": {
                "windows_days": list(self.aggregates.windows_days),
                "history_length": self.aggregates.history_length,
                "rate_prior": self.aggregates.rate_prior,
                "rate_prior_weight": self.aggregates.rate_prior_weight,
            },
            "columns": columns,
            "crosses": [{"columns": list(c.columns), "hash_buckets": c.hash_buckets, "dim": c.dim} for c in self.crosses],
        }


_COLUMN_DEFAULTS: dict[str, Any] = {
    "dim": 8,
    "min_count": 1,
    "oov_buckets": 1,
    "hash_buckets": None,
    "quantiles": None,
    "log": False,
    "period": None,
    "values": None,
    "min_value": None,
    "max_value": None,
    "nullable": False,
    "derived": False,
}


def feature_spec_from_dict(data: Mapping[str, Any], where: str = "feature spec") -> FeatureSpec:
    """Build and validate a spec from its YAML layout.

    Raises:
        FeatureSpecError: naming ``where`` and the offending key, for unknown keys, roles,
            dtypes or transforms, missing transform settings, crosses of unknown columns,
            and a label kind that does not fit its column.
    """
    _unknown(data, {"source", "label", "extra_labels", "ids", "aggregates", "columns", "crosses",
                    "id_embedding_dim", "id_min_count", "max_string_length"}, where)  # fmt: skip
    for key in ("source", "label", "columns"):
        if key not in data:
            raise FeatureSpecError(f"{where}: missing required key {key!r}")
    label_data = dict(data["label"])
    _unknown(label_data, {"column", "kind", "positive_threshold", "clip_percentiles", "log"}, f"{where}: label")
    if label_data.get("kind") not in LABEL_KINDS:
        raise FeatureSpecError(f"{where}: label.kind must be one of {LABEL_KINDS}, got {label_data.get('kind')!r}")
    clip = label_data.get("clip_percentiles")
    label = LabelSpec(
        column=str(label_data["column"]),
        kind=label_data["kind"],
        positive_threshold=float(label_data.get("positive_threshold", 1.0)),
        clip_percentiles=(float(clip[0]), float(clip[1])) if clip else None,
        log=bool(label_data.get("log", False)),
    )
    if label.kind == "binary" and (label.clip_percentiles or label.log):
        raise FeatureSpecError(f"{where}: label: clip_percentiles and log apply to regression labels only")
    if label.clip_percentiles and not 0 <= label.clip_percentiles[0] < label.clip_percentiles[1] <= 100:
        raise FeatureSpecError(f"{where}: label.clip_percentiles must be 0 <= low < high <= 100, got {clip}")
    columns = tuple(_column(name, dict(entry or {}), f"{where}: columns.{name}") for name, entry in data["columns"].items())
    names = [c.name for c in columns]
    ids = dict(data.get("ids") or {"user_id": True, "item_id": True})
    _unknown(ids, {"user_id", "item_id"}, f"{where}: ids")
    reserved = {"user_id", "item_id", "event_id", "event_ts", "event_date", label.column, *data.get("extra_labels", [])}
    clashes = sorted(set(names) & reserved)
    if clashes:
        raise FeatureSpecError(f"{where}: columns {clashes} are ids, labels or event keys, not features")
    crosses = []
    for index, entry in enumerate(data.get("crosses") or []):
        _unknown(entry, {"columns", "hash_buckets", "dim"}, f"{where}: crosses[{index}]")
        pair = tuple(entry.get("columns") or ())
        known = set(names) | {n for n, present in ids.items() if present}
        if len(pair) != 2 or not set(pair) <= known:
            raise FeatureSpecError(f"{where}: crosses[{index}].columns must be two spec columns, got {list(pair)}")
        crosses.append(FeatureCross(columns=(str(pair[0]), str(pair[1])), hash_buckets=int(entry["hash_buckets"]),
                                    dim=int(entry.get("dim", 8))))  # fmt: skip
    aggregates_data = dict(data.get("aggregates") or {})
    _unknown(aggregates_data, {"windows_days", "history_length", "rate_prior", "rate_prior_weight"}, f"{where}: aggregates")
    aggregates = AggregateSpec(
        windows_days=tuple(int(w) for w in aggregates_data.get("windows_days", (1, 7, 30))),
        history_length=int(aggregates_data.get("history_length", 20)),
        rate_prior=float(aggregates_data.get("rate_prior", 0.05)),
        rate_prior_weight=float(aggregates_data.get("rate_prior_weight", 20.0)),
    )
    if not aggregates.windows_days or min(aggregates.windows_days) < 1 or aggregates.history_length < 1:
        raise FeatureSpecError(f"{where}: aggregates need windows_days >= 1 and history_length >= 1")
    return FeatureSpec(
        source=str(data["source"]),
        label=label,
        columns=columns,
        user_id=bool(ids.get("user_id", True)),
        item_id=bool(ids.get("item_id", True)),
        extra_labels=tuple(str(x) for x in data.get("extra_labels") or ()),
        crosses=tuple(crosses),
        aggregates=aggregates,
        id_embedding_dim=int(data.get("id_embedding_dim", 32)),
        id_min_count=int(data.get("id_min_count", 2)),
        max_string_length=int(data.get("max_string_length", 512)),
    )


def _unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise FeatureSpecError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _column(name: str, entry: dict[str, Any], where: str) -> FeatureColumn:
    _unknown(entry, {"role", "dtype", "transform", *_COLUMN_DEFAULTS}, where)
    for key, allowed in (("role", ROLES), ("dtype", DTYPES), ("transform", TRANSFORMS)):
        if entry.get(key) not in allowed:
            raise FeatureSpecError(f"{where}: {key} must be one of {allowed}, got {entry.get(key)!r}")
    needs = {"hashing": "hash_buckets", "bucketize": "quantiles", "cyclical": "period"}.get(entry["transform"])
    if needs and not entry.get(needs):
        raise FeatureSpecError(f"{where}: transform {entry['transform']} needs {needs}")
    if entry["transform"] in ("normalize", "cyclical", "bucketize") and entry["dtype"] == "string":
        raise FeatureSpecError(f"{where}: transform {entry['transform']} needs a numeric dtype, got string")
    if entry.get("derived") and name not in DERIVED_COLUMNS:
        raise FeatureSpecError(f"{where}: only {sorted(DERIVED_COLUMNS)} can be derived")
    values = entry.get("values")
    return FeatureColumn(
        name=name,
        role=entry["role"],
        dtype=entry["dtype"],
        transform=entry["transform"],
        dim=int(entry.get("dim", 8)),
        min_count=int(entry.get("min_count", 1)),
        oov_buckets=int(entry.get("oov_buckets", 1)),
        hash_buckets=int(entry["hash_buckets"]) if entry.get("hash_buckets") else None,
        quantiles=int(entry["quantiles"]) if entry.get("quantiles") else None,
        log=bool(entry.get("log", False)),
        period=int(entry["period"]) if entry.get("period") else None,
        values=tuple(values) if values is not None else None,
        min_value=float(entry["min_value"]) if entry.get("min_value") is not None else None,
        max_value=float(entry["max_value"]) if entry.get("max_value") is not None else None,
        nullable=bool(entry.get("nullable", False)),
        derived=bool(entry.get("derived", False)),
    )


def spec_path(source: str) -> Path:
    """The packaged spec file of a source."""
    return SPEC_DIR / f"{source}.yaml"


def available_specs() -> list[str]:
    """Sources with a packaged spec."""
    return sorted(path.stem for path in SPEC_DIR.glob("*.yaml"))


def load_feature_spec(source_or_path: str | os.PathLike[str]) -> FeatureSpec:
    """Read a spec by source name (packaged specs) or by path to a YAML file.

    Raises:
        FeatureSpecError: an unknown source name, or an invalid spec (naming the file).
    """
    path = Path(source_or_path)
    if not path.suffix:
        path = spec_path(str(source_or_path))
        if not path.is_file():
            raise FeatureSpecError(
                f"no feature spec for source {source_or_path!r}; packaged specs: {', '.join(available_specs())}"
            )
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise FeatureSpecError(f"{path}: expected a mapping at the top level")
    return feature_spec_from_dict(data, where=str(path))


def check_frame_columns(spec: FeatureSpec, columns: Sequence[str], what: str) -> None:
    """Raise FeatureSpecError naming the spec columns ``columns`` lacks."""
    missing = [c for c in spec.model_feature_names if c not in columns]
    if missing:
        raise FeatureSpecError(f"{what} lacks feature column(s) {missing} of the {spec.source} spec")
