"""Squeeze-and-excitation: the channel gate of a block with se_ratio > 0."""

import keras
from keras import ops

from simclr_tf.models.conv_utils import pointwise_conv
from simclr_tf.models.layer_utils import check_positive_int


@keras.saving.register_keras_serializable(package="simclr_tf")
class SqueezeExcitation(keras.layers.Layer):
    """Squeeze-and-excitation (https://arxiv.org/abs/1709.01507), SimCLRv2's se_ratio.

    The bottleneck has max(1, int(filters * se_ratio)) channels, where `filters`
    is the block's base width (as in the reference, not its 4x output); the
    output has the input's channels.

    Example:
        se = SqueezeExcitation(filters=16, se_ratio=0.25)
        y = se(keras.random.uniform((2, 8, 8, 64)))  # (2, 8, 8, 64)
    """

    def __init__(self, filters: int, se_ratio: float, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        if not 0.0 < se_ratio < 1.0:
            raise ValueError(f"se_ratio must be in (0, 1), got {se_ratio!r}")
        self.filters = filters
        self.se_ratio = se_ratio
        reduced = max(1, int(filters * se_ratio))
        self.se_reduce = pointwise_conv(reduced, "se_reduce", self.dtype_policy, use_bias=True)
        self.se_expand = None  # Needs the input's channel count: created in build().

    def build(self, input_shape):
        self.se_expand = pointwise_conv(input_shape[-1], "se_expand", self.dtype_policy, use_bias=True)
        self.se_reduce.build((input_shape[0], 1, 1, input_shape[-1]))
        self.se_expand.build((input_shape[0], 1, 1, self.se_reduce.filters))

    def call(self, inputs, training=False):
        squeezed = ops.mean(inputs, axis=(1, 2), keepdims=True)
        excitation = self.se_expand(ops.relu(self.se_reduce(squeezed)))
        return ops.sigmoid(excitation) * inputs

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, se_ratio=self.se_ratio)
        return config
