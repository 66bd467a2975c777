"""Export a source's ranker (and, where the source has ids, its retrieval) as one SavedModel.

The SavedModel holds the ranking model, id -> feature lookup tables built from the
``user_features`` / ``item_features`` tables, and, for sources with user and item ids,
the two-tower query tower and a brute-force index over every item. Its signatures take
only what a request knows; everything else is looked up inside the graph, so serving
computes features exactly as the exporter saw them. Inputs follow the source's feature
spec (``FeatureSpec.request_features``):

- ``predict(<ids>, <context columns>) -> score``: the ranker's output, a probability
  for a binary label (pCTR) or the predicted label (e.g. a rating) for a regression one;
  multi-task rankers (ESMM, MMoE) add ``pctr``, ``pcvr`` and ``pctcvr``;
- ``rank(<every model feature>) -> score``: scores full rows as they are in
  ``training_examples`` (point-in-time features included), no lookups;
- ``retrieve(user_id, k) -> item_ids, scores`` (two-tower dot products), with a
  retrieval model only;
- ``retrieve_features(<query tower features>, k) -> item_ids, scores, known_user``: the
  same retrieval from user features the caller supplies (an online feature store), so
  fresh aggregates reach the query tower without a re-export; ``known_user`` says
  whether the user id is in the model's vocabulary;
- ``recommend_features(<user features>, <context columns>, history, k) -> item_ids,
  scores, known_user``: ``recommend`` for a server with an online store: the user's
  features come from the caller, the items' from the item table's columns (variables a
  server refreshes from its store, ``Recommender.set_item_features``), and the caller's
  ``history`` of recent items is ranked last. One call per request;
- ``recommend(user_id, k, <context columns>) -> item_ids, scores, known_user``: retrieve
  ``max(k, MIN_RERANK_CANDIDATES)`` candidates, score them with the ranker, rank the
  user's already seen items last with ``SEEN_SCORE``, return the best ``k``. ``k`` is
  chosen per request, up to the number of indexed items.

``assets/reclake_model.json`` next to the graph carries the version, metrics, the feature
spec, the input spec of every signature, the values a missing user or item gets
(``lookup_defaults``) and the popularity fallback for unknown users (every indexed item,
most popular first, so any ``k`` can be served).

One module on purpose (about 500 lines): the serving module, its signatures and the
loader that checks them against the metadata are one contract, written and read here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras as keras

from models.export.saving import save_module
from models.inputs.features import FittedFeatures, column_array, feature_arrays, require_columns
from models.retrieval.popularity import complete_popularity
from models.retrieval.two_tower import TwoTowerModel, build_index
from reclake.feature_spec import FeatureColumn, FeatureSpec, feature_spec_from_dict

MIN_RERANK_CANDIDATES = 100
METADATA_FILE = os.path.join("assets", "reclake_model.json")
REQUIRED_METADATA = ("model_version", "trained_on", "evaluated_on", "metrics")
SEEN_SCORE = -1e9  # ``recommend`` score of an item the user has already interacted with
_PAIR_SEPARATOR = "\x1f"
_TF_DTYPES = {"string": tf.string, "int": tf.int64, "float": tf.float32}


def input_signature(columns: Sequence[FeatureColumn]) -> dict[str, tf.TensorSpec]:
    """``[None]`` tensor specs named after ``columns``, with their spec dtypes."""
    return {c.name: tf.TensorSpec([None], _TF_DTYPES[c.dtype], name=c.name) for c in columns}


def _request_columns(spec: FeatureSpec) -> list[FeatureColumn]:
    by_name = {c.name: c for c in spec.model_features}
    return [by_name[name] for name in spec.request_features]


def _context_columns(spec: FeatureSpec) -> list[FeatureColumn]:
    return list(spec.role_columns("context"))


class FeatureLookup(tf.Module):
    """``id -> feature values`` table with one default row for unknown ids.

    Args:
        ids: Unique ids, one per row.
        columns: Feature name -> values aligned with ``ids``.
        defaults: Feature name -> value returned for ids not in ``ids``.
    """

    def __init__(self, ids: np.ndarray, columns: dict[str, np.ndarray], defaults: dict[str, Any], name: str) -> None:
        super().__init__(name=name)
        self.size = len(ids)
        self.defaults = dict(defaults)
        # Row order of ``columns``: a server refreshes the columns from its online store in it.
        self.ids = tf.Variable(ids.astype(str), trainable=False, name="ids")
        self.rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(np.append(ids.astype(str), _PAIR_SEPARATOR)), tf.range(self.size + 1, dtype=tf.int64)
            ),
            default_value=self.size,
        )
        self.columns = {}
        for column, values in columns.items():
            with_default = np.append(values, [defaults[column]])
            with_default = with_default.astype(str) if values.dtype == object else with_default.astype(values.dtype)
            self.columns[column] = tf.Variable(with_default, trainable=False, name=column)

    def lookup(self, ids: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """Return (feature name -> ``[B]`` values, ``[B]`` bool: id was in the table)."""
        rows = self.rows.lookup(ids)
        return {column: tf.gather(values, rows) for column, values in self.columns.items()}, rows < self.size


def lookup_defaults(spec: FeatureSpec, entity: str, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Values for an id missing from its table: ``""`` (out of vocabulary) for strings,
    no events for counts, the prior for rates, the median for other numbers."""
    defaults: dict[str, Any] = {}
    for name in spec.lookup_features(entity):
        values = columns[name]
        if values.dtype == object:
            defaults[name] = ""
        elif "_events_" in name:
            defaults[name] = 0
        elif "_positive_rate_" in name:
            defaults[name] = spec.aggregates.rate_prior
        else:
            defaults[name] = np.median(values) if len(values) else 0
    return defaults


