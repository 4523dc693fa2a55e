"""One distributed pass over an eval split: model outputs and labels of every example, on the host.

Every replica must run the same number of steps with the same static batch shape
(TPUs need it, and a worker that runs out early would hang the others' collectives),
so each input pipeline is padded with blank images to a whole number of global
batches, flagged as padding and dropped on the host.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import tensorflow as tf

from simclr_tf.augment import preprocess_for_eval, to_unit_float
from simclr_tf.data import Source
from simclr_tf.errors import EvaluationError

# Whether an example is the split's or padding, as int32, which every collective gathers (bool is not).
REAL, PADDING = 1, 0


def eval_steps_for(num_examples: int, global_batch_size: int, num_replicas: int) -> int:
    """Steps after which every input pipeline has yielded all of its shard.

    With P pipelines (1 <= P <= replicas) the largest shard has ceil(N / P) examples
    and a pipeline reads B / P per step. Taking P = replicas never gives fewer steps
    than needed for any P, and at most one more, so the count does not depend on how
    the strategy lays out its pipelines.
    """
    per_replica = global_batch_size // num_replicas
    return math.ceil(math.ceil(num_examples / num_replicas) / per_replica)


def padded_eval_dataset(source: Source, image_size: int, global_batch_size: int, steps: int,
                        input_context: tf.distribute.InputContext) -> tf.data.Dataset:
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    per_pipeline_batch = global_batch_size // input_context.num_input_pipelines

    def preprocess(index, image, label):
        del index
        return preprocess_for_eval(to_unit_float(image), image_size), label, tf.constant(REAL, tf.int32)

    images = source.make_dataset(input_context).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    label_spec = images.element_spec[1]  # A class, or a class vector (multi-label).
    padding = tf.data.Dataset.from_tensors((tf.zeros([image_size, image_size, 3], tf.float32),
                                            tf.zeros(label_spec.shape, label_spec.dtype),
                                            tf.constant(PADDING, tf.int32))).repeat()
    dataset = images.concatenate(padding).take(steps * per_pipeline_batch)
    return dataset.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def predict(
    strategy: tf.distribute.Strategy,
    output_fn: Callable[[tf.Tensor], dict[str, tf.Tensor]],
    source: Source,
    *,
    image_size: int,
    global_batch_size: int,
    max_steps: int = 0,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`output_fn(images)` over the split (or its first `max_steps` global batches), in
    replica order; returns ({name: [N, ...] numpy}, labels [N], or [N, classes] for a multi-label
    source) without the padding."""
    if not source.num_classes:
        raise EvaluationError(f"{source.name} has no labels: evaluation needs a labelled split "
                              f"(EvalConfig.eval_split)")
    steps = eval_steps_for(source.num_examples, global_batch_size, strategy.num_replicas_in_sync)
    if max_steps:
        steps = min(steps, max_steps)
    dataset = strategy.distribute_datasets_from_function(
        lambda context: padded_eval_dataset(source, image_size, global_batch_size, steps, context)
    )

    @tf.function
    def predict_step(iterator):
        def replica_fn(images, labels, real):
            return output_fn(images), labels, real

        outputs, labels, real = strategy.run(replica_fn, next(iterator))
        gathered = {name: strategy.gather(value, axis=0) for name, value in outputs.items()}
        return gathered, strategy.gather(labels, axis=0), strategy.gather(real, axis=0)

    iterator = iter(dataset)
    chunks: dict[str, list[np.ndarray]] = {}
    all_labels = []
    for _ in range(steps):
        outputs, labels, real = predict_step(iterator)
        keep = real.numpy() == REAL
        all_labels.append(labels.numpy()[keep])
        for name, value in outputs.items():
            chunks.setdefault(name, []).append(value.numpy()[keep])
    return {name: np.concatenate(parts) for name, parts in chunks.items()}, np.concatenate(all_labels)
