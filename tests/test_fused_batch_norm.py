"""FusedBatchNormalization gives keras.layers.BatchNormalization's results (outputs, gradients,
moving statistics, frozen and inference behaviour), computed by TF's fused kernel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.models.fused_batch_norm import FusedBatchNormalization


def _pair(shape, center=True, momentum=0.9, dtype="float32"):
    kwargs = dict(momentum=momentum, epsilon=1e-5, center=center, dtype=dtype)
    fused, plain = FusedBatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    for layer in (fused, plain):
        layer.build(shape)
    rng = np.random.default_rng(0)
    for f, p in zip(fused.weights, plain.weights):
        value = rng.uniform(0.5, 1.5, f.shape).astype(np.float32)
        f.assign(value)
        p.assign(value)
    return fused, plain


def _grads(layer, x, training):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 3)  # Non-linear: every gradient term matters.
    return y, tape.gradient(loss, [x] + layer.trainable_weights)


@pytest.mark.parametrize("shape", [(16, 5, 5, 8), (32, 6)], ids=["conv", "dense"])
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_matches_keras_batch_norm_in_float32(shape, center, training):
    fused, plain = _pair(shape, center=center)
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, shape).astype(np.float32))
    initial_variance = fused.moving_variance.numpy()
    y_fused, grads_fused = _grads(fused, x, training)
    y_plain, grads_plain = _grads(plain, x, training)
    np.testing.assert_allclose(y_fused, y_plain, rtol=1e-4, atol=1e-4)
    for g_fused, g_plain in zip(grads_fused, grads_plain):
        np.testing.assert_allclose(g_fused, g_plain, rtol=1e-3, atol=1e-3 * float(tf.reduce_max(tf.abs(g_plain))))
    # Moving statistics: momentum * old + (1 - momentum) * batch (biased variance), or untouched.
    for f, p in zip(fused.non_trainable_weights, plain.non_trainable_weights):
        np.testing.assert_allclose(f, p, rtol=1e-5)
    if training:
        axes = tuple(range(len(shape) - 1))
        expected_variance = 0.9 * initial_variance + 0.1 * np.var(x.numpy(), axis=axes)  # numpy: biased.
        np.testing.assert_allclose(fused.moving_variance, expected_variance, rtol=1e-5)


def test_frozen_layer_uses_moving_statistics_even_when_training():
    fused, plain = _pair((8, 3, 3, 4))
    fused.trainable = plain.trainable = False
    x = tf.random.stateless_normal((8, 3, 3, 4), seed=[1, 2])
    before = fused.moving_mean.numpy()
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fused.moving_mean, before)


def test_bfloat16_inputs_keep_float32_statistics():
    fused, plain = _pair((16, 4, 4, 8), dtype="mixed_bfloat16")
    x = tf.cast(tf.random.stateless_normal((16, 4, 4, 8), seed=[3, 4]) * 2 + 1, tf.bfloat16)
    y_fused, y_plain = fused(x, training=True), plain(x, training=True)
    assert y_fused.dtype == tf.bfloat16 and fused.moving_mean.dtype == "float32"
    np.testing.assert_allclose(tf.cast(y_fused, tf.float32), tf.cast(y_plain, tf.float32), atol=3e-2)
    np.testing.assert_allclose(fused.moving_variance, plain.moving_variance, rtol=1e-3)


def test_synchronized_or_masked_calls_fall_back_to_keras():
    layer = FusedBatchNormalization(synchronized=True)
    layer.build((4, 3))
    assert not layer._fusable(tf.zeros((4, 3)), None)
    assert not FusedBatchNormalization()._fusable(tf.zeros((4, 2, 3)), None)  # Rank 3.


def test_config_round_trips():
    layer = FusedBatchNormalization(momentum=0.8, epsilon=1e-3, center=False, name="x_batch_normalization")
    clone = FusedBatchNormalization.from_config(layer.get_config())
    assert type(clone) is FusedBatchNormalization
    assert (clone.momentum, clone.epsilon, clone.center, clone.name) == (0.8, 1e-3, False, "x_batch_normalization")
    assert clone.fused and not FusedBatchNormalization.from_config({**layer.get_config(), "fused": False}).fused


def test_unfused_layer_takes_keras_path():
    layer = FusedBatchNormalization(fused=False)
    layer.build((4, 3))
    assert not layer._fusable(tf.zeros((4, 3)), None) and FusedBatchNormalization()._fusable(tf.zeros((4, 3)), None)