def build_lookup(spec: FeatureSpec, entity: str, table: pd.DataFrame) -> FeatureLookup:
    """The in-graph lookup of an entity's role columns and aggregates by its id."""
    id_column = f"{entity}_id"
    names = spec.lookup_features(entity)
    require_columns(table, (id_column, *names), f"{entity}_features")
    ids = _unique_ids(table, id_column, f"{entity}_features")
    by_name = {c.name: c for c in spec.model_features}
    columns = {name: column_array(table, by_name[name]) for name in names}
    return FeatureLookup(ids, columns, lookup_defaults(spec, entity, columns), name=f"{entity}_features")


class RecommenderModule(tf.Module):
    """The exported graph: lookups, ranker and (with ids) query tower and index."""

    def __init__(
        self,
        ranking_model: keras.Model,
        fitted: FittedFeatures,
        users: FeatureLookup | None,
        items: FeatureLookup | None,
        query_tower: keras.Model | None = None,
        index: keras.Model | None = None,
        item_count: int = 0,
        seen_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__(name="reclake_recommender")
        self.ranking_model = ranking_model
        self.spec = fitted.spec
        self.log_label = self.spec.label.kind == "regression" and self.spec.label.log
        self.users = users
        self.items = items
        self.query_tower = query_tower
        self.index = index
        self.item_count = item_count
        self.query_features = ()
        if query_tower is not None:
            self.query_features = tuple(query_tower.feature_names)
            users_seen, items_seen = seen_pairs if seen_pairs is not None else (np.array([]), np.array([]))
            keys = np.char.add(np.char.add(users_seen.astype(str), _PAIR_SEPARATOR), items_seen.astype(str))
            self.seen = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(np.append(keys, _PAIR_SEPARATOR)),  # never empty: an impossible pair
                    tf.ones([len(keys) + 1], tf.int64),
                ),
                default_value=0,
            )

    def _outputs(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """``score``; multi-task rankers add ``pctr``, ``pcvr``, ``pctcvr`` (score = pCTR)."""
        outputs = self.ranking_model(features, training=False)
        if isinstance(outputs, dict):
            tasks = {name: tf.cast(value, tf.float32) for name, value in outputs.items()}
            return {"score": tasks["pctr"], **tasks}
        score = tf.cast(outputs, tf.float32)
        return {"score": tf.math.expm1(score) if self.log_label else score}

    def _with_lookups(self, request: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        features = dict(request)
        if self.users is not None:
            features.update(self.users.lookup(request["user_id"])[0])
        if self.items is not None:
            features.update(self.items.lookup(request["item_id"])[0])
        return features

    def predict(self, request: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return self._outputs(self._with_lookups(request))

    def rank(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Scores full feature rows (point-in-time features included), no lookups."""
        return self._outputs(features)

    def _retrieve(self, user_id: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        user_features, _ = self.users.lookup(user_id)
        query = self.query_tower(
            {name: user_id if name == "user_id" else user_features[name] for name in self.query_features}
        )
        k = tf.clip_by_value(tf.cast(k, tf.int32), 1, self.item_count)
        return self.index(query, k=k)

    def retrieve(self, user_id: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, item_ids = self._retrieve(user_id, k)
        return {"item_ids": item_ids, "scores": tf.cast(scores, tf.float32)}

    def retrieve_features(self, query: dict[str, tf.Tensor], k: tf.Tensor) -> dict[str, tf.Tensor]:
        """Retrieval from caller-supplied user features (``query_features``), not the lookups."""
        k = tf.clip_by_value(tf.cast(k, tf.int32), 1, self.item_count)
        scores, item_ids = self.index(self.query_tower({name: query[name] for name in self.query_features}), k=k)
        _, known_user = self.users.lookup(query["user_id"])
        return {"item_ids": item_ids, "scores": tf.cast(scores, tf.float32), "known_user": known_user}

    def recommend_features(
        self, request: dict[str, tf.Tensor], history: tf.Tensor, k: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """``recommend`` from caller-supplied user features (an online store's row: the query
        tower's inputs and the user's lookup features) and context, with the items'
        features read from the item table's columns (which a server refreshes from its
        store) and the caller's ``history`` (``[B, H]`` item ids, ``""`` padding) ranked
        last with ``SEEN_SCORE`` instead of the training window's seen pairs. Retrieves
        ``max(k + H, MIN_RERANK_CANDIDATES)`` candidates, so ``k`` unseen ones remain."""
        k = tf.clip_by_value(tf.cast(k, tf.int32), 1, self.item_count)
        width = tf.minimum(tf.maximum(k + tf.shape(history)[1], MIN_RERANK_CANDIDATES), self.item_count)
        query = self.query_tower({name: request[name] for name in self.query_features})
        _, candidates = self.index(query, k=width)
        batch, width = tf.shape(candidates)[0], tf.shape(candidates)[1]
        flat = {name: tf.repeat(values, width) for name, values in request.items()}
        flat["item_id"] = tf.reshape(candidates, [-1])
        flat.update(self.items.lookup(flat["item_id"])[0])
        scores = tf.reshape(self._outputs(flat)["score"], [batch, width])
        seen = tf.reduce_any(tf.equal(candidates[:, :, tf.newaxis], history[:, tf.newaxis, :]), axis=-1)
        scores = tf.where(seen, tf.constant(SEEN_SCORE, tf.float32), scores)
        best, order = tf.math.top_k(scores, k=tf.minimum(k, width))
        _, known_user = self.users.lookup(request["user_id"])
        return {"item_ids": tf.gather(candidates, order, batch_dims=1), "scores": best, "known_user": known_user}

    def recommend(self, request: dict[str, tf.Tensor], k: tf.Tensor) -> dict[str, tf.Tensor]:
        user_id = request["user_id"]
        k = tf.clip_by_value(tf.cast(k, tf.int32), 1, self.item_count)
        _, candidates = self._retrieve(user_id, tf.maximum(k, MIN_RERANK_CANDIDATES))
        batch, width = tf.shape(candidates)[0], tf.shape(candidates)[1]
        flat_items = tf.reshape(candidates, [-1])
        flat = {name: tf.repeat(values, width) for name, values in request.items()}
        flat["item_id"] = flat_items
        scores = self._outputs(self._with_lookups(flat))["score"]
        seen = self.seen.lookup(tf.strings.join([flat["user_id"], flat_items], separator=_PAIR_SEPARATOR)) > 0
        scores = tf.where(seen, tf.constant(SEEN_SCORE, tf.float32), scores)
        best, order = tf.math.top_k(tf.reshape(scores, [batch, width]), k=tf.minimum(k, width))
        _, known_user = self.users.lookup(user_id)
        return {"item_ids": tf.gather(candidates, order, batch_dims=1), "scores": best, "known_user": known_user}


def _unique_ids(table: pd.DataFrame, id_column: str, what: str) -> np.ndarray:
    ids = table[id_column].astype(str).to_numpy()
    if len(ids) == 0:
        raise ValueError(f"{what} is empty")
    index = pd.Index(ids)
    duplicated = index[index.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"{what} has duplicate {id_column}s, e.g. {duplicated[:5]}")
    return ids


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"metadata value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def signature_inputs(spec: FeatureSpec, query_features: Sequence[str] = ()) -> dict[str, dict[str, str]]:
    """The documented input spec: signature -> input name -> dtype (``string``, ``int``, ``float``).

    ``query_features``: the query tower's inputs; empty for a model without retrieval.
    """
    request = {c.name: c.dtype for c in _request_columns(spec)}
    by_name = {c.name: c for c in spec.model_features}
    inputs = {"predict": request, "rank": {c.name: c.dtype for c in spec.model_features}}
    if query_features:
        inputs["retrieve"] = {"user_id": "string", "k": "int"}
        inputs["retrieve_features"] = {**{name: by_name[name].dtype for name in query_features}, "k": "int"}
        inputs["recommend"] = {"user_id": "string", "k": "int", **{c.name: c.dtype for c in _context_columns(spec)}}
        inputs["recommend_features"] = {
            **{c.name: c.dtype for c in recommend_feature_columns(spec, query_features)},
            "history": "string",
            "k": "int",
        }
    return inputs


def recommend_feature_columns(spec: FeatureSpec, query_features: Sequence[str]) -> list[FeatureColumn]:
    """The per-user inputs of ``recommend_features``: ``user_id``, the query tower's
    features, the user's lookup features and the context columns, once each."""
    by_name = {c.name: c for c in spec.model_features}
    names = ["user_id", *query_features, *spec.lookup_features("user"), *(c.name for c in _context_columns(spec))]
    return [by_name[name] for name in dict.fromkeys(names)]


def export_recommender(
    ranking_model: keras.Model,
    user_features: pd.DataFrame | None,
    item_features: pd.DataFrame | None,
    metadata: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    retrieval_model: TwoTowerModel | None = None,
    popular_items: Sequence[tuple[str, float]] = (),
    seen_items: pd.DataFrame | None = None,
) -> str:
    """Write the SavedModel of a source's ranker (and retrieval, with ids) to ``path``.

    Args:
        ranking_model: A trained single-task zoo ranker; its ``fitted`` features carry
            the feature spec.
        user_features: The ``user_features`` table; None when the spec has no user ids.
        item_features: The ``item_features`` table (every row a retrieval candidate);
            None when the spec has no item ids.
        metadata: ``model_version``, ``trained_on`` ([first_day, last_day]),
            ``evaluated_on`` (day) and ``metrics`` (dict); JSON-serialisable.
        path: Local directory to create; must not exist or be empty.
        retrieval_model: The trained two-tower model (sources with user and item ids);
            without one the SavedModel has no ``retrieve`` / ``recommend``.
        popular_items: ``[(item_id, score), ...]`` best first: the fallback for unknown
            users; required with retrieval.
        seen_items: ``user_id, item_id`` pairs the user already consumed (the training
            window's positives); ``recommend`` ranks them last with ``SEEN_SCORE``.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: a missing table, column or metadata key, duplicate ids, retrieval for
            a source without ids, or retrieval without a popularity list.
        FileExistsError: if ``path`` exists and is not empty.
    """
    fitted: FittedFeatures = ranking_model.fitted
    spec = fitted.spec
    missing_keys = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing_keys:
        raise ValueError(f"metadata is missing {missing_keys}; required keys are {list(REQUIRED_METADATA)}")
    path = os.fspath(path)
    if os.path.isdir(path) and os.listdir(path):
        raise FileExistsError(f"export directory {path} is not empty")
    tables = {"user": user_features, "item": item_features}
    lookups = {}
    for entity, present in (("user", spec.user_id), ("item", spec.item_id)):
        if present and tables[entity] is None:
            raise ValueError(f"the {spec.source} spec has {entity} ids: pass {entity}_features")
        lookups[entity] = build_lookup(spec, entity, tables[entity]) if present else None

    query_tower = index = None
    item_count = 0
    if retrieval_model is not None and not spec.has_ids:
        raise ValueError(f"the {spec.source} spec has no user and item ids: it cannot have a retrieval model")
    if retrieval_model is not None:
        if not popular_items:
            raise ValueError("pass popular_items with a retrieval model: unknown users get them")
        candidate_names = retrieval_model.candidate_tower.feature_names
        candidates = item_features.drop_duplicates("item_id")
        item_count = len(candidates)
        index = build_index(retrieval_model, feature_arrays(candidates, spec, names=candidate_names), item_count)
        query_tower = retrieval_model.query_tower
    query_features: tuple[str, ...] = ()
    if retrieval_model is not None:
        tower_inputs = retrieval_model.query_tower.feature_names
        query_features = ("user_id", *(name for name in tower_inputs if name != "user_id"))
        popular_items = complete_popularity(popular_items, candidates["item_id"].astype(str))
    if seen_items is None:
        seen_items = pd.DataFrame({"user_id": [], "item_id": []})
    require_columns(seen_items, ("user_id", "item_id"), "seen_items")
    seen_pairs = (seen_items["user_id"].astype(str).to_numpy(), seen_items["item_id"].astype(str).to_numpy())
    module = RecommenderModule(
        ranking_model, fitted, lookups["user"], lookups["item"], query_tower, index, item_count, seen_pairs
    )
    k_spec = tf.TensorSpec([], tf.int32, name="k")
    signatures = {
        "predict": tf.function(module.predict, input_signature=[input_signature(_request_columns(spec))]),
        "rank": tf.function(module.rank, input_signature=[input_signature(spec.model_features)]),
    }
    if retrieval_model is not None:
        recommend_inputs = input_signature([spec.id_features[0], *_context_columns(spec)])
        signatures["retrieve"] = tf.function(
            module.retrieve, input_signature=[tf.TensorSpec([None], tf.string, name="user_id"), k_spec]
        )
        signatures["recommend"] = tf.function(module.recommend, input_signature=[recommend_inputs, k_spec])
        by_name = {c.name: c for c in spec.model_features}
        query_inputs = input_signature([by_name[name] for name in query_features])
        signatures["retrieve_features"] = tf.function(module.retrieve_features, input_signature=[query_inputs, k_spec])
        signatures["recommend_features"] = tf.function(
            module.recommend_features,
            input_signature=[
                input_signature(recommend_feature_columns(spec, query_features)),
                tf.TensorSpec([None, None], tf.string, name="history"),
                k_spec,
            ],
        )
    for name, function in signatures.items():
        setattr(module, f"{name}_signature", function)  # tracked by the module, saved with it
    save_module(module, path, signatures)
    document = {
        "model_version": metadata["model_version"],
        "trained_on": list(metadata["trained_on"]),
        "evaluated_on": metadata["evaluated_on"],
        "metrics": metadata["metrics"],
        "source": spec.source,
        "label": {"column": spec.label.column, "kind": spec.label.kind},
        "feature_spec": spec.to_dict(),
        "inputs": signature_inputs(spec, query_features),
        "lookup_defaults": {
            entity: {name: lookup.defaults[name] for name in spec.lookup_features(entity)}
            for entity, lookup in lookups.items()
            if lookup is not None
        },
        "outputs": ["score", "pctr", "pcvr", "pctcvr"] if getattr(ranking_model, "multitask", False) else ["score"],
        "popular_items": [[str(item_id), float(score)] for item_id, score in popular_items],
        "item_count": item_count,
    }
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, METADATA_FILE), "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, default=_json_default)
    return path


@dataclass(frozen=True)
class ScoredItem:
    """One recommended item and its score (the ranker's, or click share for the fallback)."""

    item_id: str
    score: float


@dataclass(frozen=True)
class Recommendation:
    """Recommendations for one user.

    Attributes:
        user_id: The requested user.
        items: Best first.
        fallback: ``None`` for model recommendations, ``"popularity"`` when the user is
            unknown to the model and the popularity list was served instead.
    """

    user_id: str
    items: list[ScoredItem]
    fallback: str | None


def _check_values(values: pd.Series, column: FeatureColumn) -> None:
    """Raise ValueError naming ``column`` when a value breaks the spec's rules for it."""
    present = values[values.notna()]
    if len(present) < len(values) and not column.nullable and column.name not in ("user_id", "item_id"):
        raise ValueError(f"{column.name} may not be null")
    bad = []
    if column.values is not None:
        bad = sorted({v for v in present if v not in column.values}, key=str)
    if column.min_value is not None:
        bad += sorted({v for v in present if v < column.min_value})
    if column.max_value is not None:
        bad += sorted({v for v in present if v > column.max_value})
    if bad:
        allowed = list(column.values) if column.values is not None else f"[{column.min_value}, {column.max_value}]"
        raise ValueError(f"{column.name} must be in {allowed}; got {bad[:5]}")


class SavedModelExport:
    """A SavedModel folder Reclake exported: its metadata file and its signatures.

    Attributes:
        metadata: The parsed ``assets/reclake_model.json``.

    Raises:
        FileNotFoundError: if the folder holds no ``METADATA_FILE`` (not a Reclake export).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = os.fspath(path)
        metadata_path = os.path.join(path, METADATA_FILE)
        if not os.path.isfile(metadata_path):
            raise FileNotFoundError(f"{path} is not a Reclake SavedModel: {METADATA_FILE} is missing")
        with open(metadata_path, encoding="utf-8") as handle:
            self.metadata: dict[str, Any] = json.load(handle)
        # Keep the loaded object: its signatures' tables and variables live as long as it does.
        self._saved_model = tf.saved_model.load(path)
        self._signatures = self._saved_model.signatures

    @property
    def model_version(self) -> str:
        return str(self.metadata["model_version"])

    @property
    def item_count(self) -> int:
        return int(self.metadata["item_count"])


class Recommender(SavedModelExport):
    """A loaded SavedModel written by ``export_recommender``, called through its signatures.

    Attributes:
        metadata: The parsed ``assets/reclake_model.json``.
        spec: The feature spec the model was trained with.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self.spec = feature_spec_from_dict(self.metadata["feature_spec"], where=f"{os.fspath(path)} feature_spec")

    @property
    def can_recommend(self) -> bool:
        return "recommend" in self._signatures

    def _tensors(self, rows: pd.DataFrame, columns: Sequence[FeatureColumn]) -> dict[str, tf.Tensor]:
        require_columns(rows, [c.name for c in columns], "request rows")
        for column in columns:
            _check_values(rows[column.name], column)
        return {c.name: tf.constant(column_array(rows, c)) for c in columns}

    def recommend(self, user_ids: Sequence[str], k: int, context: pd.DataFrame) -> list[Recommendation]:
        """Recommend up to ``k`` items per user; unknown users get the popularity list.

        Args:
            user_ids: Users to recommend for.
            k: Items per user, 1 .. ``item_count``; the user's seen items are left out,
                so fewer may come back.
            context: One row per user with the spec's context columns.

        Returns:
            One ``Recommendation`` per user, in input order; items sorted by score, descending.

        Raises:
            ValueError: no retrieval in this model, empty ``user_ids``, ``k`` out of range,
                or a context column missing.
        """
        if not self.can_recommend:
            raise ValueError(
                f"the {self.spec.source} model has no retrieval (no user and item ids, or exported without)"
            )
        if len(user_ids) == 0:
            raise ValueError("user_ids is empty")
        if not 1 <= k <= self.item_count:
            raise ValueError(f"k must be between 1 and {self.item_count} (the indexed items), got {k}")
        inputs = self._tensors(context.reset_index(drop=True), _context_columns(self.spec))
        outputs = self._signatures["recommend"](
            user_id=tf.constant([str(u) for u in user_ids]), k=tf.constant(k, tf.int32), **inputs
        )
        popular = [ScoredItem(str(i), float(s)) for i, s in self.metadata["popular_items"][:k]]
        recommendations = []
        for user_id, item_row, score_row, known in zip(
            user_ids, outputs["item_ids"].numpy(), outputs["scores"].numpy(), outputs["known_user"].numpy(), strict=True
        ):
            if known:
                unseen = [(i, s) for i, s in zip(item_row, score_row, strict=True) if s > SEEN_SCORE]
                recommendations.append(
                    Recommendation(str(user_id), [ScoredItem(i.decode(), float(s)) for i, s in unseen[:k]], None)
                )
            else:
                recommendations.append(Recommendation(str(user_id), popular, "popularity"))
        return recommendations

    def retrieve(self, user_ids: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Two-tower candidates per user: (item_ids ``[B, k]`` str, scores ``[B, k]``)."""
        if "retrieve" not in self._signatures:
            raise ValueError(f"the {self.spec.source} model has no retrieval")
        outputs = self._signatures["retrieve"](
            user_id=tf.constant([str(u) for u in user_ids]), k=tf.constant(k, tf.int32)
        )
        return outputs["item_ids"].numpy().astype(str), outputs["scores"].numpy()

    @property
    def query_features(self) -> tuple[str, ...]:
        """Inputs of ``retrieve_features`` (``user_id`` first, then the query tower's user
        features); empty for a model without retrieval."""
        return tuple(name for name in self.metadata["inputs"].get("retrieve_features", {}) if name != "k")

    @property
    def lookup_defaults(self) -> dict[str, dict[str, Any]]:
        """entity -> feature -> the value a user or item missing from its table gets."""
        return self.metadata.get("lookup_defaults", {})

    def rank_arrays(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of ``rank`` for ready-made input arrays, one per model feature with
        the dtypes of ``models.inputs.features.column_array``. No pandas, no value checks:
        the serving hot path, whose inputs are validated before they get here."""
        outputs = self._signatures["rank"](**{name: tf.constant(values) for name, values in features.items()})
        return {name: value.numpy() for name, value in outputs.items()}

    def predict_arrays(self, request: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of ``predict`` (ids and context arrays; features looked up in the
        graph), for validated inputs."""
        outputs = self._signatures["predict"](**{name: tf.constant(values) for name, values in request.items()})
        return {name: value.numpy() for name, value in outputs.items()}

    def retrieve_arrays(self, query: Mapping[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Two-tower candidates from caller-supplied user features (``query_features``):
        (item_ids ``[B, k]`` str, scores ``[B, k]``, known_user ``[B]`` bool)."""
        outputs = self._signatures["retrieve_features"](
            **{name: tf.constant(query[name]) for name in self.query_features}, k=tf.constant(k, tf.int32)
        )
        return outputs["item_ids"].numpy().astype(str), outputs["scores"].numpy(), outputs["known_user"].numpy()

    @property
    def can_recommend_features(self) -> bool:
        """Whether the model has ``recommend_features`` (exports from before it do not)."""
        return "recommend_features" in self._signatures

    @property
    def recommend_feature_names(self) -> tuple[str, ...]:
        """The per-user inputs of ``recommend_features`` (without ``history`` and ``k``)."""
        return tuple(n for n in self.metadata["inputs"].get("recommend_features", {}) if n not in ("history", "k"))

    def item_table_ids(self) -> np.ndarray:
        """The item table's ids (str), in the row order ``set_item_features`` takes."""
        return self._saved_model.items.ids.numpy().astype(str)

    def set_item_features(self, columns: Mapping[str, np.ndarray]) -> None:
        """Replace the item table's feature values (what ``recommend_features`` and
        ``predict`` read for items) with ``columns``: feature -> values aligned with
        ``item_table_ids()``, one per lookup feature of the item, with the dtypes of
        ``models.inputs.features.column_array``. The default row of unknown ids stays.
        Each column is replaced atomically; a call in flight may see some columns new.

        Raises:
            ValueError: a column missing, unknown, or of the wrong length.
        """
        table = self._saved_model.items
        expected, size = set(self.spec.lookup_features("item")), int(table.ids.shape[0])
        if set(columns) != expected:
            raise ValueError(f"item columns {sorted(columns)} are not the item lookup features {sorted(expected)}")
        for name, values in columns.items():
            if len(values) != size:
                raise ValueError(f"item column {name} has {len(values)} values for {size} items")
            table.columns[name][:size].assign(tf.constant(values, dtype=table.columns[name].dtype))

    def recommend_features_arrays(
        self, request: Mapping[str, np.ndarray], history: np.ndarray, k: int
    ) -> dict[str, np.ndarray]:
        """The raw outputs of ``recommend_features`` (``item_ids`` ``[B, k]`` bytes,
        ``scores``, ``known_user``) for validated inputs: ``request`` one array per
        ``recommend_feature_names``, ``history`` ``[B, H]`` item ids (``""`` padding)."""
        outputs = self._signatures["recommend_features"](
            **{n: tf.constant(request[n]) for n in self.recommend_feature_names},
            history=tf.constant(history, dtype=tf.string),
            k=tf.constant(k, tf.int32),
        )
        return {name: value.numpy() for name, value in outputs.items()}

    def recommend_arrays(
        self, user_ids: np.ndarray, k: int, context: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The raw outputs of ``recommend`` (features looked up in the graph) for validated inputs."""
        outputs = self._signatures["recommend"](
            user_id=tf.constant(user_ids), k=tf.constant(k, tf.int32), **{n: tf.constant(v) for n, v in context.items()}
        )
        return {name: value.numpy() for name, value in outputs.items()}

    def predict_outputs(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Every output of ``predict`` for request rows (ids and context columns of the
        spec): ``score``, plus ``pctr``, ``pcvr``, ``pctcvr`` for multi-task rankers."""
        if rows.empty:
            raise ValueError("rows is empty")
        outputs = self._signatures["predict"](**self._tensors(rows, _request_columns(self.spec)))
        return {name: value.numpy() for name, value in outputs.items()}

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """The ranker's score for request rows (ids and context columns of the spec).

        Returns:
            float32 ``[len(rows)]``: pCTR for a binary label, the predicted label otherwise.
        """
        return self.predict_outputs(rows)["score"]

    def rank(self, examples: pd.DataFrame) -> np.ndarray:
        """The ranker's score for ``training_examples`` rows, using their own
        (point-in-time) features. This is how two exported models are compared on the
        same held-out rows."""
        return self.rank_outputs(examples)["score"]

    def rank_outputs(self, examples: pd.DataFrame) -> dict[str, np.ndarray]:
        """Every output of ``rank`` for ``training_examples`` rows: ``score``, plus
        ``pctr``, ``pcvr``, ``pctcvr`` for multi-task rankers."""
        if examples.empty:
            raise ValueError("examples is empty")
        outputs = self._signatures["rank"](**self._tensors(examples, self.spec.model_features))
        return {name: value.numpy() for name, value in outputs.items()}


def load_recommender(path: str | os.PathLike[str]) -> Recommender:
    """Load a SavedModel written by ``export_recommender``."""
    return Recommender(path)
