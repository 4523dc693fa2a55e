"""Keras 3 BatchNormalization computed by TensorFlow's fused kernel when it can be.

Keras 3 normalises with separate ops (moments, then arithmetic) after casting
bfloat16 activations to float32; TensorFlow's FusedBatchNormV3 does it in one
oneDNN/cuDNN kernel that reads bfloat16 and keeps its statistics in float32. On
this 2-core CPU that took a ResNet-18 (32 px, batch 128) training step from 77 to
103 views/s in mixed_bfloat16 and from 56 to 64 in float32
(benchmarks/train_throughput.py). The reference's tf.keras BatchNormalization also
ran fused on one device.

The results are Keras's (same moving-average update, biased batch variance), checked
against keras.layers.BatchNormalization in tests/test_fused_batch_norm.py. Cases the
kernel does not cover - cross-replica statistics (synchronized=True, global BN),
masks, renorm, a channel axis other than the last - fall back to Keras.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="simclr_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Drop-in keras.layers.BatchNormalization (same arguments, weights and config).

    `fused=False` always takes Keras's path (to compare with, or to match another
    layout's float32 rounding exactly: see simclr_tf.training.builders.build_model).

    Example:
        bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name="block1_batch_normalization")
        y = bn(x, training=True)   # x: [B, H, W, C] or [B, C]
    """

    def __init__(self, *args, fused: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fused = fused

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}

    def _fusable(self, inputs, mask) -> bool:
        rank = len(inputs.shape)
        axis = self.axis if isinstance(self.axis, int) else (self.axis[0] if len(self.axis) == 1 else None)
        return (self.fused and not self.synchronized and mask is None and not self.renorm and rank in (2, 4)
                and axis in (-1, rank - 1))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        x = tf.convert_to_tensor(inputs)
        if x.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            x = tf.cast(x, tf.float32)
        images = x if len(x.shape) == 4 else x[:, None, None, :]  # The kernel wants NHWC.
        gamma = self.gamma if self.scale else tf.ones([channels], tf.float32)
        beta = self.beta if self.center else tf.zeros([channels], tf.float32)
        gamma, beta = tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32)
        if training and self.trainable:
            y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=images, scale=gamma, offset=beta, mean=tf.zeros([0]), variance=tf.zeros([0]),
                epsilon=self.epsilon, data_format="NHWC", is_training=True)
            # The kernel's batch_variance is Bessel-corrected; Keras's moving variance is not.
            count = tf.cast(tf.size(images) // channels, tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        else:
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                x=images, scale=gamma, offset=beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                data_format="NHWC", is_training=False)
        y = y if len(x.shape) == 4 else y[:, 0, 0, :]
        return tf.cast(y, self.compute_dtype)
