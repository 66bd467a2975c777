"""Top-k indexes over candidate embeddings, made of TensorFlow ops so they save in a SavedModel.

``build_index(kind, embeddings, identifiers)`` returns a Keras layer that maps query
embeddings ``[B, D]`` to ``(scores [B, k], identifiers [B, k])``, best first, scored by
dot product:

- ``"brute_force"`` (``BruteForceIndex``): scores every candidate; exact.
- ``"approximate"`` (``IVFIndex``): an inverted-file index. At build time k-means (in
  numpy) splits the candidates into ``num_partitions`` partitions; a query scores the
  partition centroids, keeps the ``nprobe`` best partitions and scores exactly the
  candidates inside them. With ``nprobe == num_partitions`` every candidate is scored
  and the answer is the brute-force one.

``k`` is chosen per call (a Python int or a scalar int tensor, e.g. a serving input) and
must lie in ``[1, index size]``: a Python int out of range raises ``ValueError``; a
tensor out of range fails the call with ``tf.errors.InvalidArgumentError`` naming ``k``
and the size (nothing is clamped, so a caller never silently gets fewer columns than it
asked for). When the probed partitions of an approximate index hold fewer than ``k``
candidates, the remaining columns are padded with the identifier ``""`` and the score
``-inf`` (as Faiss pads with id ``-1``).

Identifiers must be unique: rows repeating an identifier with the same embedding are
indexed once (the first occurrence), rows repeating it with a different embedding are
an error, since either answer would be a guess.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

INDEX_KINDS = ("brute_force", "approximate")
PADDING_IDENTIFIER = ""
"""Identifier returned in the columns an approximate index could not fill."""
KMEANS_ITERATIONS = 25


def deduplicate_candidates(embeddings: np.ndarray, identifiers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first row of every identifier; identical repeats collapse.

    Args:
        embeddings: ``[N, D]`` candidate embeddings.
        identifiers: ``[N]`` candidate identifiers (converted to ``str``).

    Returns:
        ``(embeddings [U, D] float32, identifiers [U] str)`` with unique identifiers, in
        order of first occurrence.

    Raises:
        ValueError: on shape mismatches, no candidates, non-finite embeddings, or an
            identifier repeated with a different embedding.
    """
    vectors = np.asarray(embeddings, dtype=np.float32)
    ids = np.asarray(identifiers).astype(str)
    if vectors.ndim != 2 or ids.ndim != 1 or len(vectors) != len(ids):
        raise ValueError(f"need [N, D] embeddings and [N] identifiers, got shapes {vectors.shape} and {ids.shape}")
    if len(ids) == 0:
        raise ValueError("cannot build an index over zero candidates")
    if not np.isfinite(vectors).all():
        raise ValueError("candidate embeddings must be finite (found nan or inf)")
    unique_ids, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    conflicting = np.any(vectors != vectors[first[inverse]], axis=1)
    if conflicting.any():
        examples = sorted({str(i) for i in ids[conflicting]})[:5]
        raise ValueError(f"identifiers repeat with different embeddings, e.g. {examples}")
    keep = np.sort(first)
    return vectors[keep], ids[keep]


def _checked_count(value: Any, upper: int, name: str, what: str) -> tf.Tensor:
    """``value`` as an int32 scalar tensor, checked to lie in ``[1, upper]``.

    A Python int is checked now (``ValueError``); a tensor when the graph runs
    (``InvalidArgumentError``).
    """
    message = f"{name} must be between 1 and the number of {what} ({upper})"
    if isinstance(value, (int, np.integer)):
        if not 1 <= int(value) <= upper:
            raise ValueError(f"{message}, got {int(value)}")
        return tf.constant(int(value), tf.int32)
    count = tf.cast(value, tf.int32)
    with tf.control_dependencies(
        [
            tf.debugging.assert_greater_equal(count, 1, message=message),
            tf.debugging.assert_less_equal(count, upper, message=message),
        ]
    ):
        return tf.identity(count)


