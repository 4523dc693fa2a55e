"""The bias-free conv of the ResNet, padded as TF's official ResNet (explicitly when strided)."""

import keras

from simclr_tf.models.conv_utils import conv_initializer, fixed_padding
from simclr_tf.models.layer_utils import check_positive_int


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
