"""Offline linear evaluation: a softmax classifier on a frozen encoder's features.

SimCLR (arXiv:2002.05709) §4.2 linear evaluation: freeze the encoder, extract h for a labelled train and
eval split once, train one linear layer on the train features, and report
top-1/top-5 on the eval features. Features live in memory as numpy arrays, so
the whole optimisation runs inside one tf.function (no per-step Python).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from simclr_tf.arg_checks import fail, is_int

# Features whose train std is at most this are only centred, not scaled: dividing
# by ~0 would blow up any eval-time deviation of a feature constant on train.
STANDARDIZE_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class LinearEvalConfig:
    """How to train the linear classifier.

    Adam at 1e-3 (not the paper's SGD + Nesterov with a tuned lr) because on
    standardised features it converges in a few epochs with no per-dataset lr
    search; the problem is convex, so the optimiser changes speed, not the optimum.
    `weight_decay` multiplies tf.nn.l2_loss(kernel) = sum(W^2)/2, the reference's scale.
    """

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    standardize: bool = True
    seed: int = 0

    def __post_init__(self):
        if not is_int(self.epochs) or self.epochs < 1:
            fail("epochs", self.epochs, "must be an int >= 1")
        if not is_int(self.batch_size) or self.batch_size < 1:
            fail("batch_size", self.batch_size, "must be an int >= 1")
        if not self.learning_rate > 0:
            fail("learning_rate", self.learning_rate, "must be > 0")
        if not self.weight_decay >= 0:
            fail("weight_decay", self.weight_decay, "must be >= 0")
        if not isinstance(self.standardize, bool):
            fail("standardize", self.standardize, "must be a bool")
        if not is_int(self.seed):
            fail("seed", self.seed, "must be an int")


class LinearEvalResult(NamedTuple):
    """Accuracies in [0, 1] on the eval features; `seconds` is wall time of `linear_eval`."""

    top1: float
    top5: float
    num_train: int
    num_eval: int
    feature_dim: int
    seconds: float

    def as_dict(self) -> dict:
        """Plain Python scalars (numpy scalars are not JSON-serialisable), ready for json.dump."""
        floats = ("top1", "top5", "seconds")
        return {k: float(v) if k in floats else int(v) for k, v in self._asdict().items()}


def extract_features(
    feature_fn: Callable[[tf.Tensor], tf.Tensor],
    dataset: tf.data.Dataset,
    *,
    max_batches: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs `feature_fn` over (images, labels) batches; returns float32 [N, D] and int64 [N].

    `feature_fn` maps images to [batch, D], e.g. a tf.function around
    `lambda x: encoder(x, training=False)["final_avg_pool"]`. Order is kept, so
    pass an unshuffled dataset if rows must line up with something else.
    """
    if max_batches is not None:
        if not is_int(max_batches) or max_batches < 1:
            fail("max_batches", max_batches, "must be None or an int >= 1")
        dataset = dataset.take(max_batches)
    features, labels = [], []
    for images, batch_labels in dataset:
        batch_features = np.asarray(feature_fn(images), dtype=np.float32)
        batch_labels = np.asarray(batch_labels).astype(np.int64)
        if batch_features.ndim != 2 or batch_labels.shape != (batch_features.shape[0],):
            raise ValueError(
                "`feature_fn` must return [batch, D] matching labels [batch], got features "
                f"{batch_features.shape} and labels {batch_labels.shape}."
            )
        if (batch_labels < 0).any():
            raise ValueError(
                "`dataset` has negative labels (-1 marks unlabelled examples): the eval split "
                "has no labels, so linear evaluation cannot use it; pick a labelled split."
            )
        features.append(batch_features)
        labels.append(batch_labels)
    if not features:
        raise ValueError("`dataset` is empty: no batches to extract features from.")
    return np.concatenate(features), np.concatenate(labels)


def standardize(train_features: np.ndarray, eval_features: np.ndarray):
    """z-scores both splits (float32) with the TRAIN mean/std, as deployment would see them."""
    mean = train_features.mean(axis=0, dtype=np.float64)
    std = train_features.std(axis=0, dtype=np.float64)
    scale = np.where(std > STANDARDIZE_EPS, std, 1.0)
    return tuple(((f - mean) / scale).astype(np.float32) for f in (train_features, eval_features))


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k largest logits.

    Ties rank the lower class index first (a stable descending sort, so k=1 is
    exactly np.argmax). tf.math.in_top_k instead counts every tied class as in
    the top k, so a constant-logit classifier would score 100%. NaN rows are wrong.
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    true_logit = np.take_along_axis(logits, labels[:, None], axis=1)
    lower_index = np.arange(logits.shape[1])[None, :] < labels[:, None]
    rank = np.sum((logits > true_logit) | ((logits == true_logit) & lower_index), axis=1)
    correct = (rank < k) & ~np.isnan(logits).any(axis=1)
    return float(np.mean(correct))


def _validate(train_features, train_labels, eval_features, eval_labels, num_classes):
    if not is_int(num_classes) or num_classes < 2:
        fail("num_classes", num_classes, "must be an int >= 2")
    for split, features, labels in (("train", train_features, train_labels),
                                    ("eval", eval_features, eval_labels)):
        if features.ndim != 2 or features.shape[0] == 0:
            fail(f"{split}_features", features.shape, "must have shape [N > 0, D]")
        if labels.shape != (features.shape[0],):
            fail(f"{split}_labels", labels.shape, f"must have shape [{features.shape[0]}]")
        if not np.issubdtype(labels.dtype, np.integer):
            fail(f"{split}_labels", labels.dtype, "must be integers")
        if labels.min() < 0 or labels.max() >= num_classes:
            fail(f"{split}_labels", (labels.min(), labels.max()),
                  f"(min, max) must lie in [0, num_classes={num_classes})")
    if train_features.shape[1] != eval_features.shape[1]:
        fail("eval_features", eval_features.shape,
              f"must have the same feature dim as train_features {train_features.shape}")


def _train_classifier(features: np.ndarray, labels: np.ndarray, num_classes: int,
                      config: LinearEvalConfig) -> keras.layers.Dense:
    """Adam on mean cross-entropy (+ L2), epochs x shuffled minibatches, all in-graph."""
    classifier = keras.layers.Dense(
        num_classes, dtype="float32",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=config.seed),
    )
    classifier.build((None, features.shape[1]))
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    optimizer.build(classifier.trainable_variables)
    n, batch_size = features.shape[0], config.batch_size
    steps_per_epoch = -(-n // batch_size)

    @tf.function
    def train(x, y):
        for epoch in tf.range(config.epochs, dtype=tf.int64):
            # Stateless: the order depends on (seed, epoch) only, never on global state.
            seed = tf.stack([tf.constant(config.seed, tf.int64), epoch])
            order = tf.argsort(tf.random.stateless_uniform([n], seed=seed))
            for step in tf.range(steps_per_epoch, dtype=tf.int64):
                index = order[step * batch_size:(step + 1) * batch_size]
                x_batch, y_batch = tf.gather(x, index), tf.gather(y, index)
                with tf.GradientTape() as tape:
                    logits = classifier(x_batch)
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                        labels=y_batch, logits=logits))
                    loss += config.weight_decay * tf.nn.l2_loss(classifier.kernel)
                grads = tape.gradient(loss, classifier.trainable_variables)
                optimizer.apply_gradients(zip(grads, classifier.trainable_variables))

    train(tf.constant(features), tf.constant(labels, tf.int32))
    return classifier


