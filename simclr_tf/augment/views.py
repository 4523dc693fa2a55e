"""Several augmented views of one example, each from its own stateless seed."""

import tensorflow as tf

from simclr_tf.augment import seeds
from simclr_tf.augment.compose import AugmentOp


def to_unit_float(image: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float images are taken as already in [0, 1]."""
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    return tf.cast(image, tf.float32)


def make_views(
    pipeline: AugmentOp,
    image: tf.Tensor,
    base_seed: tf.Tensor,
    epoch: tf.Tensor | int,
    index: tf.Tensor | int,
    num_views: int = 2,
) -> tf.Tensor:
    """Returns [num_views, size, size, 3] float32 views of `image`.

    View v of example `index` in `epoch` is always the same image for the same
    `base_seed`, whatever the sharding or batching; views of one example, and
    examples, draw independently.
    """
    image = to_unit_float(image)
    return tf.stack(
        [pipeline(image, seeds.view_seed(base_seed, epoch, index, v)) for v in range(num_views)]
    )
