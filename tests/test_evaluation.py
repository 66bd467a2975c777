"""Offline metrics against values computed by hand."""

import math

import pytest

from models.evaluation import LOGLOSS_EPSILON, auc, bayes_logloss, logloss, recall_at_k


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
