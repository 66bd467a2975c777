"""One loaded model version and how it answers ``/recommend`` and ``/predict``.

``ServedModel`` wraps an exported SavedModel (``models.export.savedmodel.Recommender``)
with the online feature store it reads at request time:

- with a store, user and item features come from the store's served version (fresh
  every day the ``online_features`` asset runs), through ``serving.features``; the
  SavedModel's own lookup tables (a snapshot taken at export) are not used. A user or
  item the store lacks gets the exporter's defaults, and the result says so
  (``defaults_used``). ``/recommend`` is one call of the SavedModel's
  ``recommend_features``: retrieve with the user's store features, score the candidates
  with the ranker on the item table's features (``ItemTable`` copies the store's item
  rows into the graph once per published version), rank the user's recent history (the
  store's ``history``) last, keep the best ``k``. Models exported before that signature
  take two calls: ``retrieve_features``, then ``rank`` over the candidates' store rows.
- without a store (a Bento deployed on its own), the snapshot in the graph is used.

The store being unreachable raises ``serving.online_store.StoreUnavailable``; the service
turns it into a 503.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.export.savedmodel import MIN_RERANK_CANDIDATES, SEEN_SCORE, load_recommender
from serving.features import FeatureAssembler, to_array
from serving.online_store import OnlineStore

HISTORY_FIELD = "history"  # the user's recent positive items, newest first, in the store's user rows


ITEM_CACHE_ROWS = 200_000  # per worker; beyond it, the cache of the version is dropped and refilled


class ItemCache:
    """Item feature rows of one published store version, shared by a worker's threads.

    A version's rows never change once published, so entries are never stale;
    ``rows_for`` hands out a fresh dict when the store serves another version (or the
    cache holds ``ITEM_CACHE_ROWS``). Callers keep the dict they got for the whole request
    and add to it in place, so a reset by another thread never pulls rows from under them.
    """

    def __init__(self) -> None:
        self.version: str | None = None
        self.rows: dict[str, tuple[dict[str, Any], bool]] = {}

    def rows_for(self, version: str | None) -> dict[str, tuple[dict[str, Any], bool]]:
        """item id -> (features, whether the store lacked the item), for ``version``."""
        if version != self.version or len(self.rows) > ITEM_CACHE_ROWS:
            self.version, self.rows = version, {}
        return self.rows


def _history(items: Sequence[str]) -> np.ndarray:
    """One user's recent items as the ``[1, H]`` ``history`` input of ``recommend_features``."""
    return np.array([list(items)], dtype=object).reshape(1, len(items))


class ItemTable:
    """Keeps a loaded model's item table (the item features ``recommend_features`` reads)
    equal to the online store's served version, in one worker.

    The first request of a new store version reads every item of the table from the store
    (``REFRESH_CHUNK`` ids per round trip) and replaces the table's columns; the others
    keep serving meanwhile (from the previous version's values). Items the store lacks
    get the exporter's defaults.
    """

    REFRESH_CHUNK = 10_000

    def __init__(self, recommender, assembler: FeatureAssembler) -> None:
        self.recommender = recommender
        self.assembler = assembler
        self.ids = recommender.item_table_ids().tolist()
        self.names = recommender.spec.lookup_features("item")
        self.version: str | None = None
        self.missing: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def refresh(self, store: OnlineStore, namespace: str) -> frozenset[str]:
        """Bring the table to the store's served version if it is not yet; returns the ids
        the store lacks (served with defaults).

        Raises:
            serving.online_store.StoreUnavailable: the store cannot be read.
        """
        version = store.reading_version(namespace)
        if version == self.version:
            return self.missing
        with self._lock:
            if version != self.version:
                rows: list[dict[str, Any] | None] = []
                for start in range(0, len(self.ids), self.REFRESH_CHUNK):
                    rows += store.get_many(namespace, "item", self.ids[start : start + self.REFRESH_CHUNK])
                features = [self.assembler.entity_features("item", row) for row in rows]
                self.recommender.set_item_features(self.assembler.arrays(features, self.names))
                self.missing = frozenset(i for i, row in zip(self.ids, rows, strict=True) if row is None)
                self.version = version
        return self.missing


@dataclass
class Scored:
    """What one request was answered with, for the response and the prediction log.

    Attributes:
        items: item ids, best first (``/recommend``) or per row (``/predict``; may be empty).
        scores: one per item / row.
        tasks: multi-task outputs (``pctr``, ``pcvr``, ``pctcvr``) per row, or empty.
        fallback: ``"popularity"`` when the user was unknown to the model.
        defaults_used: entities (``user``, ``item``) the store lacked and defaults replaced.
        features: the user-side features and context used (logged with the prediction).
    """

    items: list[str]
    scores: list[float]
    tasks: dict[str, list[float]] = field(default_factory=dict)
    fallback: str | None = None
    defaults_used: list[str] = field(default_factory=list)
    features: dict[str, Any] = field(default_factory=dict)


