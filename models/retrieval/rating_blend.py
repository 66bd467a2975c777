"""Rating prediction by blending: a kNN baseline, request-time session residuals and a linear blend.

- ``baseline_predictors``: ``mu + b_u + b_i`` fitted by alternating ridge updates
  (Koren's baseline estimates).
- ``KNNBaseline``: item-based (or user-based) neighbourhood model over the baseline
  (Koren, KDD 2008, eq. 3): ``r(u, i) = b_ui + sum_j s_ij (r_uj - b_uj) / sum_j s_ij``
  over the ``k`` most similar items ``j`` the user rated, with the shrunk Pearson
  correlation of the baseline residuals as the similarity (positive ones only).
- ``SessionResiduals``: for a request ``(user, t)``, the user's mean baseline residual
  over their training ratings weighted by ``exp(-|t - t_j| / tau)`` for a few time
  constants ``tau`` and shrunk towards 0: how far above or below their usual self the
  user rates around that time. It uses the request's time (as ``recency`` and
  ``sessions`` do for ranking), never its item or rating.
- ``RatingBlend``: least-squares weights (plus an intercept) of several models'
  predictions and features, fitted on held-out ratings, the models themselves fitted
  without them; then apply the weights to the same models refitted on all training
  rows.

Numpy / scipy only, deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.retrieval.baselines import InteractionIndex
from models.retrieval.recency import unix_seconds


def baseline_predictors(
    ratings: sp.csr_matrix, user_l2: float = 15.0, item_l2: float = 10.0, iterations: int = 10
) -> tuple[float, np.ndarray, np.ndarray]:
    """``(mu, user biases, item biases)`` of ``r ~ mu + b_u + b_i`` by alternating ridge updates.

    Args:
        ratings: ``[n_users, n_items]`` CSR matrix whose stored entries are ratings.
        user_l2 / item_l2: Ridge penalties (Surprise's defaults for ALS baselines).
        iterations: Alternating sweeps (items, then users).

    Raises:
        ValueError: if ``ratings`` stores no entry.
    """
    if ratings.nnz == 0:
        raise ValueError("baseline_predictors got a matrix without any stored entry")
    coo = ratings.tocoo()
    users, items, values = coo.row, coo.col, coo.data
    mean = float(values.mean())
    n_users, n_items = ratings.shape
    user_counts = np.bincount(users, minlength=n_users)
    item_counts = np.bincount(items, minlength=n_items)
    user_bias, item_bias = np.zeros(n_users), np.zeros(n_items)
    for _ in range(iterations):
        item_bias = np.bincount(items, weights=values - mean - user_bias[users], minlength=n_items) / (
            item_l2 + item_counts
        )
        user_bias = np.bincount(users, weights=values - mean - item_bias[items], minlength=n_users) / (
            user_l2 + user_counts
        )
    return mean, user_bias, item_bias


@dataclass(frozen=True)
class KNNBaselineConfig:
    """Settings of ``KNNBaseline``.

    Attributes:
        neighbours: Most similar rated items (users) used per prediction.
        shrink: Similarity shrinkage ``(n - 1) / (n - 1 + shrink)`` with ``n`` co-raters.
        user_based: Neighbours are users who rated the item instead of items the user rated.
    """

    neighbours: int = 40
    shrink: float = 100.0
    user_based: bool = False

    def __post_init__(self) -> None:
        if self.neighbours < 1 or self.shrink < 0:
            raise ValueError(f"KNNBaselineConfig needs neighbours >= 1 and shrink >= 0, got {self}")


class KNNBaseline:
    """Neighbourhood model over baseline predictors (see the module docstring); ``fit`` / ``predict``."""

    def __init__(self, config: KNNBaselineConfig = KNNBaselineConfig()) -> None:
        self.config = config
        self.similarity: np.ndarray | None = None
        self._residuals: sp.csr_matrix | None = None
        self._baseline: tuple[float, np.ndarray, np.ndarray] | None = None
        self.rating_range = (0.0, 0.0)

    def fit(self, train: sp.spmatrix) -> KNNBaseline:
        """Fit on a ``[n_users, n_items]`` rating matrix (stored entries are ratings)."""
        ratings = sp.csr_matrix(train, dtype=np.float64)
        if ratings.nnz == 0 or not np.isfinite(ratings.data).all():
            raise ValueError("KNNBaseline.fit needs a rating matrix with finite stored entries")
        if self.config.user_based:
            ratings = ratings.T.tocsr()  # rows are the side whose neighbours are summed over
        self.rating_range = (float(ratings.data.min()), float(ratings.data.max()))
        mean, row_bias, column_bias = self._baseline = baseline_predictors(
            ratings, *((10.0, 15.0) if self.config.user_based else (15.0, 10.0))
        )
        coo = ratings.tocoo()
        residual = coo.data - mean - row_bias[coo.row] - column_bias[coo.col]
        residuals = sp.csr_matrix((residual, (coo.row, coo.col)), shape=ratings.shape)
        observed = sp.csr_matrix((np.ones_like(residual), (coo.row, coo.col)), shape=ratings.shape)
        squared = sp.csr_matrix((residual**2, (coo.row, coo.col)), shape=ratings.shape)
        numerator = (residuals.T @ residuals).toarray()
        co_raters = (observed.T @ observed).toarray()
        energy = (squared.T @ observed).toarray()  # [i, j]: sum over co-raters of residual_i^2
        denominator = np.sqrt(energy * energy.T)
        similarity = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
        support = np.maximum(co_raters - 1.0, 0.0)
        similarity *= support / (support + self.config.shrink) if self.config.shrink > 0 else 1.0
        np.fill_diagonal(similarity, 0.0)
        self.similarity = similarity
        self._residuals = residuals
        return self

    def predict(self, user_indices: Sequence[int] | np.ndarray, item_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """One rating per ``(user, item)`` pair, clipped to the training rating range."""
        if self._baseline is None:
            raise RuntimeError("KNNBaseline is not fitted: call fit() first")
        rows = np.asarray(user_indices, dtype=np.int64).ravel()
        columns = np.asarray(item_indices, dtype=np.int64).ravel()
        if rows.size != columns.size:
            raise ValueError(f"got {rows.size} user indices but {columns.size} item indices")
        if self.config.user_based:
            rows, columns = columns, rows
        mean, row_bias, column_bias = self._baseline
        predictions = mean + row_bias[rows] + column_bias[columns]
        residuals = self._residuals
        order = np.argsort(rows, kind="stable")
        bounds = np.flatnonzero(np.diff(rows[order])) + 1
        for pairs in np.split(order, bounds):
            if not pairs.size:
                continue
            row = rows[pairs[0]]
            start, end = residuals.indptr[row], residuals.indptr[row + 1]
            if start == end:
                continue
            rated, rated_residuals = residuals.indices[start:end], residuals.data[start:end]
            similarity = self.similarity[columns[pairs]][:, rated]
            k = min(self.config.neighbours, rated.size)
            top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            weights = np.maximum(np.take_along_axis(similarity, top, axis=1), 0.0)
            total = weights.sum(axis=1)
            offset = (weights * rated_residuals[top]).sum(axis=1)
            predictions[pairs] += np.divide(offset, total, out=np.zeros_like(offset), where=total > 0)
        return np.clip(predictions, *self.rating_range)


@dataclass(frozen=True)
class SessionResidualsConfig:
    """Settings of ``SessionResiduals``.

    Attributes:
        time_constants: Seconds ``tau``; one feature per value.
        shrink: Pseudo-count of zero residual added to each weighted mean.
    """

    time_constants: tuple[float, ...] = (60.0, 600.0, 86_400.0)
    shrink: float = 3.0

    def __post_init__(self) -> None:
        if not self.time_constants or min(self.time_constants) <= 0 or self.shrink < 0:
            raise ValueError(f"SessionResidualsConfig needs time constants > 0 and shrink >= 0, got {self}")


class SessionResiduals:
    """Per request ``(user, t)``: time-weighted means of the user's baseline residuals (module docstring)."""

    def __init__(self, config: SessionResidualsConfig = SessionResidualsConfig()) -> None:
        self.config = config
        self._history: dict[int, tuple[np.ndarray, np.ndarray]] | None = None

    def fit(self, ratings: pd.DataFrame, index: InteractionIndex) -> SessionResiduals:
        """Keep each user's ``(Unix seconds, baseline residual)`` from ``user_id, item_id, rating, timestamp`` rows.

        Raises:
            ValueError: if a column is missing.
        """
        missing = {"user_id", "item_id", "rating", "timestamp"} - set(ratings.columns)
        if missing:
            raise ValueError(f"SessionResiduals.fit needs columns {sorted(missing)}; got {list(ratings.columns)}")
        users = index.user_indices(ratings["user_id"])
        items = index.item_indices(ratings["item_id"])
        values = ratings["rating"].to_numpy(dtype=np.float64)
        mean, user_bias, item_bias = baseline_predictors(index.matrix(ratings, "rating"))
        residuals = values - mean - user_bias[users] - item_bias[items]
        times = unix_seconds(ratings["timestamp"])
        order = np.argsort(users, kind="stable")
        bounds = np.flatnonzero(np.diff(users[order])) + 1
        self._history = {int(users[rows[0]]): (times[rows], residuals[rows]) for rows in np.split(order, bounds)}
        return self

    def features(
        self, user_indices: Sequence[int] | np.ndarray, timestamps: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        """``[n_requests, len(time_constants)]`` shrunk time-weighted mean residuals (0 without history)."""
        if self._history is None:
            raise RuntimeError("SessionResiduals is not fitted: call fit() first")
        users = np.asarray(user_indices, dtype=np.int64).ravel()
        times = unix_seconds(timestamps)
        if users.shape != times.shape:
            raise ValueError(f"got {users.size} users but {times.size} timestamps")
        taus = np.asarray(self.config.time_constants)
        features = np.zeros((users.size, taus.size))
        for request, (user, at) in enumerate(zip(users, times, strict=True)):
            if int(user) not in self._history:
                continue
            met, residuals = self._history[int(user)]
            weights = np.exp(-np.abs(at - met)[None, :] / taus[:, None])
            features[request] = (weights @ residuals) / (weights.sum(axis=1) + self.config.shrink)
        return features


class RatingBlend:
    """Least-squares linear blend (with intercept) of prediction / feature columns, clipped to a rating range.

    Args:
        l2: Ridge penalty on the column weights (not the intercept).
    """

    def __init__(self, l2: float = 1e-3) -> None:
        if l2 < 0:
            raise ValueError(f"RatingBlend needs l2 >= 0, got {l2}")
        self.l2 = l2
        self.coefficients: np.ndarray | None = None
        self.rating_range = (0.0, 0.0)

    def fit(self, columns: np.ndarray, targets: Sequence[float] | np.ndarray) -> RatingBlend:
        """Fit on held-out rows: ``columns`` is ``[n_rows, n_columns]``, ``targets`` their true ratings."""
        design = self._design(columns)
        y = np.asarray(targets, dtype=np.float64).ravel()
        if y.size != design.shape[0] or y.size <= design.shape[1]:
            raise ValueError(f"RatingBlend needs one target per row and more rows than columns, got {design.shape}")
        penalty = np.diag(np.r_[0.0, np.full(design.shape[1] - 1, self.l2 * y.size)])
        self.coefficients = np.linalg.solve(design.T @ design + penalty, design.T @ y)
        self.rating_range = (float(y.min()), float(y.max()))
        return self

    def predict(self, columns: np.ndarray) -> np.ndarray:
        if self.coefficients is None:
            raise RuntimeError("RatingBlend is not fitted: call fit() first")
        design = self._design(columns)
        if design.shape[1] != self.coefficients.size:
            raise ValueError(
                f"RatingBlend was fitted on {self.coefficients.size - 1} columns, got {design.shape[1] - 1}"
            )
        return np.clip(design @ self.coefficients, *self.rating_range)

    @staticmethod
    def _design(columns: np.ndarray) -> np.ndarray:
        matrix = np.asarray(columns, dtype=np.float64)
        if matrix.ndim != 2 or not np.isfinite(matrix).all():
            raise ValueError(f"RatingBlend needs a finite 2-D [rows, columns] array, got shape {matrix.shape}")
        return np.hstack([np.ones((matrix.shape[0], 1)), matrix])
