"""EASE over a recency-weighted profile: item-item recommendations for a request at a time.

Plain EASE scores a user by ``x_u B``, with ``x_u`` the user's binary history. People
rate, watch and buy in sessions, so the items met just before a request say more about
what comes next than items met months ago. ``RecencyEASE`` keeps EASE's item-item weights
``B`` and builds the profile per request ``(user, t)``: an item the user met at ``t_j < t``
weighs ``baseline_weight + exp(-(t - t_j) / decay_seconds)``; every other training item of
the user (met at or after ``t``, which a random split leaves in the training part)
weighs ``baseline_weight``. Only the request's time is used, never its item: at serving
time this is the user's history up to now, which ``/recommend`` can know.

With ``decay_seconds`` large or ``baseline_weight`` large the profile tends to plain
EASE's (scores are invariant to scaling the whole profile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.retrieval.baselines import EASE, EASEConfig, InteractionIndex


def unix_seconds(values: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    """Timestamps as float64 Unix seconds: numbers pass through, datetimes are converted."""
    series = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series):
        return series.astype("datetime64[ns]").astype("int64").to_numpy() / 1e9
    return series.to_numpy(dtype=np.float64)


def require_timed(interactions: pd.DataFrame, caller: str) -> None:
    """Raise ValueError naming the missing columns if ``interactions`` lacks ``user_id``, ``item_id`` or ``timestamp``."""
    missing = {"user_id", "item_id", "timestamp"} - set(interactions.columns)
    if missing:
        raise ValueError(f"{caller} needs columns {sorted(missing)}; got {list(interactions.columns)}")


def timed_histories(interactions: pd.DataFrame, index: InteractionIndex) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per user index, ``(item indices, Unix seconds)`` of the user's rows in ``interactions``."""
    users = index.user_indices(interactions["user_id"])
    items = index.item_indices(interactions["item_id"])
    times = unix_seconds(interactions["timestamp"])
    order = np.argsort(users, kind="stable")
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    return {int(users[rows[0]]): (items[rows], times[rows]) for rows in np.split(order, bounds) if rows.size}


def recency_profiles(
    histories: dict[int, tuple[np.ndarray, np.ndarray]],
    n_items: int,
    user_indices: Sequence[int] | np.ndarray,
    timestamps: Sequence[float] | np.ndarray,
    decay_seconds: float,
    baseline_weight: float,
) -> sp.csr_matrix:
    """``[n_requests, n_items]`` profiles of requests ``(user index, time)`` over ``histories``.

    An item the user met at ``t_j < t`` weighs ``baseline_weight + exp(-(t - t_j) /
    decay_seconds)``, every other item of the user's history ``baseline_weight``; users
    without history get all-zero rows.

    Raises:
        ValueError: if the numbers of users and timestamps differ.
    """
    users = np.asarray(user_indices, dtype=np.int64)
    times = unix_seconds(timestamps)
    if users.shape != times.shape:
        raise ValueError(f"got {users.size} users but {times.size} timestamps")
    rows, columns, values = [], [], []
    empty = (np.empty(0, dtype=np.int64), np.empty(0))
    for request, (user, at) in enumerate(zip(users, times, strict=True)):
        items, met = histories.get(int(user), empty)
        elapsed = at - met
        recent = np.where(elapsed > 0, np.exp(-np.maximum(elapsed, 0.0) / decay_seconds), 0.0)
        rows.append(np.full(items.size, request))
        columns.append(items)
        values.append(baseline_weight + recent)
    return sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))), shape=(users.size, n_items)
    )


@dataclass(frozen=True)
class RecencyEASEConfig:
    """Settings of ``RecencyEASE``.

    Attributes:
        l2: EASE's ridge penalty on the item-item weights.
        decay_seconds: Time constant of the recency weight ``exp(-(t - t_j) / decay_seconds)``.
        baseline_weight: Weight of every training item of the user, recent or not (> 0
            keeps the whole history in the profile).
    """

    l2: float = 300.0
    decay_seconds: float = 900.0
    baseline_weight: float = 0.05

    def __post_init__(self) -> None:
        if self.l2 <= 0 or self.decay_seconds <= 0 or self.baseline_weight < 0:
            raise ValueError(
                "RecencyEASEConfig needs l2 > 0, decay_seconds > 0 and baseline_weight >= 0, got "
                f"{self.l2}, {self.decay_seconds}, {self.baseline_weight}"
            )


class RecencyEASE:
    """EASE whose user profile is weighted by recency at the request's time.

    ``fit`` takes an interactions frame (``user_id, item_id, timestamp`` in Unix seconds)
    and the ``InteractionIndex`` that maps ids to rows and columns; ``score_requests``
    returns one row of catalogue scores per ``(user index, timestamp)`` request.
    """

    def __init__(self, config: RecencyEASEConfig = RecencyEASEConfig()) -> None:
        self.config = config
        self.weights: np.ndarray | None = None
        self._index: InteractionIndex | None = None
        self._history: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def fit(self, interactions: pd.DataFrame, index: InteractionIndex) -> RecencyEASE:
        """Fit EASE's weights on the binary matrix of ``interactions``; keep each user's timed history.

        ``timestamp`` may hold Unix seconds or datetimes.

        Raises:
            ValueError: if ``interactions`` lacks ``user_id``, ``item_id`` or ``timestamp``.
        """
        require_timed(interactions, "RecencyEASE.fit")
        self._index = index
        self.weights = EASE(EASEConfig(l2=self.config.l2)).fit(index.matrix(interactions)).weights
        self._history = timed_histories(interactions, index)
        return self

    def set_config(self, decay_seconds: float, baseline_weight: float) -> RecencyEASE:
        """Change the profile weighting without refitting (the weights depend only on ``l2``)."""
        self.config = RecencyEASEConfig(self.config.l2, decay_seconds, baseline_weight)
        return self

    def profiles(
        self, user_indices: Sequence[int] | np.ndarray, timestamps: Sequence[float] | np.ndarray
    ) -> sp.csr_matrix:
        """``[n_requests, n_items]`` recency-weighted profiles; all-zero rows for users without history."""
        if self._index is None:
            raise RuntimeError("RecencyEASE is not fitted: call fit() first")
        return recency_profiles(
            self._history,
            self._index.shape[1],
            user_indices,
            timestamps,
            self.config.decay_seconds,
            self.config.baseline_weight,
        )

    def score_requests(
        self, user_indices: Sequence[int] | np.ndarray, timestamps: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        """Catalogue scores ``[n_requests, n_items]`` for requests ``(user index, Unix seconds)``."""
        return np.asarray(self.profiles(user_indices, timestamps) @ self.weights)