class TopKIndex(keras.layers.Layer):
    """What both index kinds share: the candidates, their identifiers and the k check.

    Args:
        embeddings: ``[N, D]`` candidate embeddings.
        identifiers: ``[N]`` candidate identifiers (deduplicated, see the module docstring).
        k: The ``k`` used when a call does not pass one; clipped to the index size.
    """

    def __init__(self, embeddings: np.ndarray, identifiers: np.ndarray, k: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        vectors, ids = deduplicate_candidates(embeddings, identifiers)
        self.size = len(ids)
        self.dimension = vectors.shape[1]
        if k < 1:
            raise ValueError(f"the default k must be >= 1, got {k}")
        self.default_k = min(int(k), self.size)
        self.candidate_embeddings = tf.Variable(vectors, trainable=False, name="candidate_embeddings")
        self.identifiers = tf.Variable(ids, trainable=False, dtype=tf.string, name="identifiers")

    def _queries(self, queries: tf.Tensor) -> tf.Tensor:
        queries = tf.convert_to_tensor(queries, tf.float32)
        if queries.shape.rank != 2 or queries.shape[-1] not in (None, self.dimension):
            raise ValueError(f"queries must have shape [batch, {self.dimension}], got {queries.shape}")
        return queries

    def _k(self, k: int | tf.Tensor | None) -> tf.Tensor:
        return _checked_count(self.default_k if k is None else k, self.size, "k", "candidates")


class BruteForceIndex(TopKIndex):
    """Exact top-k: every candidate is scored by dot product.

    Call: ``index(queries [B, D], k=None) -> (scores [B, k] float32, identifiers [B, k] string)``,
    scores descending; equal scores keep the lower candidate position first.
    """

    def call(self, queries: tf.Tensor, k: int | tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        queries = self._queries(queries)
        scores = tf.matmul(queries, self.candidate_embeddings, transpose_b=True)
        top_scores, positions = tf.math.top_k(scores, k=self._k(k))
        return top_scores, tf.gather(self.identifiers, positions)


def kmeans(vectors: np.ndarray, clusters: int, seed: int, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Lloyd's k-means with greedy k-means++ seeding.

    Each new seed is the best of ``2 + ln(clusters)`` points drawn with probability
    proportional to their squared distance to the nearest seed so far (the one that
    lowers the total squared distance most, as scikit-learn seeds).

    A cluster left empty by an assignment step is re-seeded with the point farthest
    from its own centroid, so no centroid is wasted on an empty region.

    Args:
        vectors: ``[N, D]`` points.
        clusters: Number of centroids, between 1 and ``N``.
        seed: Seed of the k-means++ draws.
        iterations: Lloyd iterations (stops early when assignments no longer change).

    Returns:
        ``[clusters, D]`` float32 centroids.
    """
    points = np.asarray(vectors, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centroids = np.empty((clusters, points.shape[1]))
    centroids[0] = points[rng.integers(len(points))]
    closest = np.maximum(_squared_distances(points, centroids[:1])[:, 0], 0.0)
    trials = 2 + int(np.log(clusters))
    for c in range(1, clusters):
        total = closest.sum()
        if total > 0:
            candidates = rng.choice(len(points), size=trials, p=closest / total)
        else:
            candidates = rng.integers(len(points), size=trials)
        distances = np.maximum(_squared_distances(points, points[candidates]).T, 0.0)  # [trials, N]
        updated = np.minimum(closest[None, :], distances)
        best = int(updated.sum(axis=1).argmin())
        centroids[c] = points[candidates[best]]
        closest = updated[best]
    assignment = None
    for _ in range(iterations):
        distances = _squared_distances(points, centroids)
        new_assignment = distances.argmin(axis=1)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        for c in range(clusters):
            members = points[assignment == c]
            if len(members):
                centroids[c] = members.mean(axis=0)
            else:
                farthest = int(distances[np.arange(len(points)), assignment].argmax())
                centroids[c] = points[farthest]
                assignment[farthest] = c
                distances[farthest] = 0.0
    return centroids.astype(np.float32)


def _squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return np.sum(points**2, axis=1, keepdims=True) - 2.0 * points @ centroids.T + np.sum(centroids**2, axis=1)[None, :]


class IVFIndex(TopKIndex):
    """Approximate top-k: k-means partitions, probe the best ``nprobe``, exact scores inside.

    Candidates are assigned to their nearest centroid (Euclidean, as k-means built
    them). A query ranks the partitions by the dot product of the query with each
    centroid, the inner-product IVF rule, and scores the candidates of the ``nprobe``
    best partitions exactly.

    Args:
        embeddings: ``[N, D]`` candidate embeddings.
        identifiers: ``[N]`` candidate identifiers.
        k: Default ``k`` of calls that pass none.
        num_partitions: Number of k-means partitions, ``1..N``; ``round(sqrt(N))`` when
            ``None``.
        nprobe: Default number of partitions a query scores, ``1..num_partitions``;
            a quarter of them (rounded up) when ``None``.
        seed: Seed of the k-means++ initialisation.

    Call: ``index(queries [B, D], k=None, nprobe=None) -> (scores [B, k], identifiers [B, k])``.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        identifiers: np.ndarray,
        k: int = 10,
        num_partitions: int | None = None,
        nprobe: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(embeddings, identifiers, k, **kwargs)
        vectors = self.candidate_embeddings.numpy()
        partitions = max(1, round(math.sqrt(self.size))) if num_partitions is None else int(num_partitions)
        if not 1 <= partitions <= self.size:
            raise ValueError(
                f"num_partitions must be between 1 and the number of candidates ({self.size}), got {partitions}"
            )
        self.num_partitions = partitions
        default_nprobe = math.ceil(partitions / 4) if nprobe is None else int(nprobe)
        if not 1 <= default_nprobe <= partitions:
            raise ValueError(f"nprobe must be between 1 and num_partitions ({partitions}), got {default_nprobe}")
        self.default_nprobe = default_nprobe
        centroids = kmeans(vectors, partitions, seed)
        assignment = _squared_distances(vectors.astype(np.float64), centroids.astype(np.float64)).argmin(axis=1)
        sizes = np.bincount(assignment, minlength=partitions)
        # Partition p's candidate positions in row p, padded with -1 to the largest partition.
        members = np.full((partitions, int(sizes.max())), -1, dtype=np.int32)
        for p in range(partitions):
            positions = np.flatnonzero(assignment == p)
            members[p, : positions.size] = positions
        self.partition_sizes = sizes
        self.centroids = tf.Variable(centroids, trainable=False, name="centroids")
        self.members = tf.Variable(members, trainable=False, name="partition_members")

    def call(
        self, queries: tf.Tensor, k: int | tf.Tensor | None = None, nprobe: int | tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        queries = self._queries(queries)
        k = self._k(k)
        probes = _checked_count(
            self.default_nprobe if nprobe is None else nprobe, self.num_partitions, "nprobe", "partitions"
        )
        _, probed = tf.math.top_k(tf.matmul(queries, self.centroids, transpose_b=True), k=probes)  # [B, nprobe]
        batch = tf.shape(queries)[0]
        positions = tf.reshape(tf.gather(self.members, probed), [batch, -1])  # [B, nprobe * max_size]
        # At least k columns, so top_k can always take k (padding stays -1 / -inf).
        positions = tf.pad(positions, [[0, 0], [0, tf.maximum(k - tf.shape(positions)[1], 0)]], constant_values=-1)
        valid = positions >= 0
        vectors = tf.gather(self.candidate_embeddings, tf.maximum(positions, 0))  # [B, C, D]
        scores = tf.where(valid, tf.einsum("bd,bcd->bc", queries, vectors), tf.constant(-np.inf, tf.float32))
        top_scores, columns = tf.math.top_k(scores, k=k)
        top_positions = tf.gather(positions, columns, batch_dims=1)
        identifiers = tf.where(
            top_positions >= 0,
            tf.gather(self.identifiers, tf.maximum(top_positions, 0)),
            tf.constant(PADDING_IDENTIFIER),
        )
        return top_scores, identifiers


def build_index(kind: str, embeddings: np.ndarray, identifiers: np.ndarray, k: int = 10, **options: Any) -> TopKIndex:
    """Build a top-k index of one of ``INDEX_KINDS`` over candidate embeddings.

    Args:
        kind: ``"brute_force"`` or ``"approximate"``.
        embeddings: ``[N, D]`` candidate embeddings (e.g. a candidate tower's output).
        identifiers: ``[N]`` candidate identifiers (e.g. item ids); repeats are handled as
            the module docstring says.
        k: Default ``k`` of calls that pass none (clipped to the index size).
        **options: ``IVFIndex`` settings for ``"approximate"`` (``num_partitions``,
            ``nprobe``, ``seed``); none are accepted for ``"brute_force"``.

    Returns:
        A Keras layer: ``index(queries [B, D], k=None) -> (scores [B, k], identifiers [B, k])``.

    Raises:
        ValueError: on an unknown kind, options the kind does not take, or bad candidates.
    """
    if kind == "brute_force":
        if options:
            raise ValueError(f"a brute_force index takes no options, got {sorted(options)}")
        return BruteForceIndex(embeddings, identifiers, k, name="brute_force_index")
    if kind == "approximate":
        unknown = sorted(set(options) - {"num_partitions", "nprobe", "seed"})
        if unknown:
            raise ValueError(f"unknown approximate index option(s) {unknown}; allowed: num_partitions, nprobe, seed")
        return IVFIndex(embeddings, identifiers, k, name="ivf_index", **options)
    raise ValueError(f"index kind must be one of {list(INDEX_KINDS)}, got {kind!r}")
