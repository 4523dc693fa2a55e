"""Residual (basic) and bottleneck blocks of the SimCLR ResNet.

The topology follows the SimCLR TF2 reference (itself TF's official ResNet):
post-activation ResNet v1 with the stride on the 3x3 conv of bottleneck blocks
("v1.5"), a projection shortcut (1x1 conv + BN) on the first block of EVERY
group, and, when selective kernels are on (SimCLRv2), ResNet-D shortcuts
(2x2 average pool, then a stride-1 1x1 conv; https://arxiv.org/abs/1812.01187).
"""

import keras
from keras import ops

from simclr_tf.models.batch_norm_mixin import BatchNormMixin
from simclr_tf.models.conv2d_fixed_padding import Conv2DFixedPadding
from simclr_tf.models.conv_utils import fixed_padding
from simclr_tf.models.layer_utils import check_positive_int, check_ratio, trace_build
from simclr_tf.models.selective_kernel import SelectiveKernelConv2D
from simclr_tf.models.squeeze_excitation import SqueezeExcitation


class _BlockBase(BatchNormMixin, keras.layers.Layer):
    """Shared part of residual and bottleneck blocks: arguments, shortcut, SE, config."""

    expansion = 1  # Output channels = expansion * filters.

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        use_projection: bool = False,
        sk_ratio: float = 0.0,
        se_ratio: float = 0.0,
        zero_init_last_bn: bool = True,
        batch_norm_momentum: float = 0.9,
        batch_norm_epsilon: float = 1e-5,
        global_bn: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        check_positive_int("strides", strides)
        check_ratio("sk_ratio", sk_ratio)
        check_ratio("se_ratio", se_ratio)
        self._init_batch_norm(batch_norm_momentum, batch_norm_epsilon, global_bn)
        self.filters = filters
        self.strides = strides
        self.use_projection = use_projection
        self.sk_ratio = sk_ratio
        self.se_ratio = se_ratio
        self.zero_init_last_bn = zero_init_last_bn
        dtype = self.dtype_policy
        if use_projection:
            out = self.expansion * filters
            if sk_ratio > 0:  # ResNet-D: average-pool, then a stride-1 1x1 conv.
                self.shortcut_pool = keras.layers.AveragePooling2D(
                    2, strides, padding="same" if strides == 1 else "valid", dtype=dtype, name="shortcut_pool"
                )
                self.shortcut_conv = Conv2DFixedPadding(out, 1, 1, dtype=dtype, name="shortcut")
            else:
                self.shortcut_conv = Conv2DFixedPadding(out, 1, strides, dtype=dtype, name="shortcut")
            self.shortcut_bn = self._batch_norm("shortcut")
        self.se = SqueezeExcitation(filters, se_ratio, dtype=dtype, name="se") if se_ratio > 0 else None

    def _last_batch_norm(self):
        """The BN closing the residual branch; zero gamma makes the block start as its shortcut."""
        return self._batch_norm("last", zero_init=self.zero_init_last_bn)

    def _shortcut(self, inputs, training):
        if not self.use_projection:
            return inputs
        x = inputs
        if self.sk_ratio > 0:
            if self.strides > 1:
                x = fixed_padding(x, 2)
            x = self.shortcut_pool(x)
        return self.shortcut_bn(self.shortcut_conv(x), training=training)

    def _merge(self, residual, shortcut):
        if self.se is not None:
            residual = self.se(residual)
        return ops.relu(residual + shortcut)

    def build(self, input_shape):
        trace_build(self, input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            use_projection=self.use_projection,
            sk_ratio=self.sk_ratio,
            se_ratio=self.se_ratio,
            zero_init_last_bn=self.zero_init_last_bn,
            **self._batch_norm_config(),
        )
        return config


@keras.saving.register_keras_serializable(package="simclr_tf")
class ResidualBlock(_BlockBase):
    """Basic block of ResNet-18/34: 3x3 conv (strided) - BN-ReLU - 3x3 conv - BN, plus shortcut.

    Example:
        block = ResidualBlock(filters=64, strides=2, use_projection=True)
        y = block(keras.random.uniform((2, 16, 16, 32)))  # (2, 8, 8, 64)
    """

    expansion = 1

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(filters, strides, **kwargs)
        dtype = self.dtype_policy
        self.conv_1 = Conv2DFixedPadding(filters, 3, strides, dtype=dtype, name="conv_1")
        self.bn_1 = self._batch_norm("bn_1")
        self.conv_2 = Conv2DFixedPadding(filters, 3, 1, dtype=dtype, name="conv_2")
        self.bn_2 = self._last_batch_norm()

    def call(self, inputs, training=False):
        shortcut = self._shortcut(inputs, training)
        x = ops.relu(self.bn_1(self.conv_1(inputs), training=training))
        x = self.bn_2(self.conv_2(x), training=training)
        return self._merge(x, shortcut)


@keras.saving.register_keras_serializable(package="simclr_tf")
class BottleneckBlock(_BlockBase):
    """Bottleneck of ResNet-50+: 1x1 - 3x3 (strided, v1.5) - 1x1 (4 x filters) convs, plus shortcut.

    With sk_ratio > 0 the 3x3 conv and its BN-ReLU become a SelectiveKernelConv2D.

    Example:
        block = BottleneckBlock(filters=16, strides=2, use_projection=True)
        y = block(keras.random.uniform((2, 16, 16, 32)))  # (2, 8, 8, 64)
    """

    expansion = 4

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(filters, strides, **kwargs)
        dtype = self.dtype_policy
        self.conv_1 = Conv2DFixedPadding(filters, 1, 1, dtype=dtype, name="conv_1")
        self.bn_1 = self._batch_norm("bn_1")
        if self.sk_ratio > 0:
            self.sk_conv = SelectiveKernelConv2D(
                filters, strides, self.sk_ratio, dtype=dtype, name="sk_conv", **self._batch_norm_config()
            )
        else:
            self.conv_2 = Conv2DFixedPadding(filters, 3, strides, dtype=dtype, name="conv_2")
            self.bn_2 = self._batch_norm("bn_2")
        self.conv_3 = Conv2DFixedPadding(4 * filters, 1, 1, dtype=dtype, name="conv_3")
        self.bn_3 = self._last_batch_norm()

    def call(self, inputs, training=False):
        shortcut = self._shortcut(inputs, training)
        x = ops.relu(self.bn_1(self.conv_1(inputs), training=training))
        if self.sk_ratio > 0:
            x = self.sk_conv(x, training=training)
        else:
            x = ops.relu(self.bn_2(self.conv_2(x), training=training))
        x = self.bn_3(self.conv_3(x), training=training)
        return self._merge(x, shortcut)


BLOCKS = {"basic": ResidualBlock, "bottleneck": BottleneckBlock}