class ServedModel:
    """A model version loaded for serving.

    Args:
        tag: the bento model tag it was loaded from.
        savedmodel_dir: the SavedModel folder.
        store: the online feature store; None: the SavedModel's snapshot features.
    """

    def __init__(self, tag: str, savedmodel_dir: str, store: OnlineStore | None) -> None:
        self.tag = tag
        self.recommender = load_recommender(savedmodel_dir)
        self.spec = self.recommender.spec
        self.metadata = self.recommender.metadata
        self.store = store if self.spec.id_columns else None  # sources without ids send every feature
        self.namespace = self.spec.source
        self.assembler = FeatureAssembler(self.spec, self.recommender.lookup_defaults) if self.store else None
        self._items = ItemCache()
        self._item_table = ItemTable(self.recommender, self.assembler) if self._one_call else None
        self.popular = [(str(item), float(score)) for item, score in self.metadata.get("popular_items", [])]
        self.context_columns = [c.name for c in self.spec.role_columns("context")]
        self.context_dtypes = {c.name: c.dtype for c in self.spec.role_columns("context")}
        self.request_columns = list(self.spec.request_features)

    @property
    def _one_call(self) -> bool:
        """Whether ``/recommend`` is one signature call (``recommend_features``), not two."""
        return self.store is not None and self.recommender.can_recommend_features

    @property
    def model_version(self) -> str:
        return self.recommender.model_version

    @property
    def item_count(self) -> int:
        return self.recommender.item_count

    @property
    def can_recommend(self) -> bool:
        return self.recommender.can_recommend

    def warm_up(self) -> float:
        """Call each signature the service uses once (traces and allocates before the first
        request); returns the seconds it took. Reads no store."""
        started = time.perf_counter()
        dtypes = {c.name: c.dtype for c in self.spec.model_features}
        probe = {name: to_array([None], dtype) for name, dtype in dtypes.items()}
        self.recommender.rank_arrays(probe)
        self.recommender.predict_arrays({name: probe[name] for name in self.request_columns})
        if self.can_recommend:
            context = {name: probe[name] for name in self.context_columns}
            self.recommender.recommend_arrays(probe["user_id"], 1, context)
            if self.recommender.query_features:
                self.recommender.retrieve_arrays({n: probe[n] for n in self.recommender.query_features}, 1)
            if self.recommender.can_recommend_features:
                names = self.recommender.recommend_feature_names
                self.recommender.recommend_features_arrays({n: probe[n] for n in names}, _history([]), 1)
        return time.perf_counter() - started

    # -- /recommend -------------------------------------------------------------------
    def recommend(self, user_id: str, k: int, context: Mapping[str, Any]) -> Scored:
        """The best ``k`` items for ``user_id`` in ``context`` (validated context columns)."""
        if self.store is None:
            return self._recommend_from_snapshot(user_id, k, context)
        (stored,) = self.store.get_many(self.namespace, "user", [user_id])
        user = self.assembler.entity_features("user", stored)
        features = {"user_id": user_id, **user, **context}
        defaults_used = [] if stored is not None else ["user"]
        if self._item_table is not None:
            return self._recommend_in_one_call(features, (stored or {}).get(HISTORY_FIELD) or [], k, defaults_used)
        history = set((stored or {}).get(HISTORY_FIELD) or [])
        width = min(self.item_count, max(k + len(history), MIN_RERANK_CANDIDATES))
        query = self.assembler.arrays([features], self.recommender.query_features)
        candidate_ids, _, known = self.recommender.retrieve_arrays(query, width)
        if not known[0]:
            return self._popular(k, features, defaults_used)
        candidates = [item for item in candidate_ids[0].tolist() if item not in history] or candidate_ids[0].tolist()
        item_features, items_missing = self._item_features(candidates)
        if items_missing:
            defaults_used.append("item")
        rows = [{**features, "item_id": item, **item_features[item]} for item in candidates]
        scores = self.recommender.rank_arrays(self.assembler.arrays(rows))["score"]
        best = np.argsort(-scores, kind="stable")[:k]
        return Scored(
            items=[candidates[i] for i in best],
            scores=[float(scores[i]) for i in best],
            defaults_used=defaults_used,
            features=features,
        )

    def _recommend_in_one_call(
        self, features: dict[str, Any], history: Sequence[str], k: int, defaults_used: list[str]
    ) -> Scored:
        """``/recommend`` through ``recommend_features``: retrieval, the items' features (the
        item table, refreshed from the store's served version), ranking, the history
        mask and the top ``k`` in one signature call."""
        missing_items = self._item_table.refresh(self.store, self.namespace)
        names = self.recommender.recommend_feature_names
        outputs = self.recommender.recommend_features_arrays(
            self.assembler.arrays([features], names), _history(history), k
        )
        if not outputs["known_user"][0]:
            return self._popular(k, features, defaults_used)
        pairs = [
            (item.decode(), float(score))
            for item, score in zip(outputs["item_ids"][0], outputs["scores"][0], strict=True)
            if score > SEEN_SCORE
        ][:k]
        if any(item in missing_items for item, _ in pairs):
            defaults_used.append("item")
        return Scored(
            items=[item for item, _ in pairs],
            scores=[score for _, score in pairs],
            defaults_used=defaults_used,
            features=features,
        )

    def _item_features(self, ids: Sequence[str]) -> tuple[dict[str, dict[str, Any]], bool]:
        """The items' features in the store's served version, and whether any was missing.

        A published version never changes, so its rows are cached per worker under the
        version (``ItemCache``); a new version starts an empty cache. Only ids not cached
        yet cost a store read."""
        rows = self._items.rows_for(self.store.reading_version(self.namespace))
        unknown = [item for item in dict.fromkeys(ids) if item not in rows]
        if unknown:
            stored = self.store.get_many(self.namespace, "item", unknown)
            for item, row in zip(unknown, stored, strict=True):
                rows[item] = (self.assembler.entity_features("item", row), row is None)
        return {item: rows[item][0] for item in ids}, any(rows[item][1] for item in ids)

    def _recommend_from_snapshot(self, user_id: str, k: int, context: Mapping[str, Any]) -> Scored:
        arrays = {name: to_array([context[name]], dtype) for name, dtype in self.context_dtypes.items()}
        outputs = self.recommender.recommend_arrays(np.array([user_id], dtype=object), k, arrays)
        features = {"user_id": user_id, **context}
        if not outputs["known_user"][0]:
            return self._popular(k, features, [])
        pairs = [
            (item.decode(), float(score))
            for item, score in zip(outputs["item_ids"][0], outputs["scores"][0], strict=True)
            if score > SEEN_SCORE
        ][:k]
        return Scored(items=[i for i, _ in pairs], scores=[s for _, s in pairs], features=features)

    def _popular(self, k: int, features: dict[str, Any], defaults_used: list[str]) -> Scored:
        top = self.popular[:k]
        return Scored(
            items=[item for item, _ in top],
            scores=[score for _, score in top],
            fallback="popularity",
            defaults_used=defaults_used,
            features=features,
        )

    # -- /predict ---------------------------------------------------------------------
    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Scored:
        """The ranker's outputs for validated request rows (ids and context columns)."""
        if self.store is None:
            dtypes = {c.name: c.dtype for c in self.spec.model_features}
            arrays = {name: to_array([row[name] for row in rows], dtypes[name]) for name in self.request_columns}
            outputs = self.recommender.predict_arrays(arrays)
            defaults_used: list[str] = []
            full_rows = [dict(row) for row in rows]
        else:
            full_rows, defaults_used = self._with_store_features(rows)
            outputs = self.recommender.rank_arrays(self.assembler.arrays(full_rows))
        items = [str(row["item_id"]) for row in rows] if "item_id" in self.spec.id_columns else []
        return Scored(
            items=items,
            scores=outputs["score"].tolist(),
            tasks={name: values.tolist() for name, values in outputs.items() if name != "score"},
            defaults_used=defaults_used,
            features={"rows": full_rows} if len(full_rows) > 1 else full_rows[0],
        )

    def _with_store_features(self, rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        per_entity: dict[str, dict[str, dict[str, Any]]] = {}
        defaults_used = []
        for entity in self.assembler.entities:
            ids = list(dict.fromkeys(str(row[f"{entity}_id"]) for row in rows))
            stored = self.store.get_many(self.namespace, entity, ids)
            if any(row is None for row in stored):
                defaults_used.append(entity)
            per_entity[entity] = {
                i: self.assembler.entity_features(entity, s) for i, s in zip(ids, stored, strict=True)
            }
        full = []
        for row in rows:
            merged = dict(row)
            for entity in self.assembler.entities:
                merged.update(per_entity[entity][str(row[f"{entity}_id"])])
            full.append(merged)
        return full, defaults_used
