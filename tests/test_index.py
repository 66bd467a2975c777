"""Top-k indexes: brute force is exact, the IVF index trades recall for partitions probed,
both deduplicate candidates, check k, and answer the same after a SavedModel round trip."""

import numpy as np
import pytest
import tensorflow as tf

from models.retrieval.index import (
    PADDING_IDENTIFIER,
    BruteForceIndex,
    IVFIndex,
    build_index,
    deduplicate_candidates,
    kmeans,
)

pytestmark = pytest.mark.unit

DIM = 16


def random_candidates(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, DIM)).astype(np.float32), np.array([f"item_{i:04d}" for i in range(n)])


def clustered_candidates(clusters: int, per_cluster: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors in tight groups around random unit centres: (embeddings, ids, centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = np.repeat(centres, per_cluster, axis=0) + rng.normal(scale=0.05, size=(clusters * per_cluster, DIM))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    ids = np.array([f"item_{i:04d}" for i in range(len(points))])
    return points.astype(np.float32), ids, centres


def numpy_top_k(queries: np.ndarray, embeddings: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ embeddings.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def decoded(identifiers: tf.Tensor) -> np.ndarray:
    return identifiers.numpy().astype(str)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


class TestBruteForce:
    def test_equals_numpy_top_k_for_every_k(self):
        embeddings, ids = random_candidates(200)
        queries = np.random.default_rng(1).normal(size=(8, DIM)).astype(np.float32)
        index = build_index("brute_force", embeddings, ids)
        for k in (1, 10, 200):
            scores, found = index(queries, k=k)
            expected_scores, expected_ids = numpy_top_k(queries, embeddings, ids, k)
            np.testing.assert_array_equal(decoded(found), expected_ids)
            np.testing.assert_allclose(scores.numpy(), expected_scores, rtol=1e-5, atol=1e-5)

    def test_default_k_is_used_when_a_call_passes_none(self):
        embeddings, ids = random_candidates(30)
        scores, found = build_index("brute_force", embeddings, ids, k=7)(embeddings[:3])
        assert scores.shape == (3, 7) and found.shape == (3, 7)

    def test_k_out_of_range_is_an_error_not_a_clamp(self):
        embeddings, ids = random_candidates(30)
        index = build_index("brute_force", embeddings, ids)
        with pytest.raises(ValueError, match=r"k must be between 1 and the number of candidates \(30\), got 31"):
            index(embeddings[:2], k=31)
        with pytest.raises(ValueError, match="got 0"):
            index(embeddings[:2], k=0)
        with pytest.raises(tf.errors.InvalidArgumentError, match="k must be between 1 and the number of candidates"):
            index(embeddings[:2], k=tf.constant(31))

    def test_wrong_query_width_names_the_expected_shape(self):
        embeddings, ids = random_candidates(30)
        with pytest.raises(ValueError, match=rf"queries must have shape \[batch, {DIM}\]"):
            build_index("brute_force", embeddings, ids)(np.zeros((2, DIM + 1), np.float32))


class TestDeduplication:
    def test_identical_repeats_are_indexed_once(self):
        embeddings, ids = random_candidates(20)
        repeated = np.concatenate([embeddings, embeddings[:5]]), np.concatenate([ids, ids[:5]])
        index = build_index("brute_force", *repeated)
        assert index.size == 20
        _, found = index(embeddings[:4], k=20)
        for row in decoded(found):
            assert len(set(row)) == 20  # every candidate once, none twice

    def test_first_occurrence_order_is_kept(self):
        embeddings, ids = random_candidates(4)
        vectors, kept = deduplicate_candidates(embeddings[[2, 0, 2, 1]], ids[[2, 0, 2, 1]])
        np.testing.assert_array_equal(kept, ids[[2, 0, 1]])
        np.testing.assert_array_equal(vectors, embeddings[[2, 0, 1]])

    def test_a_repeated_id_with_another_embedding_is_rejected(self):
        embeddings, ids = random_candidates(5)
        with pytest.raises(ValueError, match=r"identifiers repeat with different embeddings, e.g. \['item_0001'\]"):
            build_index("brute_force", np.concatenate([embeddings, embeddings[:1] + 1]), np.append(ids, ids[1]))

    @pytest.mark.parametrize(
        ("embeddings", "ids", "message"),
        [
            (np.zeros((0, DIM)), np.array([]), "zero candidates"),
            (np.zeros((3, DIM)), np.array(["a", "b"]), r"shapes \(3, 16\) and \(2,\)"),
            (np.full((1, DIM), np.nan), np.array(["a"]), "must be finite"),
        ],
    )
    def test_bad_candidates_are_named(self, embeddings, ids, message):
        with pytest.raises(ValueError, match=message):
            build_index("brute_force", embeddings, ids)


class TestIVF:
    def test_probing_every_partition_is_brute_force(self):
        embeddings, ids = random_candidates(300)
        queries = np.random.default_rng(2).normal(size=(16, DIM)).astype(np.float32)
        index = build_index("approximate", embeddings, ids, num_partitions=12, seed=3)
        scores, found = index(queries, k=25, nprobe=12)
        expected_scores, expected_ids = numpy_top_k(queries, embeddings, ids, 25)
        np.testing.assert_array_equal(decoded(found), expected_ids)
        np.testing.assert_allclose(scores.numpy(), expected_scores, rtol=1e-5, atol=1e-5)

    def test_one_probe_finds_the_whole_top_k_on_well_separated_clusters(self):
        # 8 groups of 40 unit vectors within ~0.05 of their centre; random centres in 16
        # dimensions are ~0.25 apart in cosine, so a query at a centre scores its own group
        # (~1.0) above any other (< 0.7): the exact top 10 lies in one partition, and
        # k-means with 8 partitions recovers the groups, so nprobe = 1 must find all of it.
        embeddings, ids, centres = clustered_candidates(clusters=8, per_cluster=40)
        index = build_index("approximate", embeddings, ids, num_partitions=8, seed=0)
        _, found = index(centres.astype(np.float32), k=10, nprobe=1)
        _, exact = numpy_top_k(centres.astype(np.float32), embeddings, ids, 10)
        assert recall(decoded(found), exact) == 1.0
        assert sorted(index.partition_sizes) == [40] * 8

    def test_recall_grows_with_nprobe_and_beats_scoring_random_candidates(self):
        # Unstructured data: scoring a random s% of the candidates finds s% of the top k on
        # average; probing the partitions whose centroids score best must do better.
        embeddings, ids = random_candidates(1000, seed=4)
        queries = np.random.default_rng(5).normal(size=(64, DIM)).astype(np.float32)
        index = build_index("approximate", embeddings, ids, num_partitions=16, seed=0)
        _, exact = numpy_top_k(queries, embeddings, ids, 10)
        centroid_order = np.argsort(-(queries @ index.centroids.numpy().T), axis=1)
        recalls = []
        for nprobe in (1, 2, 4, 8):
            _, found = index(queries, k=10, nprobe=nprobe)
            scored_share = index.partition_sizes[centroid_order[:, :nprobe]].sum(axis=1).mean() / 1000
            recalls.append(recall(decoded(found), exact))
            assert recalls[-1] > scored_share
        _, found = index(queries, k=10, nprobe=16)
        recalls.append(recall(decoded(found), exact))
        assert recalls == sorted(recalls)
        assert recalls[-1] == 1.0

    def test_columns_the_probed_partitions_cannot_fill_are_padded(self):
        embeddings, ids, centres = clustered_candidates(clusters=4, per_cluster=5)
        index = build_index("approximate", embeddings, ids, num_partitions=4, seed=0)
        scores, found = index(centres[:1].astype(np.float32), k=8, nprobe=1)
        assert (decoded(found)[0, :5] != PADDING_IDENTIFIER).all()
        assert (decoded(found)[0, 5:] == PADDING_IDENTIFIER).all()
        assert np.isneginf(scores.numpy()[0, 5:]).all()

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"num_partitions": 0}, r"num_partitions must be between 1 and the number of candidates \(50\)"),
            ({"num_partitions": 5, "nprobe": 6}, r"nprobe must be between 1 and num_partitions \(5\)"),
            ({"probes": 2}, r"unknown approximate index option\(s\) \['probes'\]"),
        ],
    )
    def test_bad_options_are_named(self, options, message):
        embeddings, ids = random_candidates(50)
        with pytest.raises(ValueError, match=message):
            build_index("approximate", embeddings, ids, **options)

    def test_unknown_kind_lists_the_kinds(self):
        embeddings, ids = random_candidates(5)
        with pytest.raises(ValueError, match=r"one of \['brute_force', 'approximate'\], got 'exact'"):
            build_index("exact", embeddings, ids)


