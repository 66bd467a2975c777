"""Split protocols on small hand-made frames (and the MovieLens-100K file when present)."""

import numpy as np
import pandas as pd
import pytest

from models.inputs import protocols
from models.inputs.protocols import (
    leave_one_out,
    per_user_random_split,
    split_counts,
    temporal_split,
    tensorflow_shuffle_order,
    tfds_record_order,
    tfrs_random_split,
)
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.unit

DAY = 86_400


def interactions(user_sizes: dict[str, int]) -> pd.DataFrame:
    """``n`` interactions per user, items ``i0..``, one hour apart, ratings cycling 1..5."""
    rows = []
    clock = 0
    for user, size in user_sizes.items():
        for position in range(size):
            clock += 3600
            rows.append((user, f"i{position}", position % 5 + 1, clock))
    return pd.DataFrame(rows, columns=list(protocols.INTERACTION_COLUMNS))


def assert_partition(frame: pd.DataFrame, parts: tuple[pd.DataFrame, ...]) -> None:
    """The parts' indexes are disjoint and together hold every row of ``frame`` once."""
    combined = np.concatenate([part.index.to_numpy() for part in parts])
    assert len(combined) == len(set(combined)) == len(frame)
    assert set(combined) == set(frame.index)


class TestTfrsRandomSplit:
    def test_shuffle_matches_eager_tensorflow_with_global_seed(self):
        import tensorflow as tf

        tf.random.set_seed(42)  # what the tutorials do before shuffling
        eager = tf.data.Dataset.range(500).shuffle(100_000, seed=42, reshuffle_each_iteration=False)
        expected = np.fromiter(eager.as_numpy_iterator(), dtype=np.int64)
        assert np.array_equal(tensorflow_shuffle_order(500, seed=42), expected)

    def test_sizes_disjoint_and_deterministic(self):
        frame = interactions({"a": 20, "b": 15, "c": 15})
        train, test = tfrs_random_split(frame, train_size=40)
        assert (len(train), len(test)) == (40, 10)
        assert_partition(frame, (train, test))
        again_train, _ = tfrs_random_split(frame, train_size=40)
        assert again_train.index.tolist() == train.index.tolist()
        # The rows come in TFDS order, then TensorFlow's shuffle order.
        order = tfds_record_order(50)[tensorflow_shuffle_order(50, seed=42)]
        assert train.index.tolist() == frame.index[order[:40]].tolist()

    def test_seed_and_record_order_change_the_split(self):
        frame = interactions({"a": 30, "b": 20})
        train, _ = tfrs_random_split(frame, train_size=40)
        other_seed, _ = tfrs_random_split(frame, seed=7, train_size=40)
        file_order, _ = tfrs_random_split(frame, train_size=40, tfds_order=False)
        assert other_seed.index.tolist() != train.index.tolist()
        assert file_order.index.tolist() != train.index.tolist()

    def test_bad_train_size_and_columns_raise(self):
        frame = interactions({"a": 5})
        with pytest.raises(ValueError, match="train_size must be between 1 and 4"):
            tfrs_random_split(frame, train_size=5)
        with pytest.raises(ValueError, match=r"lacks column\(s\) \['timestamp'\]"):
            tfrs_random_split(frame.drop(columns="timestamp"), train_size=2)


@pytest.mark.skipif(not (SHARED_DATA / "ml-100k" / "u.data").is_file(), reason="MovieLens-100K not available")
def test_tfds_order_starts_with_the_record_the_tutorials_print():
    # The TFRS tutorials print ratings.take(1): user 138 rates movie 357 ("One Flew Over
    # the Cuckoo's Nest") 4 stars at 879024327. That is line 16,399 of u.data.
    ratings = pd.read_csv(SHARED_DATA / "ml-100k" / "u.data", sep="\t", header=None, names=["u", "i", "r", "t"])
    first = ratings.iloc[tfds_record_order(len(ratings))[0]]
    assert first.tolist() == [138, 357, 4, 879024327]


class TestSplitCounts:
    @pytest.mark.parametrize(
        ("total", "expected"),
        [
            (10, [8, 1, 1]),  # floor(1.0) = 1 each for validation and test, rest to train
            (29, [25, 2, 2]),  # floor(2.9) = 2 each
            (5, [3, 1, 1]),  # 0.5 each rounds to 0, then test and validation get one each
            (2, [1, 0, 1]),  # 0.2: test takes one, then train is down to 1 and keeps it
            (1, [1, 0, 0]),  # a single interaction stays in train
        ],
    )
    def test_recbole_counts(self, total, expected):
        assert split_counts(total, (0.8, 0.1, 0.1)) == expected

    def test_ratios_are_normalised(self):
        assert split_counts(10, (8, 1, 1)) == [8, 1, 1]


