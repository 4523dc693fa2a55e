"""Small cross-replica helpers that read the current replica context.

Nothing here takes a strategy argument: every helper asks
`tf.distribute.get_replica_context()` and degrades to single-device behaviour
when there is one replica or no strategy at all, so losses and metrics stay
plain functions of tensors.
"""

from __future__ import annotations

import tensorflow as tf


def num_replicas() -> int:
    """Number of replicas kept in sync (1 outside any strategy).

    In a replica context (inside `strategy.run`) this is the context's count;
    in the cross-replica context (under `strategy.scope()`, outside `run`) it
    is the current strategy's count.
    """
    context = tf.distribute.get_replica_context()
    if context is None:
        return tf.distribute.get_strategy().num_replicas_in_sync
    return context.num_replicas_in_sync


def replica_id() -> tf.Tensor:
    """Index of the current replica in its sync group, as an int32 scalar.

    0 outside any strategy and in the cross-replica context.
    """
    context = tf.distribute.get_replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    return tf.cast(context.replica_id_in_sync_group, tf.int32)


def cross_replica_concat(tensor: tf.Tensor) -> tf.Tensor:
    """Concatenates `tensor` from every replica along axis 0, in replica order.

    A no-op with one replica or outside `strategy.run`. The gradient flows
    back to the replica that contributed each row: TensorFlow's all-gather
    gradient sums the upstream gradients of all replicas and slices out the
    local rows, which is what makes the NT-Xent gradient equal the
    single-device one.

    The all-gather is applied to `tf.identity(tensor)`: under
    MultiWorkerMirroredStrategy inside a `tf.function`, gathering a function
    argument directly fails with "destinations can not be empty" (seen with TF 2.21).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensor
    return context.all_gather(tf.identity(tensor), axis=0)


def scale_loss_for_replicas(loss: tf.Tensor) -> tf.Tensor:
    """Scales a per-replica loss so that SUMMED replica gradients are exact.

    Each replica computes the mean loss of its local examples. With equal
    per-replica batches the global-batch loss is the mean of those, i.e. the
    sum over replicas of `loss / num_replicas`. Gradients of the scaled loss,
    summed across replicas (what Keras optimizers and
    `ReplicaContext.all_reduce(SUM, ...)` do), equal the single-device
    gradient on the global batch; `strategy.reduce(SUM, scaled_loss)` gives
    the global loss.
    """
    return loss / tf.cast(num_replicas(), loss.dtype)
