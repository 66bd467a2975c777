"""Session co-occurrence blended with recency-weighted EASE: recommendations for a request at a time.

People rate, watch and buy in sessions: the items a user met within a minute of each
other belong together more than two items of the same history met months apart. The
session co-occurrence matrix counts, over every training history, each pair of items
weighted by how close in time the user met them::

    C[i, j] = sum over users u, i != j of exp(-|t_ui - t_uj| / session_seconds)
    S[i, j] = C[i, j] / (n_i ** degree_exponent * n_j ** degree_exponent)

(``n_i`` the item's training interactions; the exponent damps popular items).
``SessionEASE`` scores a request ``(user, t)`` with two item-item models over two
recency-weighted profiles of the user's history (``recency.recency_profiles``: items met
shortly before ``t`` weigh most, every other training item a baseline weight):

    score = (1 - session_weight) * z(p_ease B) + session_weight * z(p_session S)

with ``B`` EASE's weights and ``z`` the per-request standardisation of a score row (mean
0, unit spread over the catalogue, as ``baselines.ScoreBlend`` does). Only the request's
time is used, never its item; every setting is meant to be chosen on validation
requests (``set_profiles`` changes the profiles and the weight without refitting).
Numpy / scipy only, deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from models.retrieval.baselines import EASE, EASEConfig, InteractionIndex
from models.retrieval.recency import recency_profiles, require_timed, timed_histories


def session_cooccurrence(
    histories: dict[int, tuple[np.ndarray, np.ndarray]],
    n_items: int,
    session_seconds: float,
    degree_exponent: float = 0.5,
) -> np.ndarray:
    """``[n_items, n_items]`` time-weighted co-occurrence ``S`` of the module docstring (zero diagonal).

    Args:
        histories: Per user, ``(item indices, Unix seconds)`` (``recency.timed_histories``).
        n_items: Catalogue size.
        session_seconds: Time constant of the pair weight ``exp(-|dt| / session_seconds)``.
        degree_exponent: Exponent of each item's interaction count in the normalisation.

    Raises:
        ValueError: if ``session_seconds <= 0`` or ``degree_exponent < 0``.
    """
    if session_seconds <= 0 or degree_exponent < 0:
        raise ValueError(
            f"session_cooccurrence needs session_seconds > 0 and degree_exponent >= 0, got "
            f"{session_seconds}, {degree_exponent}"
        )
    counts = np.zeros(n_items * n_items)
    degrees = np.zeros(n_items)
    for items, times in histories.values():
        weights = np.exp(-np.abs(times[:, None] - times[None, :]) / session_seconds)
        weights[items[:, None] == items[None, :]] = 0.0  # an item with itself (and repeats)
        counts += np.bincount(
            (items[:, None] * n_items + items[None, :]).ravel(), weights=weights.ravel(), minlength=n_items * n_items
        )
        degrees += np.bincount(np.unique(items), minlength=n_items)
    scale = np.maximum(degrees, 1.0) ** degree_exponent
    return counts.reshape(n_items, n_items) / scale[:, None] / scale[None, :]


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit standard deviation (constant rows stay centred at 0)."""
    spread = scores.std(axis=1, keepdims=True)
    return (scores - scores.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)


@dataclass(frozen=True)
class SessionEASEConfig:
    """Settings of ``SessionEASE``.

    Attributes:
        l2: EASE's ridge penalty.
        decay_seconds / baseline_weight: The recency profile EASE multiplies.
        session_seconds: Time constant of the co-occurrence pair weight.
        degree_exponent: Popularity damping of the co-occurrence matrix.
        session_decay_seconds / session_baseline_weight: The recency profile the
            co-occurrence matrix multiplies.
        session_weight: Weight of the session scores in the blend (EASE gets 1 - it).
    """

    l2: float = 300.0
    decay_seconds: float = 60.0
    baseline_weight: float = 0.05
    session_seconds: float = 60.0
    degree_exponent: float = 0.5
    session_decay_seconds: float = 60.0
    session_baseline_weight: float = 0.01
    session_weight: float = 0.5

    def __post_init__(self) -> None:
        positive = ("l2", "decay_seconds", "session_seconds", "session_decay_seconds")
        if any(getattr(self, name) <= 0 for name in positive):
            raise ValueError(f"SessionEASEConfig needs {', '.join(positive)} > 0, got {self}")
        if min(self.baseline_weight, self.session_baseline_weight, self.degree_exponent) < 0:
            raise ValueError(f"SessionEASEConfig needs non-negative baseline weights and degree_exponent, got {self}")
        if not 0 <= self.session_weight <= 1:
            raise ValueError(f"SessionEASEConfig.session_weight must lie in [0, 1], got {self.session_weight}")


class SessionEASE:
    """Recency-weighted EASE blended with session co-occurrence, scored per ``(user, time)`` request.

    ``fit`` takes an interactions frame (``user_id, item_id, timestamp``) and the
    ``InteractionIndex`` that maps ids to rows and columns; ``score_requests`` returns one
    row of catalogue scores per request.
    """

    def __init__(self, config: SessionEASEConfig = SessionEASEConfig()) -> None:
        self.config = config
        self.ease_weights: np.ndarray | None = None
        self.session_weights: np.ndarray | None = None
        self._n_items = 0
        self._history: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def fit(self, interactions: pd.DataFrame, index: InteractionIndex) -> SessionEASE:
        """Fit EASE and the session co-occurrence on ``interactions``; keep each user's timed history.

        Raises:
            ValueError: if ``interactions`` lacks ``user_id``, ``item_id`` or ``timestamp``.
        """
        require_timed(interactions, "SessionEASE.fit")
        config = self.config
        self._n_items = index.shape[1]
        self._history = timed_histories(interactions, index)
        self.ease_weights = EASE(EASEConfig(l2=config.l2)).fit(index.matrix(interactions)).weights
        self.session_weights = session_cooccurrence(
            self._history, self._n_items, config.session_seconds, config.degree_exponent
        )
        return self

    def set_profiles(self, **settings: float) -> SessionEASE:
        """Change profile settings or ``session_weight`` without refitting.

        Raises:
            ValueError: for a setting the fitted matrices depend on (``l2``,
                ``session_seconds``, ``degree_exponent``) or an unknown name.
        """
        allowed = {"decay_seconds", "baseline_weight", "session_decay_seconds", "session_baseline_weight"}
        allowed.add("session_weight")
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"set_profiles can change {sorted(allowed)} only, got {sorted(unknown)}")
        self.config = replace(self.config, **settings)
        return self

    def component_scores(
        self, user_indices: Sequence[int] | np.ndarray, timestamps: Sequence[float] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Standardised ``(EASE scores, session scores)``, each ``[n_requests, n_items]``."""
        if self.ease_weights is None:
            raise RuntimeError("SessionEASE is not fitted: call fit() first")
        config = self.config
        ease_profile = recency_profiles(
            self._history, self._n_items, user_indices, timestamps, config.decay_seconds, config.baseline_weight
        )
        session_profile = recency_profiles(
            self._history,
            self._n_items,
            user_indices,
            timestamps,
            config.session_decay_seconds,
            config.session_baseline_weight,
        )
        return (
            standardised(np.asarray(ease_profile @ self.ease_weights)),
            standardised(np.asarray(session_profile @ self.session_weights)),
        )

    def score_requests(
        self, user_indices: Sequence[int] | np.ndarray, timestamps: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        """Catalogue scores ``[n_requests, n_items]`` for requests ``(user index, Unix seconds)``."""
        ease, session = self.component_scores(user_indices, timestamps)
        weight = self.config.session_weight
        return (1.0 - weight) * ease + weight * session
