"""tf.data pipelines: a source's examples -> batches of augmented views or eval images.

Pretraining: each epoch is shuffled with its own seed and every example's views
are seeded by (seed, epoch, example index), so the same run configuration always
produces the same batches, whatever the number of replicas reading it.
"""

import tensorflow as tf

from simclr_tf.augment import AugmentConfig, as_seed, build_pipeline, make_views, preprocess_for_eval, to_unit_float
from simclr_tf.data import Source

AUTOTUNE = tf.data.AUTOTUNE


def _deterministic_options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def pretrain_dataset(
    source: Source,
    augment_config: AugmentConfig,
    batch_size: int,
    *,
    seed: int = 0,
    num_views: int = 2,
    shuffle_buffer: int = 10_000,
    cache: bool = False,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Endless batches of `(views [batch, num_views, size, size, 3] float32, labels [batch])`.

    `batch_size` is per input pipeline (per replica under distribute_datasets_from_function).
    `cache` keeps decoded images in memory: right for small datasets, whose decoding
    would otherwise be repeated every epoch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    pipeline = build_pipeline(augment_config)
    base_seed = as_seed(seed)
    examples = source.make_dataset(input_context)
    if cache:
        examples = examples.cache()

    examples_per_epoch = examples.cardinality()
    if examples_per_epoch < 0:
        raise ValueError(f"{source.name}: the number of examples per input pipeline must be known")

    def augment(position, example):
        index, image, label = example
        epoch = position // examples_per_epoch
        return make_views(pipeline, image, base_seed, epoch, index, num_views), label

    # A fixed int seed makes tf.data's per-epoch reshuffles the same on every run.
    dataset = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat().enumerate()
    dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(AUTOTUNE).with_options(_deterministic_options())


def eval_dataset(
    source: Source,
    image_size: int,
    batch_size: int,
    *,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """One pass of `(images [batch, size, size, 3] float32 in [0, 1], labels [batch])`, in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")

    def preprocess(index, image, label):
        del index
        return preprocess_for_eval(to_unit_float(image), image_size), label

    dataset = source.make_dataset(input_context).map(preprocess, num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(AUTOTUNE).with_options(_deterministic_options())
