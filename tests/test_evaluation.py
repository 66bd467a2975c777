"""Offline metrics against values computed by hand."""

import math

import numpy as np
import pytest
from scipy import sparse

from models import evaluation
from models.evaluation import (
    LOGLOSS_EPSILON,
    auc,
    bayes_logloss,
    logloss,
    mae,
    normalized_entropy,
    ranking_metrics,
    recall_at_k,
    rmse,
)

pytestmark = pytest.mark.unit


class TestAuc:
    def test_counts_ordered_pairs(self):
        # Positives 0.35, 0.8; negatives 0.1, 0.4. Pairs won by the positive:
        # (0.35>0.1), (0.8>0.1), (0.8>0.4); lost: (0.35<0.4) -> 3/4.
        assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)

    def test_tie_between_classes_counts_half(self):
        # Positives 0.5, 0.9; negatives 0.5, 0.2. Pairs: (0.5 vs 0.5) tie = 0.5,
        # (0.5>0.2) = 1, (0.9>0.5) = 1, (0.9>0.2) = 1 -> 3.5/4.
        assert auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)

    def test_ties_within_a_class_do_not_matter(self):
        # Both positives at 0.7 beat both negatives -> 1.0.
        assert auc([1, 1, 0, 0], [0.7, 0.7, 0.1, 0.2]) == pytest.approx(1.0)

    def test_all_scores_tied_is_one_half(self):
        assert auc([0, 1, 0, 1, 1], [0.3] * 5) == pytest.approx(0.5)

    def test_perfectly_reversed_is_zero(self):
        assert auc([1, 1, 0], [0.1, 0.2, 0.9]) == pytest.approx(0.0)

    def test_invariant_to_monotone_transform(self):
        labels = [0, 1, 1, 0, 1, 0, 0]
        scores = [0.2, 0.6, 0.4, 0.4, 0.9, 0.1, 0.3]
        assert auc(labels, scores) == pytest.approx(auc(labels, [math.log(s) * 7 for s in scores]))

    @pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0]])
    def test_single_class_raises(self, labels):
        with pytest.raises(ValueError, match="both classes"):
            auc(labels, [0.5] * len(labels))

    def test_empty_raises(self):
        with pytest.raises(ValueError, match="empty"):
            auc([], [])

    def test_length_mismatch_raises(self):
        with pytest.raises(ValueError, match="3 labels but 2 scores"):
            auc([0, 1, 1], [0.2, 0.3])

    def test_non_binary_labels_raise(self):
        with pytest.raises(ValueError, match="0 or 1"):
            auc([0, 2, 1], [0.1, 0.2, 0.3])

    def test_nan_score_raises(self):
        with pytest.raises(ValueError, match="finite"):
            auc([0, 1], [0.1, float("nan")])


class TestLogloss:
    def test_hand_computed(self):
        # -(ln 0.8 + ln 0.6) / 2
        expected = -(math.log(0.8) + math.log(0.6)) / 2
        assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(expected)
        assert expected == pytest.approx(0.366984585)

    def test_confident_mistake_is_clipped(self):
        assert logloss([1], [0.0]) == pytest.approx(-math.log(LOGLOSS_EPSILON))
        assert logloss([0], [1.0]) == pytest.approx(-math.log(LOGLOSS_EPSILON))

    def test_confident_hit_costs_almost_nothing(self):
        assert logloss([1, 0], [1.0, 0.0]) == pytest.approx(LOGLOSS_EPSILON, rel=1e-3)

    def test_single_class_is_fine(self):
        assert logloss([0, 0], [0.5, 0.5]) == pytest.approx(math.log(2))

    @pytest.mark.parametrize("probability", [-0.1, 1.5])
    def test_out_of_range_probability_raises(self, probability):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            logloss([1, 0], [0.5, probability])

    def test_empty_raises(self):
        with pytest.raises(ValueError, match="empty"):
            logloss([], [])


def test_bayes_logloss_is_logloss_of_true_probabilities():
    # Three coin flips at p = 0.5 cost ln 2 each, whatever the outcomes.
    assert bayes_logloss([1, 1, 0], [0.5, 0.5, 0.5]) == pytest.approx(math.log(2))
    # -(ln 0.9 + ln 0.8) / 2
    assert bayes_logloss([1, 0], [0.9, 0.2]) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)


