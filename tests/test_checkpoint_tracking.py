"""Every model variable must reach the training checkpoint (and so resume, fine-tuning and export)."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.config import ModelConfig
from simclr_tf.training import checkpoints
from simclr_tf.training.builders import build_model

CONFIGS = [
    ModelConfig(resnet_depth=18, width_multiplier=0.125, cifar_stem=True, num_proj_layers=3),
    ModelConfig(resnet_depth=50, width_multiplier=0.0625, sk_ratio=0.0625, se_ratio=0.25, proj_head_mode="linear"),
]


def randomized_model(config, num_classes=10, seed=1):
    model = build_model(config, image_size=32, num_classes=num_classes, train_mode="pretrain", num_replicas=1)
    for i, variable in enumerate(model.variables):  # Moving statistics must differ from their init too.
        variable.assign(tf.random.stateless_normal(variable.shape, seed=[seed, i]))
    return model


@pytest.mark.parametrize("config", CONFIGS, ids=["r18-cifar", "r50-sk-se-linear-head"])
def test_checkpoint_saves_and_restores_every_model_variable(config, tmp_path):
    source = randomized_model(config)
    path = checkpoints.model_checkpoint(source).write(str(tmp_path / "ckpt"))
    stored = [name for name, _ in tf.train.list_variables(path) if name.startswith("model/")]
    assert len(stored) == len(source.variables)

    target = randomized_model(config, seed=2)
    checkpoints.restore_model(target, path)
    for expected, restored in zip(source.variables, target.variables):
        assert expected.path == restored.path
        np.testing.assert_array_equal(restored.numpy(), expected.numpy())


def test_pretrained_restore_takes_encoder_and_head_but_not_a_head_of_another_size(tmp_path):
    config = CONFIGS[0]
    source = randomized_model(config, num_classes=10)
    path = checkpoints.model_checkpoint(source).write(str(tmp_path / "ckpt"))
    target = randomized_model(config, num_classes=5, seed=2)
    head_before = [v.numpy() for v in target.supervised_head.variables]
    checkpoints.restore_pretrained(target, path, zero_init_logits_layer=False)
    for expected, restored in zip(source.encoder.variables + source.projection_head.variables,
                                  target.encoder.variables + target.projection_head.variables):
        np.testing.assert_array_equal(restored.numpy(), expected.numpy())
    for before, after in zip(head_before, target.supervised_head.variables):
        np.testing.assert_array_equal(after.numpy(), before)

    same_classes = randomized_model(config, num_classes=10, seed=3)
    checkpoints.restore_pretrained(same_classes, path, zero_init_logits_layer=False)
    np.testing.assert_array_equal(same_classes.supervised_head.variables[0].numpy(),
                                  source.supervised_head.variables[0].numpy())
    checkpoints.restore_pretrained(same_classes, path, zero_init_logits_layer=True)
    assert all(not np.any(v.numpy()) for v in same_classes.supervised_head.variables)


def test_restoring_a_checkpoint_of_another_architecture_names_it(tmp_path):
    path = checkpoints.model_checkpoint(randomized_model(CONFIGS[0])).write(str(tmp_path / "ckpt"))
    with pytest.raises(checkpoints.CheckpointError, match=f"checkpoint {path}: does not hold this model's weights"):
        checkpoints.restore_model(randomized_model(CONFIGS[1]), path)
