"""SASRec: sequence-aware retrieval with causal self-attention (Kang & McAuley, ICDM 2018).

Each user's items, in time order, form a sequence. The network embeds the last
``max_length`` items (item embedding scaled by ``sqrt(d)`` plus a learned position
embedding), runs ``num_blocks`` self-attention blocks in which a position attends only
to itself and earlier positions (``causal_attention_mask``), and reads at every position
a representation of "what comes next"; the score of item ``i`` is its dot product with
the item's own input embedding (shared input/output embeddings, as in the paper).

Training predicts every next item of every sequence, either with a full softmax over
the catalogue or a sampled softmax (``num_negatives`` items drawn uniformly per batch,
accidental hits removed). Sequences longer than ``max_length + 1`` are cut into windows
so that every transition is a training target exactly once.

Layout: sequences are left-padded with item index 0 (the padding row of the embedding),
so the newest item is always at the last position. Real items have indices
``1..n_items`` (``SASRec.item_ids[index - 1]``).

``fit_sasrec(interactions, config)`` trains on an interactions frame (``user_id,
item_id, timestamp``) and returns a ``SASRec`` whose ``score_all(user_ids, item_ids)``
gives the ``[users, items]`` matrix ``evaluation.ranking_metrics`` takes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras as keras

from models.inputs.batches import array_batches
from models.inputs.features import require_columns
from models.retrieval.two_tower import catalogue_scores, chronological_order

PADDING_INDEX = 0
SCORING_BATCH = 1024


@dataclass(frozen=True)
class SASRecConfig:
    """Architecture and training settings of SASRec.

    Attributes:
        max_length: Positions the network sees: a user's newest ``max_length`` items.
        embedding_dim: Width of item / position embeddings and of every block.
        num_blocks: Self-attention blocks.
        num_heads: Attention heads (must divide ``embedding_dim``).
        dropout: Dropout rate on embeddings, attention weights and feed-forward layers.
        num_negatives: ``None``: full softmax over every item; otherwise a sampled
            softmax against this many uniformly drawn items per batch.
        learning_rate: Adam learning rate.
        batch_size: Sequence windows per step.
        epochs: Passes over the windows.
        seed: Seed for initialisation, dropout, negative sampling and batch order.
    """

    max_length: int = 50
    embedding_dim: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    dropout: float = 0.2
    num_negatives: int | None = None
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 20
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("max_length", "embedding_dim", "num_blocks", "num_heads", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"SASRecConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.embedding_dim % self.num_heads:
            raise ValueError(
                f"SASRecConfig.num_heads ({self.num_heads}) must divide embedding_dim ({self.embedding_dim})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.num_negatives is not None and self.num_negatives < 1:
            raise ValueError(f"SASRecConfig.num_negatives must be >= 1 or None, got {self.num_negatives}")
        if self.learning_rate <= 0:
            raise ValueError(f"SASRecConfig.learning_rate must be > 0, got {self.learning_rate}")


def causal_attention_mask(sequences: tf.Tensor) -> tf.Tensor:
    """Which positions each position may attend to.

    Args:
        sequences: ``[B, T]`` item indices, 0 for padding.

    Returns:
        ``[B, T, T]`` bool: ``mask[b, t, s]`` is true when ``s <= t`` (no look-ahead) and
        position ``s`` holds an item (no attention to padding).
    """
    length = tf.shape(sequences)[1]
    causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
    has_item = tf.not_equal(sequences, PADDING_INDEX)
    return tf.logical_and(causal[tf.newaxis], has_item[:, tf.newaxis, :])


class SelfAttentionBlock(keras.layers.Layer):
    """One SASRec block: causal multi-head self-attention, then a point-wise feed-forward.

    As in the authors' code: ``q = LN(x)``; ``h = q + Attention(q, x, x)``;
    ``out = LN(h) + FFN(LN(h))`` with ``FFN = Dense(ReLU) -> Dense``, dropout after each.

    Args:
        embedding_dim: Model width.
        num_heads: Attention heads.
        dropout: Dropout rate.

    Call: ``block(x [B, T, D], mask [B, T, T], training) -> [B, T, D]``.
    """

    def __init__(self, embedding_dim: int, num_heads: int, dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-8, name="attention_norm")
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=embedding_dim // num_heads, dropout=dropout, name="attention"
        )
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-8, name="feed_forward_norm")
        self.feed_forward_in = keras.layers.Dense(embedding_dim, activation="relu", name="feed_forward_in")
        self.feed_forward_out = keras.layers.Dense(embedding_dim, name="feed_forward_out")
        self.dropout = keras.layers.Dropout(dropout)

    def call(self, inputs: tf.Tensor, mask: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        query = self.attention_norm(inputs)
        attended = query + self.attention(query, inputs, inputs, attention_mask=mask, training=training)
        normalized = self.feed_forward_norm(attended)
        hidden = self.dropout(self.feed_forward_in(normalized), training=training)
        return normalized + self.dropout(self.feed_forward_out(hidden), training=training)


class SASRecNetwork(keras.Model):
    """The SASRec network: item sequences in, next-item representations out.

    Args:
        n_items: Catalogue size; item indices are ``1..n_items``, 0 is padding.
        config: Architecture settings.

    Call: ``network(sequences [B, T] int, training) -> [B, T, D]``; rows at padding
    positions are zero.
    """

    def __init__(self, n_items: int, config: SASRecConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if n_items < 1:
            raise ValueError(f"SASRec needs at least one item, got {n_items}")
        self.n_items = n_items
        self.config = config
        self.item_embedding = keras.layers.Embedding(n_items + 1, config.embedding_dim, name="item_embedding")
        self.position_embedding = keras.layers.Embedding(
            config.max_length, config.embedding_dim, name="position_embedding"
        )
        self.embedding_dropout = keras.layers.Dropout(config.dropout)
        self.blocks = [
            SelfAttentionBlock(config.embedding_dim, config.num_heads, config.dropout, name=f"block_{i}")
            for i in range(config.num_blocks)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-8, name="final_norm")

    def call(self, sequences: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        sequences = tf.cast(sequences, tf.int32)
        has_item = tf.cast(tf.not_equal(sequences, PADDING_INDEX), tf.float32)[:, :, tf.newaxis]
        positions = tf.range(tf.shape(sequences)[1])
        x = self.item_embedding(sequences) * math.sqrt(self.config.embedding_dim)
        x = self.embedding_dropout(x + self.position_embedding(positions)[tf.newaxis], training=training) * has_item
        mask = causal_attention_mask(sequences)
        for block in self.blocks:
            x = block(x, mask, training=training) * has_item
        return self.final_norm(x) * has_item

    def item_vectors(self) -> tf.Tensor:
        """``[n_items, D]`` output embeddings of items ``1..n_items`` (the input embeddings)."""
        return self.item_embedding.embeddings[1:]


def _softmax_loss(network: SASRecNetwork, hidden: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy of the next items over the non-padding positions (full softmax)."""
    logits = tf.einsum("btd,nd->btn", hidden, network.item_vectors())
    valid = tf.not_equal(targets, PADDING_INDEX)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(targets - 1, 0), logits)
    return tf.reduce_sum(tf.where(valid, losses, 0.0)) / tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)