class TestRecallAtK:
    RECOMMENDED = [["a", "b", "c"], ["x", "y"]]
    RELEVANT = [{"a", "c", "d"}, {"z"}]

    def test_hand_computed(self):
        # k=2: user 1 finds {a} of {a,c,d} = 1/3, user 2 finds nothing -> mean 1/6.
        assert recall_at_k(self.RECOMMENDED, self.RELEVANT, k=2) == pytest.approx(1 / 6)
        # k=3: user 1 finds {a,c} = 2/3 -> mean 1/3.
        assert recall_at_k(self.RECOMMENDED, self.RELEVANT, k=3) == pytest.approx(1 / 3)

    def test_short_lists_and_duplicates(self):
        # Duplicates count once: {a} of {a,b} = 1/2, even with k beyond the list length.
        assert recall_at_k([["a", "a"]], [{"a", "b"}], k=10) == pytest.approx(0.5)

    def test_k_below_one_raises(self):
        with pytest.raises(ValueError, match="k must be >= 1"):
            recall_at_k(self.RECOMMENDED, self.RELEVANT, k=0)

    def test_no_users_raises(self):
        with pytest.raises(ValueError, match="no users"):
            recall_at_k([], [], k=5)

    def test_length_mismatch_raises(self):
        with pytest.raises(ValueError, match="2 users but relevant items for 1"):
            recall_at_k(self.RECOMMENDED, [{"a"}], k=5)

    def test_user_without_relevant_items_raises(self):
        with pytest.raises(ValueError, match="position 1 has no relevant items"):
            recall_at_k(self.RECOMMENDED, [{"a"}, set()], k=5)


class TestNormalizedEntropy:
    def test_hand_computed(self):
        # Base rate 1/4: H = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.346574 + 0.215762 = 0.562335.
        # Predicting 0.5 everywhere costs ln 2 = 0.693147 -> NE = 0.693147 / 0.562335 = 1.232623.
        assert normalized_entropy([1, 0, 0, 0], [0.5] * 4) == pytest.approx(1.232623, rel=1e-6)

    def test_predicting_the_base_rate_scores_one(self):
        assert normalized_entropy([1, 0, 0, 0], [0.25] * 4) == pytest.approx(1.0)

    def test_single_class_raises(self):
        with pytest.raises(ValueError, match="both classes"):
            normalized_entropy([0, 0, 0], [0.1, 0.2, 0.3])


class TestRatingErrors:
    def test_hand_computed(self):
        # Errors 1-2 = -1, 2-2 = 0, 3-5 = -2: squares 1, 0, 4 -> RMSE sqrt(5/3); MAE (1+0+2)/3 = 1.
        assert rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt(5 / 3))
        assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)

    def test_mismatch_and_nan_raise(self):
        with pytest.raises(ValueError, match="3 targets but 2 predictions"):
            rmse([1, 2, 3], [1, 2])
        with pytest.raises(ValueError, match="finite"):
            mae([1.0, float("nan")], [1.0, 2.0])
        with pytest.raises(ValueError, match="empty"):
            rmse([], [])


