"""Model, optimizer and learning-rate schedule of a run, built from its config."""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras

from simclr_tf.config import ModelConfig, OptimizerConfig
from simclr_tf.models import ProjectionHead, ResNet, SimCLRModel, SupervisedHead
from simclr_tf.models.fused_batch_norm import FusedBatchNormalization
from simclr_tf.optim import LARS, warmup_cosine_schedule

BATCH_NORM = "batch_normalization"
BIAS = "bias"
SUPERVISED_HEAD = "supervised_head"


def build_model(
    config: ModelConfig,
    *,
    image_size: int,
    num_classes: int | None,
    train_mode: str,
    num_replicas: int,
) -> SimCLRModel:
    """A built SimCLRModel; the supervised head exists when there are labels.

    Cross-replica ("global") BN is only requested with several replicas: Keras's
    synchronized BN computes the variance as E[x^2] - E[x]^2, which on one device
    is less exact than plain BN's two-pass moments and buys nothing - unless
    `config.one_pass_batch_norm` asks for that arithmetic (imported original models).
    """
    global_bn = (config.global_bn and num_replicas > 1) or config.one_pass_batch_norm
    bn = dict(batch_norm_momentum=config.batch_norm_decay, global_bn=global_bn)
    encoder = ResNet(
        depth=config.resnet_depth,
        width_multiplier=config.width_multiplier,
        cifar_stem=config.cifar_stem,
        sk_ratio=config.sk_ratio,
        se_ratio=config.se_ratio,
        name="resnet",
        **bn,
    )
    projection_head = ProjectionHead(
        mode=config.proj_head_mode,
        num_proj_layers=config.num_proj_layers,
        proj_out_dim=config.proj_out_dim,
        ft_proj_selector=config.ft_proj_selector,
        name="projection_head",
        **bn,
    )
    supervised_head = None
    if num_classes:
        supervised_head = SupervisedHead(num_classes, zero_init=config.zero_init_logits_layer, name="supervised_head")
    model = SimCLRModel(
        encoder,
        projection_head,
        supervised_head,
        linear_eval_on_stop_gradient=train_mode == "pretrain",
        name="simclr",
    )
    model.build((None, image_size, image_size, 3))
    if not config.fused_batch_norm:
        for layer in model._flatten_layers():
            if isinstance(layer, FusedBatchNormalization):
                layer.fused = False
    return model


def freeze_for_finetuning(model: SimCLRModel, fine_tune_after_block: int, ft_proj_selector: int) -> None:
    """Freezes what fine-tuning must not change (the reference's `fine_tune_after_block`).

    -1 trains everything; 0 freezes the stem; k in 1..4 freezes the stem and block
    groups 1..k (4 = only the heads train). Frozen BN layers also switch to their
    moving statistics (Keras semantics of trainable=False). Projection-head layers
    after `ft_proj_selector` get no gradient in fine-tuning and are frozen too.
    """
    encoder = model.encoder
    if fine_tune_after_block >= 0:
        for layer in (encoder.initial_conv, encoder.initial_bn, *encoder.deep_stem_convs, *encoder.deep_stem_bns):
            layer.trainable = False
        for group in encoder.block_groups[:fine_tune_after_block]:
            group.trainable = False
    head = model.projection_head
    for dense, bn in list(zip(head.dense_layers, head.batch_norm_layers))[ft_proj_selector:]:
        dense.trainable = False
        bn.trainable = False


def lars_exclusions(model: SimCLRModel) -> tuple[str, ...]:
    """The variable-path patterns LARS leaves out of weight decay and of the trust ratio.

    As the reference (the adaptation list defaults to the decay list): BN and biases,
    and the supervised head, which gets its decay as an L2 term in the loss
    (`l2_penalty`) and plain momentum updates, so the online linear classifier learns
    at the full learning rate. Only the patterns this model's layers must match are
    listed, so `exclusion_counts` can refuse one that matches nothing.
    """
    head = model.supervised_head is not None
    has_bias = head or model.encoder.se_ratio > 0  # Squeeze-excitation convolutions have biases.
    return (BATCH_NORM,) + ((BIAS,) if has_bias else ()) + ((SUPERVISED_HEAD,) if head else ())


