"""Selective-kernel conv: the bottleneck's 3x3 conv with sk_ratio > 0 (SimCLRv2, arXiv:2006.10029)."""

import keras
from keras import ops

from simclr_tf.models.batch_norm_mixin import BatchNormMixin
from simclr_tf.models.conv2d_fixed_padding import Conv2DFixedPadding
from simclr_tf.models.conv_utils import pointwise_conv
from simclr_tf.models.layer_utils import check_positive_int, trace_build


@keras.saving.register_keras_serializable(package="simclr_tf")
class SelectiveKernelConv2D(BatchNormMixin, keras.layers.Layer):
    """Selective-kernel 3x3 conv (https://arxiv.org/abs/1903.06586), SimCLRv2's sk_ratio.

    Two 3x3 streams (one conv with 2 x filters + BN-ReLU, split in two), mixed
    per channel by a softmax over the streams computed from their pooled sum.
    It replaces the bottleneck's 3x3 conv AND its BN-ReLU, as in the reference.

    Example:
        sk = SelectiveKernelConv2D(filters=64, strides=2, sk_ratio=0.0625)
        y = sk(keras.random.uniform((2, 16, 16, 32)))  # (2, 8, 8, 64)
    """

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        sk_ratio: float = 0.0625,
        min_dim: int = 32,
        batch_norm_momentum: float = 0.9,
        batch_norm_epsilon: float = 1e-5,
        global_bn: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        check_positive_int("strides", strides)
        check_positive_int("min_dim", min_dim)
        if not 0.0 < sk_ratio < 1.0:
            raise ValueError(f"sk_ratio must be in (0, 1), got {sk_ratio!r}")
        self._init_batch_norm(batch_norm_momentum, batch_norm_epsilon, global_bn)
        self.filters = filters
        self.strides = strides
        self.sk_ratio = sk_ratio
        self.min_dim = min_dim
        dtype = self.dtype_policy
        self.streams_conv = Conv2DFixedPadding(2 * filters, 3, strides, dtype=dtype, name="streams_conv")
        self.streams_bn = self._batch_norm("streams")
        mid_dim = max(int(filters * sk_ratio), min_dim)
        self.mixing_conv_0 = pointwise_conv(mid_dim, "mixing_conv_0", dtype)
        self.mixing_bn = self._batch_norm("mixing")
        self.mixing_conv_1 = pointwise_conv(2 * filters, "mixing_conv_1", dtype)

    def build(self, input_shape):
        trace_build(self, input_shape)

    def call(self, inputs, training=False):
        x = ops.relu(self.streams_bn(self.streams_conv(inputs), training=training))
        streams = ops.stack(ops.split(x, 2, axis=-1))  # (2, N, H, W, filters)
        global_features = ops.mean(ops.sum(streams, axis=0), axis=(1, 2), keepdims=True)
        global_features = ops.relu(self.mixing_bn(self.mixing_conv_0(global_features), training=training))
        mixing = ops.stack(ops.split(self.mixing_conv_1(global_features), 2, axis=-1))
        mixing = ops.softmax(mixing, axis=0)
        return ops.sum(streams * mixing, axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            sk_ratio=self.sk_ratio,
            min_dim=self.min_dim,
            **self._batch_norm_config(),
        )
        return config