class TestRankingMetrics:
    # User 0: item 1 is a training item (masked), so its ranking is 0, 2, 3, 4; test {2, 4}.
    # User 1: items 1 and 2 tie at 0.4 (lower index first), ranking 1, 2, 3, 4, 0; test {0}.
    # User 2: no test item, so it is not evaluated.
    SCORES = np.array(
        [
            [0.9, 0.8, 0.7, 0.6, 0.5],
            [0.1, 0.4, 0.4, 0.3, 0.2],
            [0.5, 0.4, 0.3, 0.2, 0.1],
        ]
    )
    MASK = np.array([[False, True, False, False, False], [False] * 5, [False] * 5])
    TEST = [[2, 4], [0], []]

    def test_hand_computed_top_2(self):
        metrics = ranking_metrics(self.SCORES, self.MASK, self.TEST, ks=(2,))
        # User 0 top 2 = [0, 2]: one hit at rank 2 -> user HR 1, recall 1/2, MRR 1/2,
        #   DCG 1/log2(3) = 0.630930, ideal DCG (min(2, 2) hits) 1 + 0.630930 -> NDCG 0.386853.
        # User 1 top 2 = [1, 2]: no hit -> all 0.
        assert metrics["users"] == 2
        assert metrics["user_hr@2"] == pytest.approx(0.5)
        assert metrics["recall@2"] == pytest.approx(0.25)
        assert metrics["mrr@2"] == pytest.approx(0.25)
        assert metrics["ndcg@2"] == pytest.approx(0.386853 / 2, rel=1e-5)
        # Pooled hit ratio: 1 hit over 3 test interactions.
        assert metrics["hr@2"] == pytest.approx(1 / 3)

    def test_hand_computed_deeper_cut_offs(self):
        metrics = ranking_metrics(self.SCORES, self.MASK, self.TEST, ks=(4, 5))
        # K=4. User 0 top 4 = [0, 2, 3, 4]: hits at ranks 2 and 4 -> recall 1, MRR 1/2,
        #   DCG 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606, ideal 1.630930 -> 0.650919.
        # User 1 top 4 = [1, 2, 3, 4]: no hit.
        assert metrics["user_hr@4"] == pytest.approx(0.5)
        assert metrics["hr@4"] == pytest.approx(2 / 3)
        assert metrics["recall@4"] == pytest.approx(0.5)
        assert metrics["ndcg@4"] == pytest.approx(0.650919 / 2, rel=1e-5)
        assert metrics["mrr@4"] == pytest.approx(0.25)
        # K=5. User 0 unchanged (the masked item 1 cannot hit). User 1 finds item 0 at rank 5:
        #   recall 1, MRR 1/5, DCG 1/log2(6) = 0.386853 over ideal 1.
        assert metrics["user_hr@5"] == pytest.approx(1.0)
        assert metrics["recall@5"] == pytest.approx(1.0)
        assert metrics["mrr@5"] == pytest.approx((0.5 + 0.2) / 2)
        assert metrics["ndcg@5"] == pytest.approx((0.650919 + 0.386853) / 2, rel=1e-5)
        assert metrics["hr@5"] == pytest.approx(1.0)

    def test_recall_divides_by_all_test_items(self):
        # Three test items, K = 1: the single hit gives recall 1/3 (RecBole), not 1/min(1, 3) = 1,
        # and NDCG 1 (the ideal list has min(1, 3) = 1 hit).
        metrics = ranking_metrics(np.array([[3.0, 2.0, 1.0, 0.0]]), None, [[0, 1, 2]], ks=(1,))
        assert metrics["recall@1"] == pytest.approx(1 / 3)
        assert metrics["ndcg@1"] == pytest.approx(1.0)

    def test_masked_test_item_is_never_a_hit(self):
        # Item 0 is both a training and a test item: masked, it cannot be found even at K = n_items.
        metrics = ranking_metrics(np.array([[1.0, 0.5, 0.2]]), np.array([[True, False, False]]), [[0, 1]], ks=(3,))
        assert metrics["recall@3"] == pytest.approx(0.5)

    def test_sparse_mask_and_blocks_give_the_same_result(self, monkeypatch):
        rng = np.random.default_rng(0)
        scores = rng.random((40, 30))
        mask = rng.random((40, 30)) < 0.2
        test = [rng.choice(30, size=3, replace=False) for _ in range(40)]
        dense = ranking_metrics(scores, mask, test, ks=(5, 10))
        monkeypatch.setattr(evaluation, "RANKING_BLOCK_CELLS", 70)  # two users per block
        blocked = ranking_metrics(scores, sparse.csr_matrix(mask), test, ks=(5, 10))
        assert blocked == pytest.approx(dense)

    def test_invalid_input_raises(self):
        with pytest.raises(ValueError, match="between 1 and the number of items"):
            ranking_metrics(self.SCORES, self.MASK, self.TEST, ks=(6,))
        with pytest.raises(ValueError, match="train_mask has shape"):
            ranking_metrics(self.SCORES, self.MASK[:2], self.TEST)
        with pytest.raises(ValueError, match="test items for 2 users but scores for 3"):
            ranking_metrics(self.SCORES, self.MASK, self.TEST[:2], ks=(2,))
        with pytest.raises(ValueError, match="outside"):
            ranking_metrics(self.SCORES, self.MASK, [[5], [0], []], ks=(2,))
        with pytest.raises(ValueError, match="no user has a test item"):
            ranking_metrics(self.SCORES, self.MASK, [[], [], []], ks=(2,))
        with pytest.raises(ValueError, match="finite"):
            ranking_metrics(np.array([[np.nan, 1.0]]), None, [[0]], ks=(1,))
