"""simclr_tf.training.builders: which variables LARS decays, and that a renamed layer cannot hide."""

import dataclasses

import pytest

from simclr_tf.config import ModelConfig, OptimizerConfig
from simclr_tf.training.builders import (
    build_model,
    build_optimizer,
    describe_weight_decay,
    exclusion_counts,
    freeze_for_finetuning,
    lars_exclusions,
)

TINY = ModelConfig(resnet_depth=18, width_multiplier=0.125, cifar_stem=True, num_proj_layers=2)


def tiny_model(config=TINY, num_classes=10, train_mode="pretrain"):
    return build_model(config, image_size=8, num_classes=num_classes, train_mode=train_mode, num_replicas=1)


def test_the_exclusions_are_those_the_model_has():
    assert lars_exclusions(tiny_model()) == ("batch_normalization", "bias", "supervised_head")
    assert lars_exclusions(tiny_model(num_classes=None)) == ("batch_normalization",)
    with_se = dataclasses.replace(TINY, resnet_depth=50, se_ratio=0.25)
    assert lars_exclusions(tiny_model(with_se, num_classes=None)) == ("batch_normalization", "bias")


def test_lars_decays_exactly_the_kernels_outside_the_supervised_head():
    model = tiny_model()
    exclusions = lars_exclusions(model)
    optimizer = build_optimizer(OptimizerConfig(weight_decay=1e-4), global_batch_size=16, warmup_steps=1,
                                total_steps=10, exclusions=exclusions)
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v, decays in zip(model.trainable_variables, optimizer._decays) if decays}
    # Independently of the patterns: every conv/dense kernel, none of the head's, no BN, no bias.
    expected = {v.path for v in model.trainable_variables
                if v.path.endswith("/kernel") and "/supervised_head/" not in v.path}
    assert decayed == expected and len(expected) > 20
    adapted = {v.path for v, adapts in zip(model.trainable_variables, optimizer._adapts) if adapts}
    assert adapted == expected  # The trust ratio leaves out the same variables (the reference's default).
    summary = describe_weight_decay("lars", exclusions, model, 1e-4)
    bn = sum("batch_normalization" in v.path for v in model.trainable_variables)
    assert summary == (f"LARS weight decay 0.0001 on {len(expected)} of {len(model.trainable_variables)} trainable "
                       f"variables; excluded from decay and trust ratio: batch_normalization {bn}, bias 1, "
                       f"supervised_head 2")


def test_a_pattern_that_matches_nothing_is_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\['batch_norm_layer'\] match none of the model's .* was a layer renamed"):
        exclusion_counts(("batch_normalization", "batch_norm_layer"), model.variables)
    assert exclusion_counts(("supervised_head",), model.variables) == {"supervised_head": 2}


def test_fine_tuning_only_the_head_still_checks_against_every_variable():
    model = tiny_model(train_mode="finetune")
    freeze_for_finetuning(model, fine_tune_after_block=4, ft_proj_selector=0)
    assert all("supervised_head" in v.path for v in model.trainable_variables)
    summary = describe_weight_decay("lars", lars_exclusions(model), model, 1e-6)
    assert summary.startswith("LARS weight decay 1e-06 on 0 of 2 trainable variables")
    assert "batch_normalization 0, bias 1, supervised_head 2" in summary


def test_other_optimizers_say_their_l2_term():
    model = tiny_model()
    bn = sum("batch_normalization" in v.path for v in model.trainable_variables)
    total = len(model.trainable_variables)
    assert describe_weight_decay("momentum", (), model, 1e-4) == (
        f"weight decay 0.0001 as an L2 term in the loss on {total - bn} of {total} trainable variables "
        f"(all but batch_normalization: {bn})")