def linear_eval(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    num_classes: int,
    config: LinearEvalConfig = LinearEvalConfig(),
) -> LinearEvalResult:
    """Trains a float32 linear softmax classifier on train features; top-1/top-5 on eval.

    Deterministic for `config.seed`: the initializer and the per-epoch shuffles
    are seeded explicitly (no keras.utils.set_random_seed, which is global).
    Top-5 is top-min(5, num_classes), so it is 1.0 when num_classes <= 5.
    """
    start = time.perf_counter()
    train_features = np.asarray(train_features, dtype=np.float32)
    eval_features = np.asarray(eval_features, dtype=np.float32)
    train_labels, eval_labels = np.asarray(train_labels), np.asarray(eval_labels)
    _validate(train_features, train_labels, eval_features, eval_labels, num_classes)
    if config.standardize:
        train_features, eval_features = standardize(train_features, eval_features)
    classifier = _train_classifier(train_features, train_labels, num_classes, config)
    kernel, bias = (np.asarray(v) for v in (classifier.kernel, classifier.bias))
    if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
        fail("learning_rate", config.learning_rate, "made training diverge (non-finite weights)")
    logits = eval_features @ kernel + bias
    return LinearEvalResult(
        top1=topk_accuracy(logits, eval_labels, 1),
        top5=topk_accuracy(logits, eval_labels, min(5, num_classes)),
        num_train=train_features.shape[0],
        num_eval=eval_features.shape[0],
        feature_dim=train_features.shape[1],
        seconds=time.perf_counter() - start,
    )
