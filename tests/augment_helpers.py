"""Run an augmentation op over many seeds, the way training runs it: inside tf.data.map."""

import numpy as np
import tensorflow as tf

from simclr_tf.augment import seeds


def draw_many(fn, count: int, base_seed: int = 0) -> np.ndarray:
    """Stacks fn(seed_k) for k < count, computed in a tf.data.map (graph mode)."""
    base = seeds.as_seed(base_seed)
    dataset = tf.data.Dataset.range(count).map(lambda k: fn(seeds.fold_in(base, k)))
    return np.stack([np.asarray(x) for x in dataset.batch(256).unbatch()])


def draw_many_eager(fn, count: int, base_seed: int = 0) -> np.ndarray:
    """Same draws as draw_many, computed eagerly op by op."""
    base = seeds.as_seed(base_seed)
    return np.stack([np.asarray(fn(seeds.fold_in(base, k))) for k in range(count)])


def colourful_image(size: int = 32, seed: int = 0) -> tf.Tensor:
    """A float32 image with distinct, saturated colours and no symmetry."""
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0.1, 0.9, (size, size, 3)), tf.float32)
