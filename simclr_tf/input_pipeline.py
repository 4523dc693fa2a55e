"""tf.data pipelines: a source's examples -> batches of augmented views or eval images.

Pretraining: epoch e is shuffled with a seed derived from (seed, e) alone and
every example's views are seeded by (seed, epoch, example index), so the same run
configuration always produces the same batches, whatever the number of replicas
reading it, and a resumed run can start at any position without replaying the
epochs before it.
"""

import tensorflow as tf

from simclr_tf.augment import AugmentConfig, as_seed, build_pipeline, make_views, preprocess_for_eval, to_unit_float
from simclr_tf.augment.seeds import fold_in
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
    start_example: int = 0,
) -> tf.data.Dataset:
    """Endless batches of `(views [batch, num_views, size, size, 3] float32, labels [batch])`.

    `batch_size` is per input pipeline (per replica under distribute_datasets_from_function).
    `cache` keeps decoded images in memory: right for small datasets, whose decoding
    would otherwise be repeated every epoch. `start_example` is the number of this
    pipeline's examples already consumed (a resumed run): whole epochs are skipped
    without reading them, the rest of the current epoch is read but not augmented.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if start_example < 0:
        raise ValueError(f"start_example must be >= 0, got {start_example!r}")
    pipeline = build_pipeline(augment_config)
    base_seed = as_seed(seed)
    examples = source.make_dataset(input_context)
    if cache:
        examples = examples.cache()

    examples_per_epoch = int(examples.cardinality())
    if examples_per_epoch < 1:
        raise ValueError(f"{source.name}: the number of examples per input pipeline must be known and > 0")
    start_epoch, start_in_epoch = divmod(start_example, examples_per_epoch)

    def shuffled_epoch(epoch):
        # The order must depend on (seed, epoch) only. With a global seed set, TF
        # would mix it into the op seed, and for a global seed of 0 its seed
        # helper even fails on a tensor op seed; this function graph ignores it.
        tf.compat.v1.get_default_graph().seed = None
        order_seed = fold_in(base_seed, epoch)[0]
        epoch_examples = examples.shuffle(shuffle_buffer, seed=order_seed, reshuffle_each_iteration=False)
        return epoch_examples.map(lambda index, image, label: (epoch, index, image, label))

    def augment(epoch, index, image, label):
        return make_views(pipeline, image, base_seed, epoch, index, num_views), label

    dataset = tf.data.Dataset.range(start_epoch, 2**62).flat_map(shuffled_epoch).skip(start_in_epoch)
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
