"""Reproducible train / validation / test splits of an interactions frame.

Every function takes an interactions frame with columns ``user_id, item_id, rating,
timestamp`` (``timestamp`` as Unix seconds or a datetime column) and returns disjoint
slices of it, keeping the original index so rows can be traced back. The splits follow
published protocols so that numbers measured here can be compared with published ones:

- ``tfrs_random_split``: the TensorFlow Recommenders tutorials' 80,000 / 20,000 split of
  MovieLens-100K.
- ``per_user_random_split``: RecBole's ``RO`` + ``RS: [0.8, 0.1, 0.1]`` split.
- ``leave_one_out``: RecBole's ``LS: valid_and_test`` split (latest interaction per user
  is the test item).
- ``temporal_split``: a global time cut-off (train on the past, test on the last days).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
"""Columns every interactions frame must have."""

TFRS_GLOBAL_SEED = 42
"""The tutorials call ``tf.random.set_seed(42)`` before shuffling; TensorFlow combines
this graph-level seed with the shuffle's own ``seed`` argument."""

TFRS_SHUFFLE_BUFFER = 100_000
"""Shuffle buffer of the tutorials (``ratings.shuffle(100_000, ...)``)."""

TFDS_SPLIT_NAME = "train"
"""TensorFlow Datasets salts its record-order hash with the split name."""


