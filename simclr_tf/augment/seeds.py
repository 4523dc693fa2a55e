"""Stateless seeds: every random draw is a pure function of (seed, example, view).

Stateless RNG (rather than tf.random.Generator or Keras SeedGenerator) is what
makes a view reproducible from its seed alone, independent of how many input
pipelines, replicas or threads produced it, and what lets a resumed run replay
exactly the draws an uninterrupted run would have made.
"""

import tensorflow as tf


def as_seed(seed: int | tf.Tensor) -> tf.Tensor:
    """A Python int or a shape-[2] tensor as the shape-[2] int64 seed stateless ops take."""
    if isinstance(seed, int):
        return tf.constant([seed & 0x7FFFFFFF, seed >> 31], dtype=tf.int64)
    seed = tf.convert_to_tensor(seed)
    seed.shape.assert_is_compatible_with([2])
    return tf.cast(seed, tf.int64)


def fold_in(seed: tf.Tensor, data: int | tf.Tensor) -> tf.Tensor:
    """A new seed that depends on `seed` and the integer `data` (e.g. an example index)."""
    return tf.random.experimental.stateless_fold_in(
        seed, tf.cast(data, tf.int64), alg="philox"
    )


def split(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
    """`num` independent seeds derived from `seed`, one per sub-operation."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, num, alg="philox"))


def view_seed(base_seed: tf.Tensor, epoch: tf.Tensor, index: tf.Tensor, view: int) -> tf.Tensor:
    """The seed of one view of one example in one epoch.

    Depends on the example's index in the whole source, never on its position in a
    shard or batch, so 1 replica and N replicas draw the same views for it.
    """
    return fold_in(fold_in(fold_in(base_seed, epoch), index), view)


def uniform(seed: tf.Tensor, low: float | tf.Tensor = 0.0, high: float | tf.Tensor = 1.0,
            shape: tuple[int, ...] = ()) -> tf.Tensor:
    """Stateless U(low, high) float32 draw."""
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high, dtype=tf.float32)


def bernoulli(seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Stateless boolean draw that is True with `probability`."""
    return uniform(seed) < probability
