"""One replica's training step with gradient caching: global batches larger than memory.

Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup", arXiv:2101.06983. NT-Xent (SimCLR, Chen et al. 2020, arXiv:2002.05709) needs
only the projections z of the whole global batch, and each chunk's backward pass needs
only dL/dz of its own projections. So a replica's batch runs in chunks of
`chunk_size` images (both views of each):

  (a) forward every chunk without a tape, keeping z;
  (b) NT-Xent over the global batch on those z (all-gathered across replicas, as in
      the plain step) and dL/dz of the local projections from a tape over z alone;
  (c) forward every chunk again under a tape and backpropagate sum(z * dL/dz), plus
      the online head's cross-entropy and (once) the weight decay, accumulating;
  (d) one optimizer update with the accumulated gradients.

Memory holds one chunk's activations at a time; the [local, global] logits of (b)
are the only thing that grows with the batch.

Batch norm sees one chunk at a time: each chunk is normalised with its own statistics
(ghost batch norm with a virtual batch of `chunk_size` images, 2 * chunk_size views;
with global BN, chunk i's statistics over every replica's chunk i). The moving
averages are updated once per chunk, in (c) only: (a) restores them. The gradients
therefore equal those of a plain step whose BN uses those ghost batches, and with one
chunk those of the plain step itself. Nothing else in the model is random (no
dropout), so both forward passes compute the same z.

The chunks are unrolled in Python, not a tf.while_loop: MirroredStrategy cannot
synchronise (global BN, moving averages) inside control flow. Control dependencies
chain the chunks so that TensorFlow runs them one after another instead of holding
several chunks' activations at once; the graph grows with the number of chunks.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from simclr_tf import distributed
from simclr_tf.losses import contrastive_metrics, nt_xent_loss
from simclr_tf.models import SimCLRModel
from simclr_tf.training.step import (
    StepConfig,
    for_optimizer,
    metrics_from_sums,
    nan_unless_finite,
    per_example_terms,
    views_to_batch,
    weight_decay_term,
)

PROJECTIONS = "proj_head_output"


def moving_statistics(model: SimCLRModel) -> list[keras.Variable]:
    """The moving means and variances a training-mode forward pass updates."""
    return [variable for layer in model._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
            for variable in (layer.moving_mean, layer.moving_variance)]


def _after(tensor: tf.Tensor, dependencies: list) -> tf.Tensor:
    """`tensor`, available only once `dependencies` are computed (orders the chunks)."""
    with tf.control_dependencies([d for d in dependencies if d is not None]):
        return tf.identity(tensor)


def _sum(gradients, more):
    if gradients is None:
        return list(more)
    return [g if m is None else (m if g is None else g + m) for g, m in zip(gradients, more)]


def make_cached_train_step(
    model: SimCLRModel,
    optimizer: keras.optimizers.Optimizer,
    config: StepConfig,
    num_chunks: int,
    teacher_logits: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]]:
    """Returns `step(views, labels) -> {metric: local float32 scalar}` for `strategy.run`.

    The same contract, arguments and metrics as `simclr_tf.training.step.make_train_step`;
    the replica's batch (its first axis) must split into `num_chunks` equal chunks. In
    fine-tuning and distillation every loss is a mean over examples, and the step is plain
    gradient accumulation over the chunks (steps (a) and (b) are skipped).
    """
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks!r}")
    if config.distills and teacher_logits is None:
        raise ValueError("distillation needs teacher_logits")
    variables = model.trainable_variables
    pretrain = config.train_mode == "pretrain"
    statistics = moving_statistics(model) if pretrain else []

    def step(views, labels):
        num_views = views.shape[1]
        chunk_views = tf.split(views, num_chunks, axis=0)
        chunk_labels = tf.split(labels, num_chunks, axis=0)
        local_views = tf.cast(tf.shape(views)[0] * num_views, tf.float32)
        metrics = {}
        loss = tf.constant(0.0)
        ready = []  # What the next chunk waits for.

        if pretrain:
            saved = [tf.identity(variable.value) for variable in statistics]
            projections = []
            for views_of_chunk in chunk_views:  # (a)
                images = _after(views_to_batch(views_of_chunk), ready)
                projections.append(tf.cast(model(images, training=True)[PROJECTIONS], tf.float32))
                ready = [projections[-1]]
            with tf.control_dependencies(ready):
                # (c)'s updates come after these: tf.function orders ops on one variable as written.
                for variable, value in zip(statistics, saved):
                    variable.assign(value)
            with tf.GradientTape() as tape:  # (b)
                tape.watch(projections)
                per_view = [tf.split(z, num_views, axis=0) for z in projections]
                contrast = nt_xent_loss(tf.concat([z[0] for z in per_view], axis=0),
                                        tf.concat([z[1] for z in per_view], axis=0),
                                        config.temperature, normalize=config.hidden_norm)
                scaled_contrast = distributed.scale_loss_for_replicas(contrast.loss)
            projection_gradients = tape.gradient(scaled_contrast, projections)
            loss += contrast.loss
            named = contrastive_metrics(contrast)
            metrics.update(contrast_loss=contrast.loss, contrast_acc=named["contrastive_accuracy"],
                           contrast_entropy=named["contrastive_entropy"])
            ready = projection_gradients

        example_loss, sums = tf.constant(0.0), {}
        gradients = None
        for index, (views_of_chunk, labels_of_chunk) in enumerate(zip(chunk_views, chunk_labels)):  # (c)
            images = _after(views_to_batch(views_of_chunk), ready)
            teacher = teacher_logits(images) if config.distills else None  # Frozen: outside the tape.
            with tf.GradientTape() as tape:
                outputs = model(images, training=True)
                surrogate = tf.constant(0.0)
                if pretrain:
                    z = tf.cast(outputs[PROJECTIONS], tf.float32)
                    surrogate += tf.reduce_sum(z * tf.stop_gradient(projection_gradients[index]))
                if config.supervised or config.distills:
                    example_losses, chunk_sums = per_example_terms(outputs, labels_of_chunk, num_views, config,
                                                                   teacher)
                    chunk_loss = tf.reduce_sum(example_losses) / local_views
                    example_loss += chunk_loss
                    sums = {name: sums.get(name, 0.0) + value for name, value in chunk_sums.items()}
                    surrogate += distributed.scale_loss_for_replicas(chunk_loss)
                if index == 0:
                    weight_decay = weight_decay_term(model, config)
                    surrogate += distributed.scale_loss_for_replicas(weight_decay)
                surrogate = for_optimizer(surrogate, optimizer)
            chunk_gradients = tape.gradient(surrogate, variables)
            gradients = _sum(gradients, chunk_gradients)
            ready = gradients

        optimizer.apply_gradients(zip(gradients, variables))
        loss += example_loss
        metrics.update(metrics_from_sums(sums, local_views))
        loss += weight_decay
        metrics.update(total_loss=nan_unless_finite(loss, gradients), weight_decay=weight_decay)
        return metrics

    return step