def require_interactions(frame: pd.DataFrame, name: str = "interactions frame") -> None:
    """Raise ValueError unless ``frame`` is a non-empty frame with ``INTERACTION_COLUMNS``."""
    missing = [column for column in INTERACTION_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{name} is empty")


def tfds_record_order(n_rows: int) -> np.ndarray:
    """The order in which TensorFlow Datasets stores the lines of a file it was built from.

    TFDS builders yield ``(key, example)`` pairs and the writer sorts records by the
    128-bit MD5 of ``split name + str(key)``. The ``movielens/100k-ratings`` builder uses
    the line number of ``u.data`` as key, so ``tfds.load("movielens/100k-ratings")``
    yields ``u.data`` line ``tfds_record_order(100_000)[0]`` first (line 16,399: user 138
    rates movie 357, the first example printed in the TFRS tutorials).

    Args:
        n_rows: Number of lines (keys ``0 .. n_rows - 1``).

    Returns:
        Line numbers in TFDS storage order.
    """
    salted = hashlib.md5(TFDS_SPLIT_NAME.encode())

    def record_hash(key: int) -> int:
        digest = salted.copy()
        digest.update(str(key).encode())
        return int(digest.hexdigest(), 16)

    return np.array(sorted(range(n_rows), key=record_hash), dtype=np.int64)


def tensorflow_shuffle_order(n_rows: int, seed: int, buffer_size: int = TFRS_SHUFFLE_BUFFER) -> np.ndarray:
    """Positions in the order ``tf.data.Dataset.shuffle`` emits them, as the tutorials run it.

    Reproduces ``tf.random.set_seed(42); ds.shuffle(buffer_size, seed=seed,
    reshuffle_each_iteration=False)`` with TensorFlow itself. The op runs in a private
    graph whose graph-level seed is ``TFRS_GLOBAL_SEED``, which gives the same (graph
    seed, op seed) pair and therefore the same order as the eager tutorials, without
    changing the caller's global TensorFlow seed.

    Args:
        n_rows: Dataset length.
        seed: The shuffle's ``seed`` argument.
        buffer_size: The shuffle buffer size.

    Returns:
        A permutation of ``0 .. n_rows - 1``.
    """
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        tf.compat.v1.set_random_seed(TFRS_GLOBAL_SEED)
        shuffled = (
            tf.data.Dataset.range(n_rows).shuffle(buffer_size, seed=seed, reshuffle_each_iteration=False).batch(n_rows)
        )
        order = shuffled.get_single_element()
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run(order)


def tfrs_random_split(
    frame: pd.DataFrame, seed: int = 42, train_size: int = 80_000, tfds_order: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The TensorFlow Recommenders tutorials' random split of MovieLens-100K.

    The tutorials do ``ratings = tfds.load("movielens/100k-ratings", split="train")``,
    ``tf.random.set_seed(42)``, ``shuffled = ratings.shuffle(100_000, seed=42,
    reshuffle_each_iteration=False)``, ``train = shuffled.take(80_000)``, ``test =
    shuffled.skip(80_000).take(20_000)``. This function applies the same steps to
    ``frame``: first the TFDS storage order (``tfds_record_order``; pass
    ``tfds_order=False`` to shuffle the frame's own row order instead), then the seeded
    TensorFlow shuffle (``tensorflow_shuffle_order``).

    Args:
        frame: Interactions; with ``tfds_order=True`` its rows must be in ``u.data`` line
            order (as read from the file), since TFDS keys records by line number.
        seed: The shuffle's op-level seed.
        train_size: Rows taken for training; the remaining rows are the test set (on
            MovieLens-100K exactly the tutorials' ``skip(80_000).take(20_000)``).
        tfds_order: Whether to put rows in TFDS storage order before shuffling.

    Returns:
        ``(train, test)`` in shuffled order, original index kept.

    Raises:
        ValueError: if columns are missing or ``train_size`` leaves either side empty.
    """
    require_interactions(frame)
    if not 0 < train_size < len(frame):
        raise ValueError(
            f"train_size must be between 1 and {len(frame) - 1} (the frame has {len(frame)} rows), got {train_size}"
        )
    stored = tfds_record_order(len(frame)) if tfds_order else np.arange(len(frame))
    shuffled = frame.iloc[stored[tensorflow_shuffle_order(len(frame), seed)]]
    return shuffled.iloc[:train_size], shuffled.iloc[train_size:]


def split_counts(total: int, ratios: Sequence[float]) -> list[int]:
    """How many of a user's ``total`` interactions go to each part, as RecBole counts them.

    Every part after the first gets ``floor(ratio * total)``; the first gets the rest.
    Then, from the last part backwards, a part whose ``ratio * total`` lies in (0, 1)
    takes one interaction from the first part, while the first part keeps more than one
    (RecBole ``Dataset._calcu_split_ids``).

    Args:
        total: Number of interactions of one user.
        ratios: Split ratios (normalised here to sum to 1).

    Returns:
        One count per ratio, summing to ``total``.
    """
    normalised = [ratio / sum(ratios) for ratio in ratios]
    counts = [int(ratio * total) for ratio in normalised]
    counts[0] = total - sum(counts[1:])
    for part in range(len(normalised) - 1, 0, -1):
        if counts[0] <= 1:
            break
        if 0 < normalised[part] * total < 1:
            counts[part] += 1
            counts[0] -= 1
    return counts


def per_user_random_split(
    frame: pd.DataFrame, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 2020
) -> tuple[pd.DataFrame, ...]:
    """RecBole's random-ordering ratio split (``order: RO``, ``split: {RS: [0.8, 0.1, 0.1]}``).

    All interactions are shuffled, then each user's interactions are cut into parts of
    ``split_counts(n, ratios)`` rows in that shuffled order. The part sizes match
    RecBole's; the permutation itself does not (RecBole shuffles with torch), so the
    split is equivalent in distribution, not row for row.

    Args:
        frame: Interactions.
        ratios: One ratio per part (e.g. train, validation, test); at least two, all > 0.
        seed: Seed of the shuffle (RecBole's default seed is 2020).

    Returns:
        One frame per ratio (train first), each sorted by user then shuffled position,
        original index kept.

    Raises:
        ValueError: if columns are missing or the ratios are invalid.
    """
    require_interactions(frame)
    if len(ratios) < 2 or any(ratio <= 0 for ratio in ratios):
        raise ValueError(f"ratios must hold at least two positive numbers, got {list(ratios)}")
    shuffled = frame.iloc[np.random.default_rng(seed).permutation(len(frame))]
    by_user = shuffled.iloc[np.argsort(shuffled["user_id"].to_numpy(), kind="stable")]
    groups = by_user.groupby("user_id", sort=False)
    position = groups.cumcount().to_numpy()
    size = groups["user_id"].transform("size").to_numpy()
    # Row r goes to the first part whose cumulative count (for its user's size) exceeds
    # its position within the user.
    sizes = np.unique(size)
    part_ends = np.array([np.cumsum(split_counts(int(n), ratios)) for n in sizes])
    part = (position[:, None] >= part_ends[np.searchsorted(sizes, size)]).sum(axis=1)
    return tuple(by_user[part == index] for index in range(len(ratios)))


def _as_datetime(timestamps: pd.Series) -> pd.Series:
    """Timestamps as datetime64: numeric values are read as Unix seconds."""
    if pd.api.types.is_numeric_dtype(timestamps):
        return pd.to_datetime(timestamps, unit="s")
    return pd.to_datetime(timestamps)


def leave_one_out(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per user, the latest interaction is the test item and the one before it validation.

    RecBole's ``order: TO``, ``split: {LS: valid_and_test}``: a user with ``n >= 3``
    interactions gives ``n - 2`` to training, one to validation and one to test; a user
    with two gives one to training and one to test; a user with one only trains.
    Interactions with equal timestamps keep their order in ``frame``.

    Args:
        frame: Interactions.

    Returns:
        ``(train, validation, test)``, original index kept.

    Raises:
        ValueError: if columns are missing.
    """
    require_interactions(frame)
    ordered = frame.iloc[np.argsort(_as_datetime(frame["timestamp"]).to_numpy(), kind="stable")]
    from_last = ordered.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    size = ordered.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    held_out = np.minimum(2, size - 1)
    is_test = from_last == 0
    is_validation = (from_last == 1) & (held_out == 2)
    is_train = from_last >= held_out
    return ordered[is_train], ordered[is_validation], ordered[is_test & (held_out >= 1)]


def temporal_split(frame: pd.DataFrame, test_days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global time cut-off: the last ``test_days`` days of interactions are the test set.

    The cut-off is ``max(timestamp) - test_days`` days; rows strictly after it are test,
    the rest train. Users and items may appear on one side only (cold start is part of
    this protocol).

    Args:
        frame: Interactions.
        test_days: Length of the test window in days (> 0, fractions allowed).

    Returns:
        ``(train, test)``, original index kept.

    Raises:
        ValueError: if columns are missing, ``test_days <= 0``, or either side is empty.
    """
    require_interactions(frame)
    if test_days <= 0:
        raise ValueError(f"test_days must be > 0, got {test_days}")
    when = _as_datetime(frame["timestamp"])
    cutoff = when.max() - pd.Timedelta(days=test_days)
    is_test = (when > cutoff).to_numpy()
    train, test = frame[~is_test], frame[is_test]
    if train.empty or test.empty:
        raise ValueError(
            f"a {test_days}-day test window ending {when.max()} gives {len(train)} train and {len(test)} test rows"
        )
    return train, test
