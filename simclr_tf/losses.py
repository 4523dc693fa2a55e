"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR, and its metrics.

SimCLR, Chen et al. 2020, arXiv:2002.05709, §2.1. Negatives come from the
GLOBAL batch: projections are all-gathered through the replica context
(`simclr_tf.distributed`), and each replica scores only its local anchors, so
memory is O(local_n x global_n) and no [2N, 2N] matrix is ever built.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from simclr_tf import distributed

# Subtracted from each anchor's similarity with itself so that softmax gives it
# probability 0 (exp underflows to exactly 0 in float32), as in the reference.
SELF_SIMILARITY_MASK = 1e9


class NTXentOutput(NamedTuple):
    """What `nt_xent_loss` returns.

    Attributes:
      loss: float32 scalar, mean over the local examples (reference scale).
      logits: float32 [local_n, 2 * global_n], the view-1 anchors' logits
        against [view-2 of all global examples, view-1 of all global examples];
        the anchor's own view-1 column is masked by -1e9.
      labels: int32 [local_n], column of each anchor's positive in `logits`.
    """

    loss: tf.Tensor
    logits: tf.Tensor
    labels: tf.Tensor


def _validate(projections_1: tf.Tensor, projections_2: tf.Tensor, temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature!r}.")
    shape_1, shape_2 = projections_1.shape, projections_2.shape
    if shape_1.rank != 2 or shape_2.rank != 2:
        raise ValueError(
            "`projections_1` and `projections_2` must have rank 2 [batch, dim], got "
            f"shapes {shape_1} and {shape_2}."
        )
    if not shape_1.is_compatible_with(shape_2):
        raise ValueError(
            "`projections_1` and `projections_2` must have the same shape, got "
            f"{shape_1} and {shape_2}."
        )


def nt_xent_loss(
    projections_1: tf.Tensor,
    projections_2: tf.Tensor,
    temperature: float,
    normalize: bool = True,
) -> NTXentOutput:
    """NT-Xent over the global batch; `projections_k[i]` is view k of local example i.

    With z the (optionally L2-normalised) projections of the 2N views of a
    global batch of N images and sim the dot product,
      l(i, j) = -log( exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau) ).
    Returned loss = mean over the LOCAL examples i of [l(i, i') + l(i', i)]:
    the reference implementation's scale, which is TWICE the paper's average
    over the 2N anchors. Keep it: the reference's weight decay and learning
    rates were tuned at this scale. Under a strategy, scale it with
    `distributed.scale_loss_for_replicas` and sum the gradients.

    Inputs of any float dtype (e.g. bfloat16 under mixed precision) are cast to
    float32 first; every output is float32 (labels int32). Per-replica batches
    must all have the same size (the positives sit at column
    replica_id * local_n + i of the gathered batch).

    Args:
      projections_1: [local_n, dim] projections of the first views.
      projections_2: [local_n, dim] projections of the second views.
      temperature: tau > 0 (SimCLR: 0.1 ImageNet, 0.5 CIFAR).
      normalize: L2-normalise the projections first (the paper always does).

    Returns:
      NTXentOutput(loss, logits, labels); see `contrastive_metrics`.

    Raises:
      ValueError: if temperature <= 0 or the projections are not two
        equal-shaped rank-2 tensors.
    """
    projections_1 = tf.convert_to_tensor(projections_1)
    projections_2 = tf.convert_to_tensor(projections_2)
    _validate(projections_1, projections_2, temperature)

    z_1 = tf.cast(projections_1, tf.float32)
    z_2 = tf.cast(projections_2, tf.float32)
    if normalize:
        z_1 = tf.math.l2_normalize(z_1, axis=-1)
        z_2 = tf.math.l2_normalize(z_2, axis=-1)

    # One collective for both views: gather [z_1 | z_2] and split the columns.
    z_global = distributed.cross_replica_concat(tf.concat([z_1, z_2], axis=1))
    z_1_global, z_2_global = tf.split(z_global, 2, axis=1)

    local_n = tf.shape(z_1)[0]
    global_n = tf.shape(z_global)[0]
    tf.debugging.assert_equal(
        global_n,
        local_n * distributed.num_replicas(),
        message="nt_xent_loss needs the same per-replica batch size on every replica",
    )
    labels = tf.range(local_n) + distributed.replica_id() * local_n
    self_mask = tf.one_hot(labels, global_n) * SELF_SIMILARITY_MASK

    inverse_temperature = tf.constant(1.0 / temperature, tf.float32)
    logits_aa = tf.matmul(z_1, z_1_global, transpose_b=True) * inverse_temperature - self_mask
    logits_bb = tf.matmul(z_2, z_2_global, transpose_b=True) * inverse_temperature - self_mask
    logits_ab = tf.matmul(z_1, z_2_global, transpose_b=True) * inverse_temperature
    logits_ba = tf.matmul(z_2, z_1_global, transpose_b=True) * inverse_temperature

    logits_a = tf.concat([logits_ab, logits_aa], axis=1)
    logits_b = tf.concat([logits_ba, logits_bb], axis=1)
    loss_a = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits_a)
    loss_b = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits_b)
    loss = tf.reduce_mean(loss_a + loss_b)
    return NTXentOutput(loss=loss, logits=logits_a, labels=labels)