def _sampled_softmax_loss(
    network: SASRecNetwork, hidden: tf.Tensor, targets: tf.Tensor, negatives: tf.Tensor
) -> tf.Tensor:
    """Mean cross-entropy of each next item against shared uniform negatives.

    Negatives equal to the target (accidental hits) are masked out. Uniform sampling
    needs no log-Q correction: it shifts every logit by the same constant.
    """
    valid = tf.not_equal(targets, PADDING_INDEX)
    target_vectors = network.item_embedding(targets)  # [B, T, D]
    positive = tf.reduce_sum(hidden * target_vectors, axis=-1, keepdims=True)  # [B, T, 1]
    negative = tf.einsum("btd,sd->bts", hidden, network.item_embedding(negatives))  # [B, T, S]
    hit = tf.equal(targets[:, :, tf.newaxis], negatives[tf.newaxis, tf.newaxis, :])
    negative = tf.where(hit, tf.constant(-1e9, negative.dtype), negative)
    logits = tf.concat([positive, negative], axis=-1)
    losses = -tf.nn.log_softmax(logits)[:, :, 0]
    return tf.reduce_sum(tf.where(valid, losses, 0.0)) / tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)


def training_windows(sequences: Sequence[np.ndarray], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut index sequences into left-padded (input, next-item target) windows.

    A sequence ``s`` of length ``L`` gives windows ``s[e - max_length - 1 : e]`` for
    ``e = L, L - max_length, ...`` (while ``e >= 2``), each split into input ``w[:-1]``
    and target ``w[1:]``; every transition ``s[j] -> s[j + 1]`` is a target exactly once,
    and positions whose input is padding have target 0 (no loss).

    Args:
        sequences: Per user, item indices (>= 1) in time order.
        max_length: Window input length T.

    Returns:
        ``(inputs, targets)``, each ``[windows, T]`` int32, left-padded with 0.
    """
    inputs, targets = [], []
    for sequence in sequences:
        for end in range(len(sequence), 1, -max_length):
            window = sequence[max(0, end - max_length - 1) : end]
            padded = np.zeros(max_length + 1, dtype=np.int32)
            padded[max_length + 1 - len(window) :] = window
            inputs.append(padded[:-1])
            targets.append(padded[1:])
    if not inputs:
        raise ValueError("no sequence has two or more items: there is no next item to learn from")
    inputs, targets = np.stack(inputs), np.stack(targets)
    targets[inputs == PADDING_INDEX] = PADDING_INDEX  # a sequence's first item has no predecessor
    return inputs, targets


def latest_window(sequence: np.ndarray, max_length: int) -> np.ndarray:
    """The newest ``max_length`` indices of ``sequence``, left-padded with 0: ``[max_length]`` int32."""
    window = np.zeros(max_length, dtype=np.int32)
    tail = np.asarray(sequence, dtype=np.int32)[-max_length:]
    if tail.size:
        window[max_length - tail.size :] = tail
    return window


@dataclass
class SASRec:
    """A trained SASRec network with its item catalogue and the users' sequences.

    Attributes:
        network: The trained ``SASRecNetwork``.
        config: Its settings.
        item_ids: ``str`` item ids; item index ``i`` (1-based) is ``item_ids[i - 1]``.
        sequences: User id (``str``) -> item indices in time order (the training data).
        loss: Mean training loss per epoch.
        examples: Training interactions.
        seconds: Wall-clock training time (including any ``on_epoch_end`` calls).
        stop_training: Set it in ``on_epoch_end`` to end training after that epoch (as
            Keras' ``Model.stop_training``).
    """

    network: SASRecNetwork
    config: SASRecConfig
    item_ids: np.ndarray
    sequences: dict[str, np.ndarray]
    loss: list[float]
    examples: int
    seconds: float
    stop_training: bool = False

    def user_windows(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        """``[len(user_ids), max_length]`` newest windows; unknown users get all padding."""
        windows = np.zeros((len(user_ids), self.config.max_length), dtype=np.int32)
        for row, user in enumerate(np.asarray(user_ids).astype(str)):
            if user in self.sequences:
                windows[row] = latest_window(self.sequences[user], self.config.max_length)
        return windows

    def score_all(self, user_ids: Sequence | np.ndarray, item_ids: Sequence | np.ndarray | None = None) -> np.ndarray:
        """Next-item scores of every item for each user, from their newest ``max_length`` items.

        Args:
            user_ids: Users (rows). A user without training items is scored from an empty
                sequence (the same scores for every such user).
            item_ids: Catalogue (columns); ``item_ids`` of the model when ``None``. Items
                the model never saw rank below every known item.

        Returns:
            ``[len(user_ids), len(item_ids)]`` float scores (logits), higher is better.
        """
        windows = self.user_windows(user_ids)
        vectors = self.network.item_vectors()
        blocks = [
            (
                self.network(windows[start : start + SCORING_BATCH], training=False)[:, -1, :] @ tf.transpose(vectors)
            ).numpy()
            for start in range(0, len(windows), SCORING_BATCH)
        ]
        scores = np.concatenate(blocks) if blocks else np.zeros((0, len(self.item_ids)), np.float32)
        return scores if item_ids is None else catalogue_scores(scores, self.item_ids, item_ids)


def user_sequences(
    interactions: pd.DataFrame,
    user_column: str = "user_id",
    item_column: str = "item_id",
    time_column: str = "timestamp",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each user's items in time order, as 1-based indices into a sorted catalogue.

    Returns:
        ``(item_ids, sequences)``: sorted distinct ``str`` item ids, and user id (``str``)
        -> int32 indices (``item_ids[index - 1]``), oldest first; equal times keep the
        frame order.
    """
    order = chronological_order(interactions, user_column, time_column)
    users = interactions[user_column].astype(str).to_numpy()[order]
    items = interactions[item_column].astype(str).to_numpy()[order]
    item_ids, codes = np.unique(items, return_inverse=True)
    indices = (codes + 1).astype(np.int32)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    return item_ids, {users[s]: indices[s:e] for s, e in zip(starts, ends, strict=True)}


def fit_sasrec(
    interactions: pd.DataFrame,
    config: SASRecConfig = SASRecConfig(),
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
    time_column: str = "timestamp",
    on_epoch_end: Callable[[int, SASRec], None] | None = None,
) -> SASRec:
    """Train SASRec on every user's chronologically ordered items.

    Args:
        interactions: One row per interaction with the user, item and time columns.
        config: Architecture and training settings.
        on_epoch_end: Called after every epoch with the 1-based epoch and the model as
            trained so far (e.g. to follow validation metrics per epoch); setting the
            model's ``stop_training`` ends training after that epoch.

    Returns:
        The trained ``SASRec``.

    Raises:
        ValueError: on an empty frame, a missing column, null ids, or no user with two
            or more interactions.
    """
    require_columns(interactions, (user_column, item_column, time_column), "interactions frame")
    if interactions.empty:
        raise ValueError("cannot train SASRec on an empty interactions frame")
    nulls = interactions[[user_column, item_column, time_column]].isna().sum()
    if nulls.any():
        raise ValueError(f"interactions hold null values: {nulls[nulls > 0].to_dict()}")
    item_ids, sequences = user_sequences(interactions, user_column, item_column, time_column)
    inputs, targets = training_windows(list(sequences.values()), config.max_length)

    keras.utils.set_random_seed(config.seed)
    network = SASRecNetwork(len(item_ids), config, name="sasrec")
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    negatives_per_batch = config.num_negatives

    @tf.function
    def step(batch_inputs: tf.Tensor, batch_targets: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            hidden = network(batch_inputs, training=True)
            if negatives_per_batch is None:
                loss = _softmax_loss(network, hidden, batch_targets)
            else:
                negatives = tf.random.uniform([negatives_per_batch], 1, network.n_items + 1, dtype=tf.int32)
                loss = _sampled_softmax_loss(network, hidden, batch_targets, negatives)
        variables = network.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    dataset = array_batches((inputs, targets), config.batch_size, config.seed)
    model = SASRec(network, config, item_ids, sequences, loss=[], examples=len(interactions), seconds=0.0)
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.loss.append(float(np.mean([float(step(x, y)) for x, y in dataset])))
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
        if model.stop_training:
            break
    model.seconds = time.perf_counter() - started
    return model