def exclusion_counts(patterns: Sequence[str], variables: Sequence[keras.Variable]) -> dict[str, int]:
    """{pattern: how many of `variables` it matches (re.search on the path)}.

    A pattern that matches nothing means a layer was renamed, and its variables would
    silently be decayed: that is a ValueError naming the pattern.
    """
    counts = {pattern: sum(bool(re.search(pattern, v.path)) for v in variables) for pattern in patterns}
    unmatched = [pattern for pattern, count in counts.items() if not count]
    if unmatched:
        raise ValueError(f"weight-decay exclusion pattern(s) {unmatched} match none of the model's {len(variables)} "
                         f"variables (e.g. {variables[0].path if variables else 'none'}): was a layer "
                         f"renamed? Its variables would be decayed")
    return counts


def describe_weight_decay(optimizer_name: str, exclusions: Sequence[str], model: SimCLRModel,
                          weight_decay: float) -> str:
    """One line for the run's log: how many trainable variables get weight decay, and which
    groups do not. With LARS, first checks `exclusions` against all of the model's variables
    (frozen ones too: fine-tuning may freeze every BN layer)."""
    variables = model.trainable_variables
    if optimizer_name != "lars":
        decayed = [v for v in variables if BATCH_NORM not in v.path]
        return (f"weight decay {weight_decay:g} as an L2 term in the loss on {len(decayed)} of {len(variables)} "
                f"trainable variables (all but {BATCH_NORM}: {len(variables) - len(decayed)})")
    exclusion_counts(exclusions, model.variables)
    counts = {pattern: sum(bool(re.search(pattern, v.path)) for v in variables) for pattern in exclusions}
    excluded = sum(any(re.search(p, v.path) for p in exclusions) for v in variables)
    groups = ", ".join(f"{pattern} {count}" for pattern, count in counts.items())
    return (f"LARS weight decay {weight_decay:g} on {len(variables) - excluded} of {len(variables)} trainable "
            f"variables; excluded from decay and trust ratio: {groups}")


def build_optimizer(
    config: OptimizerConfig,
    *,
    global_batch_size: int,
    warmup_steps: int,
    total_steps: int,
    exclusions: Sequence[str] = (BATCH_NORM, BIAS),
) -> keras.optimizers.Optimizer:
    """The optimizer with SimCLR's warmup + cosine schedule (SimCLR, arXiv:2002.05709, "Default setting").

    LARS applies weight decay itself (coupled, before the trust ratio), leaving out the
    variables whose path matches `exclusions` (`lars_exclusions(model)`); momentum and
    Adam get it as an L2 term in the loss (`l2_penalty`), as in the reference.
    """
    schedule = warmup_cosine_schedule(
        config.learning_rate, global_batch_size, config.learning_rate_scaling, warmup_steps, total_steps
    )
    if config.optimizer == "lars":
        return LARS(
            schedule,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            exclude_from_weight_decay=tuple(exclusions),
            exclude_from_layer_adaptation=tuple(exclusions),
        )
    if config.optimizer == "momentum":
        return keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=False)
    return keras.optimizers.Adam(schedule)


def l2_penalty(model: SimCLRModel, weight_decay: float, optimizer_name: str):
    """The weight-decay term added to the loss (the reference's `add_weight_decay`).

    With LARS only the supervised head's kernel (LARS decays the rest); otherwise
    every trainable variable except BN's.
    """
    if optimizer_name == "lars":
        variables = [
            v for v in model.trainable_variables if SUPERVISED_HEAD in v.path and BIAS not in v.path
        ]
    else:
        variables = [v for v in model.trainable_variables if BATCH_NORM not in v.path]
    if not variables or weight_decay == 0:
        return keras.ops.convert_to_tensor(0.0)
    return weight_decay * keras.ops.sum(keras.ops.stack([keras.ops.sum(keras.ops.square(v)) / 2 for v in variables]))