def contrastive_metrics(output: NTXentOutput) -> dict[str, tf.Tensor]:
    """Contrastive accuracy and entropy of the view-1 anchors (local means).

    contrastive_accuracy: fraction of anchors whose positive is the arg-max
    among their 2N-1 candidates (those of NT-Xent: SimCLR, Chen et al. 2020,
    arXiv:2002.05709, §2.1; the reference scored only the N cross-view
    candidates). contrastive_entropy: mean entropy (nats) of
    softmax(logits); log(2N-1) when all candidates are equally similar.
    """
    logits = tf.cast(output.logits, tf.float32)
    predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(predicted, output.labels), tf.float32))
    # The masked column has probability exactly 0 and a finite log-probability,
    # so it contributes 0 (no NaN from 0 * log 0).
    probabilities = tf.nn.softmax(logits, axis=1)
    entropy = -tf.reduce_mean(
        tf.reduce_sum(probabilities * tf.nn.log_softmax(logits, axis=1), axis=1)
    )
    return {"contrastive_accuracy": accuracy, "contrastive_entropy": entropy}


def distillation_cross_entropy(teacher_logits: tf.Tensor, student_logits: tf.Tensor, temperature: float) -> tf.Tensor:
    """Per example, -sum_y P_T(y|x; tau) log P_S(y|x; tau): float32 [n].

    Self-distillation of SimCLRv2, Chen et al. 2020, arXiv:2006.10029, §2 (eq. 2), with
    P(y|x; tau) = softmax(logits / tau) and the teacher's probabilities fixed (no gradient).
    Its batch mean is `distillation_loss`; under a strategy, scale that with
    `distributed.scale_loss_for_replicas` like the other losses.

    Raises:
      ValueError: if temperature <= 0 or the logits' shapes differ.
    """
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature!r}.")
    if not teacher_logits.shape.is_compatible_with(student_logits.shape):
        raise ValueError(f"teacher and student logits must have the same shape, got {teacher_logits.shape} and "
                         f"{student_logits.shape}.")
    teacher_probabilities = tf.stop_gradient(tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1))
    student_log_probabilities = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    return -tf.reduce_sum(teacher_probabilities * student_log_probabilities, axis=-1)


def distillation_loss(teacher_logits: tf.Tensor, student_logits: tf.Tensor, temperature: float) -> tf.Tensor:
    """The batch mean of `distillation_cross_entropy` (SimCLRv2, arXiv:2006.10029, eq. 2)."""
    return tf.reduce_mean(distillation_cross_entropy(teacher_logits, student_logits, temperature))