class TestPerUserRandomSplit:
    FRAME = interactions({"a": 10, "b": 5, "c": 2, "d": 1})

    def test_part_sizes_per_user(self):
        train, validation, test = per_user_random_split(self.FRAME, seed=1)
        assert_partition(self.FRAME, (train, validation, test))
        sizes = {
            name: part.groupby("user_id").size().to_dict()
            for name, part in (("train", train), ("validation", validation), ("test", test))
        }
        assert sizes == {
            "train": {"a": 8, "b": 3, "c": 1, "d": 1},
            "validation": {"a": 1, "b": 1},
            "test": {"a": 1, "b": 1, "c": 1},
        }

    def test_deterministic_for_a_seed(self):
        first = per_user_random_split(self.FRAME, seed=3)
        second = per_user_random_split(self.FRAME, seed=3)
        other = per_user_random_split(self.FRAME, seed=4)
        assert [part.index.tolist() for part in first] == [part.index.tolist() for part in second]
        assert [part.index.tolist() for part in first] != [part.index.tolist() for part in other]

    def test_two_way_split(self):
        train, test = per_user_random_split(self.FRAME, ratios=(0.5, 0.5), seed=0)
        # a: 5/5, b: floor(2.5) = 2 test, c: 1/1, d: 1 train.
        assert test.groupby("user_id").size().to_dict() == {"a": 5, "b": 2, "c": 1}
        assert_partition(self.FRAME, (train, test))

    @pytest.mark.parametrize("ratios", [(1.0,), (0.8, 0.0, 0.2), (0.9, -0.1)])
    def test_bad_ratios_raise(self, ratios):
        with pytest.raises(ValueError, match="at least two positive"):
            per_user_random_split(self.FRAME, ratios=ratios)


class TestLeaveOneOut:
    def test_latest_is_test_and_second_latest_validation(self):
        frame = pd.DataFrame(
            {
                "user_id": ["a", "a", "a", "a", "b", "b", "c"],
                "item_id": ["x", "y", "z", "w", "x", "y", "x"],
                "rating": [1, 2, 3, 4, 5, 4, 3],
                "timestamp": [5, 1, 3, 3, 10, 20, 7],
            }
        )
        train, validation, test = leave_one_out(frame)
        assert_partition(frame, (train, validation, test))
        # a ordered by time: y(1), z(3), w(3, later in the frame), x(5).
        assert test["item_id"].tolist() == ["x", "y"]  # a's x (t=5), b's y (t=20)
        assert validation["item_id"].tolist() == ["w"]  # a's tie at t=3 resolved by frame order
        assert sorted(zip(train["user_id"], train["item_id"], strict=True)) == [
            ("a", "y"),
            ("a", "z"),
            ("b", "x"),
            ("c", "x"),
        ]

    def test_datetime_timestamps(self):
        frame = interactions({"a": 4})
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s")
        _, validation, test = leave_one_out(frame)
        assert (validation["item_id"].tolist(), test["item_id"].tolist()) == (["i2"], ["i3"])


class TestTemporalSplit:
    FRAME = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "item_id": ["x", "y", "x", "z"],
            "rating": [3, 4, 5, 1],
            "timestamp": [0, 5 * DAY, 8 * DAY, 10 * DAY],
        }
    )

    def test_last_days_are_test(self):
        # Cut-off 10 - 3 = day 7: days 8 and 10 are test.
        train, test = temporal_split(self.FRAME, test_days=3)
        assert test["timestamp"].tolist() == [8 * DAY, 10 * DAY]
        assert_partition(self.FRAME, (train, test))

    def test_boundary_row_stays_in_train(self):
        # Cut-off 10 - 2 = day 8: the day-8 row is not strictly after it.
        _, test = temporal_split(self.FRAME, test_days=2)
        assert test["timestamp"].tolist() == [10 * DAY]

    def test_empty_side_or_bad_days_raise(self):
        with pytest.raises(ValueError, match="gives 0 train"):
            temporal_split(self.FRAME, test_days=20)
        with pytest.raises(ValueError, match="test_days must be > 0"):
            temporal_split(self.FRAME, test_days=0)
