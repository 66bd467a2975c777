"""SASRec: the causal mask, windows, causality of the network, and learning a sequence
world where item i is always followed by item i + 1."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from models.retrieval.sequence import (
    SASRecConfig,
    SASRecNetwork,
    causal_attention_mask,
    fit_sasrec,
    latest_window,
    training_windows,
    user_sequences,
)

N_ITEMS = 30


def successor_world(n_users: int = 150, seed: int = 0) -> pd.DataFrame:
    """Each user starts at a random item and walks i -> i + 1 (mod N_ITEMS) for 8-14 steps."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        start, length = rng.integers(N_ITEMS), rng.integers(8, 15)
        for step in range(length):
            rows.append((f"u{user}", f"i{(start + step) % N_ITEMS:02d}", 1_000 * user + step))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return frame.sample(frac=1.0, random_state=seed)  # time order must come from timestamps


class TestMask:
    def test_hand_example(self):
        mask = causal_attention_mask(tf.constant([[0, 3, 5], [2, 0, 4]])).numpy()
        np.testing.assert_array_equal(mask[0], [[False, False, False], [False, True, False], [False, True, True]])
        # Padding in the middle is never attended to either.
        np.testing.assert_array_equal(mask[1], [[True, False, False], [True, False, False], [True, False, True]])

    def test_outputs_do_not_look_ahead_and_padding_rows_are_zero(self):
        network = SASRecNetwork(10, SASRecConfig(max_length=6, embedding_dim=8, num_blocks=2, num_heads=2, dropout=0.0))
        base = tf.constant([[0, 0, 1, 2, 3, 4]])
        changed_future = tf.constant([[0, 0, 1, 2, 9, 7]])
        first, second = network(base).numpy(), network(changed_future).numpy()
        assert first.shape == (1, 6, 8)
        np.testing.assert_allclose(first[0, :4], second[0, :4], atol=1e-6)  # positions before the change
        assert not np.allclose(first[0, 4:], second[0, 4:])
        np.testing.assert_array_equal(first[0, :2], np.zeros((2, 8)))


class TestWindows:
    def test_every_transition_is_a_target_once(self):
        inputs, targets = training_windows([np.arange(1, 8)], max_length=3)
        np.testing.assert_array_equal(inputs, [[4, 5, 6], [1, 2, 3]])
        np.testing.assert_array_equal(targets, [[5, 6, 7], [2, 3, 4]])

    def test_short_sequences_are_left_padded_and_single_items_skipped(self):
        inputs, targets = training_windows([np.array([4]), np.array([1, 2])], max_length=3)
        np.testing.assert_array_equal(inputs, [[0, 0, 1]])
        np.testing.assert_array_equal(targets, [[0, 0, 2]])

    def test_nothing_to_learn_is_an_error(self):
        with pytest.raises(ValueError, match="no sequence has two or more items"):
            training_windows([np.array([3]), np.array([5])], max_length=4)

    def test_latest_window_keeps_the_newest_items(self):
        np.testing.assert_array_equal(latest_window(np.array([1, 2, 3, 4, 5]), 3), [3, 4, 5])
        np.testing.assert_array_equal(latest_window(np.array([7]), 3), [0, 0, 7])

    def test_user_sequences_follow_timestamps(self):
        frame = pd.DataFrame({"user_id": [1, 1, 2, 1], "item_id": ["b", "a", "c", "c"], "timestamp": [2, 1, 5, 3]})
        item_ids, sequences = user_sequences(frame)
        np.testing.assert_array_equal(item_ids, ["a", "b", "c"])
        np.testing.assert_array_equal(sequences["1"], [1, 2, 3])
        np.testing.assert_array_equal(sequences["2"], [3])


@pytest.mark.parametrize("num_negatives", [None, 8], ids=["full_softmax", "sampled_softmax"])
def test_learns_that_item_i_is_followed_by_item_i_plus_1(num_negatives):
    world = successor_world()
    test = world.sort_values("timestamp").groupby("user_id").tail(1)
    train = world.drop(test.index)
    config = SASRecConfig(
        max_length=10, embedding_dim=32, num_blocks=1, num_heads=1, dropout=0.1,
        num_negatives=num_negatives, learning_rate=5e-3, batch_size=32, epochs=15,
    )  # fmt: skip
    model = fit_sasrec(train, config)
    assert model.loss[-1] < model.loss[0]
    scores = model.score_all(test["user_id"], [f"i{i:02d}" for i in range(N_ITEMS)])
    predicted = np.argmax(scores, axis=1)
    actual = test["item_id"].str[1:].astype(int).to_numpy()
    assert np.mean(predicted == actual) > 0.9  # chance: 1 / 30


def test_score_all_covers_unknown_users_and_items():
    world = successor_world(n_users=20)
    epochs_seen = []
    model = fit_sasrec(
        world,
        SASRecConfig(max_length=5, embedding_dim=8, num_blocks=1, epochs=2),
        on_epoch_end=lambda epoch, fitted: epochs_seen.append((epoch, len(fitted.loss))),
    )
    assert epochs_seen == [(1, 1), (2, 2)]
    scores = model.score_all(["u0", "stranger"], ["i00", "never_seen"])
    assert scores.shape == (2, 2)
    assert (scores[:, 1] < scores[:, 0]).all()  # an item the model never saw ranks last
    assert np.isfinite(scores).all()
    assert model.score_all(["u0"]).shape == (1, N_ITEMS)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"embedding_dim": 10, "num_heads": 3}, r"num_heads \(3\) must divide embedding_dim \(10\)"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"num_negatives": 0}, "num_negatives must be >= 1 or None"),
        ({"max_length": 0}, "max_length must be >= 1"),
    ],
)
def test_bad_config_is_named(settings, message):
    with pytest.raises(ValueError, match=message):
        SASRecConfig(**settings)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['timestamp'\]"):
        fit_sasrec(pd.DataFrame({"user_id": ["u"], "item_id": ["i"]}))
