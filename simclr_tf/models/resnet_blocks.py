"""Building blocks of the SimCLR ResNet: padded convs, residual/bottleneck blocks, SK, SE.

The topology follows the SimCLR TF2 reference (itself TF's official ResNet):
post-activation ResNet v1 with the stride on the 3x3 conv of bottleneck blocks
("v1.5"), a projection shortcut (1x1 conv + BN) on the first block of EVERY
group, and, when selective kernels are on (SimCLRv2), ResNet-D shortcuts
(2x2 average pool, then a stride-1 1x1 conv; https://arxiv.org/abs/1812.01187).
"""

from typing import Any

import keras
from keras import ops

from simclr_tf.models.fused_batch_norm import FusedBatchNormalization


def channels(base: int, width_multiplier: float) -> int:
    """Channel count of a layer with `base` channels at width 1x (at least 1)."""
    return max(1, int(round(base * width_multiplier)))


def conv_initializer() -> keras.initializers.Initializer:
    """VarianceScaling(scale=1, fan_in, truncated normal): the reference's conv init."""
    return keras.initializers.VarianceScaling()


def pointwise_conv(filters: int, name: str, dtype, use_bias: bool = False) -> keras.layers.Conv2D:
    """A 1x1 conv with the reference's initialisation (SK mixing and SE layers)."""
    return keras.layers.Conv2D(
        filters, 1, use_bias=use_bias, kernel_initializer=conv_initializer(), dtype=dtype, name=name
    )


def fixed_padding(inputs, kernel_size: int):
    """Pads H and W by kernel_size - 1 in total, independently of the input size.

    TF's official ResNet pads explicitly before a strided 'valid' conv, so that
    the padding does not depend on whether the input side is even ('same'
    padding would pad (0, 1) for a 3x3 stride-2 conv on an even side).
    """
    pad_total = kernel_size - 1
    pad_begin = pad_total // 2
    pad_end = pad_total - pad_begin
    return ops.pad(inputs, [[0, 0], [pad_begin, pad_end], [pad_begin, pad_end], [0, 0]])


def trace_build(layer: keras.layers.Layer, input_shape) -> None:
    """Creates the variables of `layer`'s sub-layers by calling it on a symbolic input.

    Used by `build()` of composite layers, so that `layer.build(shape)` and
    loading a saved `.keras` file create every variable before any real call.
    """
    layer.call(keras.KerasTensor(tuple(input_shape), dtype="float32"), training=False)


def check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_ratio(name: str, value: Any) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


@keras.saving.register_keras_serializable(package="simclr_tf")
class Conv2DFixedPadding(keras.layers.Layer):
    """Bias-free conv: 'same' padding at stride 1, explicit `fixed_padding` + 'valid' when strided.

    Example:
        conv = Conv2DFixedPadding(filters=64, kernel_size=7, strides=2)
        y = conv(keras.random.uniform((2, 32, 32, 3)))  # (2, 16, 16, 64)
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("filters", filters), ("kernel_size", kernel_size), ("strides", strides)):
            check_positive_int(name, value)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same" if strides == 1 else "valid",
            use_bias=False,
            kernel_initializer=conv_initializer(),
            dtype=self.dtype_policy,
            name="conv2d",
        )

    def build(self, input_shape):
        if self.strides > 1:
            pad = self.kernel_size - 1
            input_shape = [d if d is None or i in (0, 3) else d + pad for i, d in enumerate(input_shape)]
        self.conv.build(tuple(input_shape))

    def call(self, inputs, training=False):
        if self.strides > 1:
            inputs = fixed_padding(inputs, self.kernel_size)
        return self.conv(inputs)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides)
        return config


class BatchNormMixin:
    """Shared batch-norm settings of the blocks below (BN momentum, epsilon, global BN)."""

    def _init_batch_norm(self, batch_norm_momentum, batch_norm_epsilon, global_bn):
        if not 0.0 <= batch_norm_momentum <= 1.0:
            raise ValueError(f"batch_norm_momentum must be in [0, 1], got {batch_norm_momentum!r}")
        if not batch_norm_epsilon > 0:
            raise ValueError(f"batch_norm_epsilon must be > 0, got {batch_norm_epsilon!r}")
        self.batch_norm_momentum = batch_norm_momentum
        self.batch_norm_epsilon = batch_norm_epsilon
        self.global_bn = global_bn

    def _batch_norm(self, name: str, zero_init: bool = False, center: bool = True):
        """A BatchNormalization layer whose name contains 'batch_normalization' (LARS excludes it)."""
        return FusedBatchNormalization(
            momentum=self.batch_norm_momentum,
            epsilon=self.batch_norm_epsilon,
            center=center,
            gamma_initializer="zeros" if zero_init else "ones",
            synchronized=self.global_bn,
            dtype=self.dtype_policy,
            name=f"{name}_batch_normalization",
        )

    def _batch_norm_config(self) -> dict:
        return dict(
            batch_norm_momentum=self.batch_norm_momentum,
            batch_norm_epsilon=self.batch_norm_epsilon,
            global_bn=self.global_bn,
        )


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


@keras.saving.register_keras_serializable(package="simclr_tf")
class BlockGroup(keras.layers.Layer):
    """`num_blocks` blocks of one kind; the first is strided and has the projection shortcut.

    `block_kwargs` (sk_ratio, se_ratio, zero_init_last_bn, BN settings) go to
    every block.

    Example:
        group = BlockGroup(filters=16, num_blocks=2, strides=2, block_type="bottleneck")
        y = group(keras.random.uniform((2, 16, 16, 32)))  # (2, 8, 8, 64)
    """

    def __init__(
        self,
        filters: int,
        num_blocks: int,
        strides: int = 1,
        block_type: str = "bottleneck",
        block_kwargs: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("num_blocks", num_blocks)
        if block_type not in BLOCKS:
            raise ValueError(f"block_type must be one of {sorted(BLOCKS)}, got {block_type!r}")
        self.filters = filters
        self.num_blocks = num_blocks
        self.strides = strides
        self.block_type = block_type
        self.block_kwargs = dict(block_kwargs or {})
        block_class = BLOCKS[block_type]
        self.blocks = [
            block_class(
                filters,
                strides if i == 0 else 1,
                use_projection=i == 0,
                dtype=self.dtype_policy,
                name=f"block{i + 1}",
                **self.block_kwargs,
            )
            for i in range(num_blocks)
        ]

    def build(self, input_shape):
        trace_build(self, input_shape)

    def call(self, inputs, training=False):
        for block in self.blocks:
            inputs = block(inputs, training=training)
        return inputs

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            num_blocks=self.num_blocks,
            strides=self.strides,
            block_type=self.block_type,
            block_kwargs=self.block_kwargs,
        )
        return config
