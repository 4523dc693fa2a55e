"""Conv helpers shared by the ResNet layers: widths, the reference's init, 1x1 convs, fixed padding."""

import keras
from keras import ops


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