def test_kmeans_recovers_separated_clusters():
    embeddings, _, _ = clustered_candidates(clusters=5, per_cluster=30, seed=6)
    centroids = kmeans(embeddings, 5, seed=0)
    nearest = np.argmin(((embeddings[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    groups = np.repeat(np.arange(5), 30)
    for group in range(5):
        assert len(set(nearest[groups == group])) == 1  # each group maps to one centroid
    assert len(set(nearest)) == 5


@pytest.mark.parametrize("kind", ["brute_force", "approximate"])
def test_saved_model_round_trip_answers_the_same(kind, tmp_path):
    embeddings, ids = random_candidates(120, seed=7)
    index = build_index(kind, embeddings, ids, **({"num_partitions": 8, "nprobe": 3} if kind == "approximate" else {}))
    module = tf.Module()
    module.index = index
    module.search = tf.function(
        lambda queries, k: index(queries, k=k),
        input_signature=[tf.TensorSpec([None, DIM], tf.float32), tf.TensorSpec([], tf.int32)],
    )
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    queries = np.random.default_rng(8).normal(size=(5, DIM)).astype(np.float32)
    for k in (3, 40):
        before, after = index(queries, k=k), loaded.search(queries, tf.constant(k))
        np.testing.assert_array_equal(decoded(after[1]), decoded(before[1]))
        np.testing.assert_array_equal(after[0].numpy(), before[0].numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be between 1"):
        loaded.search(queries, tf.constant(121))
    assert isinstance(index, IVFIndex if kind == "approximate" else BruteForceIndex)
