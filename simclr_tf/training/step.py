"""One replica's training step: forward both views, SimCLR losses, gradients, update.

Runs inside `strategy.run`; the NT-Xent negatives come from every replica through
the replica context (simclr_tf.losses), and the loss is divided by the number of
replicas because the optimizer SUMS the replicas' gradients.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from simclr_tf import distributed
from simclr_tf.losses import contrastive_metrics, distillation_cross_entropy, nt_xent_loss
from simclr_tf.models import SimCLRModel
from simclr_tf.training.builders import l2_penalty


# The label of an image whose label the step must not use (simclr_tf.data.subset.keep_labels_of).
UNLABELLED = -1
# per_example_terms's count of labelled views, by which the supervised metrics are averaged.
LABELLED = "labelled_views"


@dataclasses.dataclass(frozen=True)
class StepConfig:
    train_mode: str  # "pretrain", "finetune" or "distill"
    temperature: float
    hidden_norm: bool
    weight_decay: float
    optimizer_name: str
    supervised: bool  # train the supervised head on labels (online linear eval, fine-tuning, distillation's alpha)
    distill_temperature: float = 1.0
    distill_label_weight: float = 0.0  # alpha: (1 - alpha) * distillation + alpha * cross-entropy

    @property
    def distills(self) -> bool:
        return self.train_mode == "distill"


def metric_names(config: StepConfig) -> tuple[str, ...]:
    names = ["total_loss", "weight_decay"]
    if config.train_mode == "pretrain":
        names += ["contrast_loss", "contrast_acc", "contrast_entropy"]
    if config.distills:
        names += ["distill_loss", "teacher_agreement"]
    if config.supervised:
        names += ["supervised_loss", "supervised_acc"]
    return tuple(names)


def per_example_terms(outputs: dict, labels: tf.Tensor, num_views: int, config: StepConfig,
                      teacher_logits: tf.Tensor | None) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The loss terms that are means over examples: (per-example loss [n], {metric: sum over examples}).

    The supervised head's cross-entropy (weighted by alpha when distilling; 0 for an UNLABELLED
    image, so a labelled example weighs 1/batch as in fine-tuning) and the distillation
    cross-entropy (weighted by 1 - alpha). Sums, so that a step over chunks can add them up and
    divide once (metrics_from_sums).
    """
    loss = tf.zeros([tf.shape(outputs["logits_sup"])[0]])
    sums = {}
    alpha = config.distill_label_weight if config.distills else 1.0
    if config.supervised:
        cross_entropy, correct, labelled = supervised_terms(outputs, labels, num_views)
        loss += alpha * cross_entropy
        sums.update(supervised_loss=tf.reduce_sum(cross_entropy), supervised_acc=tf.reduce_sum(correct),
                    **{LABELLED: tf.reduce_sum(labelled)})
    if config.distills:
        student_logits = tf.cast(outputs["logits_sup"], tf.float32)
        distill = distillation_cross_entropy(teacher_logits, student_logits, config.distill_temperature)
        loss += (1.0 - alpha) * distill
        agree = tf.equal(tf.argmax(student_logits, axis=1), tf.argmax(teacher_logits, axis=1))
        sums.update(distill_loss=tf.reduce_sum(distill), teacher_agreement=tf.reduce_sum(tf.cast(agree, tf.float32)))
    return loss, sums


def views_to_batch(views: tf.Tensor) -> tf.Tensor:
    """[b, V, H, W, C] -> [V * b, H, W, C], all first views, then all second views (reference order)."""
    return tf.concat(tf.unstack(views, axis=1), axis=0)


def supervised_terms(outputs: dict, labels: tf.Tensor, num_views: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per view: the supervised head's cross-entropy, whether its arg-max is right, and whether the
    image is labelled (float32 0/1). An UNLABELLED image (distillation's images outside the labelled
    subset) adds 0 to the first two."""
    logits = tf.cast(outputs["logits_sup"], tf.float32)
    view_labels = tf.tile(labels, [num_views])
    labelled = view_labels != UNLABELLED
    known = tf.where(labelled, view_labels, tf.zeros_like(view_labels))  # Any class: masked below.
    mask = tf.cast(labelled, tf.float32)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=known, logits=logits) * mask
    predicted = tf.argmax(logits, axis=1, output_type=view_labels.dtype)
    return cross_entropy, tf.cast(tf.equal(predicted, view_labels), tf.float32) * mask, mask


def metrics_from_sums(sums: dict[str, tf.Tensor], num_views: tf.Tensor) -> dict[str, tf.Tensor]:
    """Means of `per_example_terms`'s sums: the supervised ones over the labelled views, the others over all."""
    labelled = tf.maximum(sums.get(LABELLED, num_views), 1.0)
    return {name: total / (labelled if name.startswith("supervised_") else num_views)
            for name, total in sums.items() if name != LABELLED}


def weight_decay_term(model: SimCLRModel, config: StepConfig) -> tf.Tensor:
    return tf.cast(l2_penalty(model, config.weight_decay, config.optimizer_name), tf.float32)


def for_optimizer(loss: tf.Tensor, optimizer: keras.optimizers.Optimizer) -> tf.Tensor:
    """The loss to differentiate: multiplied by the loss scale when the optimizer has one."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


def nan_unless_finite(loss: tf.Tensor, gradients) -> tf.Tensor:
    """`loss`, or NaN when a gradient is not finite.

    A finite loss can come with NaN gradients: oneDNN's CPU kernels can turn NaN
    activations into zeros on the way forward but not on the way back. total_loss
    is what the loop checks, so it is NaN when either is.
    """
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None])
    return tf.where(finite, loss, float("nan"))


def make_train_step(
    model: SimCLRModel,
    optimizer: keras.optimizers.Optimizer,
    config: StepConfig,
    teacher_logits: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]]:
    """Returns `step(views, labels) -> {metric: local float32 scalar}` for `strategy.run`.

    `teacher_logits(images)`: the frozen teacher's logits, when distilling.
    """
    if config.distills and teacher_logits is None:
        raise ValueError("distillation needs teacher_logits")
    variables = model.trainable_variables

    def step(views, labels):
        num_views = views.shape[1]
        images = views_to_batch(views)
        metrics = {}
        teacher = teacher_logits(images) if config.distills else None
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            loss = tf.constant(0.0)
            if config.train_mode == "pretrain":
                projections = tf.split(outputs["proj_head_output"], num_views, axis=0)
                contrast = nt_xent_loss(projections[0], projections[1], config.temperature, normalize=config.hidden_norm)
                loss += contrast.loss
                named = contrastive_metrics(contrast)
                metrics.update(
                    contrast_loss=contrast.loss,
                    contrast_acc=named["contrastive_accuracy"],
                    contrast_entropy=named["contrastive_entropy"],
                )
            if config.supervised or config.distills:
                example_losses, sums = per_example_terms(outputs, labels, num_views, config, teacher)
                loss += tf.reduce_mean(example_losses)
                metrics.update(metrics_from_sums(sums, tf.cast(tf.shape(images)[0], tf.float32)))
            weight_decay = weight_decay_term(model, config)
            loss += weight_decay
            scaled_loss = for_optimizer(distributed.scale_loss_for_replicas(loss), optimizer)
        gradients = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        metrics.update(total_loss=nan_unless_finite(loss, gradients), weight_decay=weight_decay)
        return metrics

    return step
