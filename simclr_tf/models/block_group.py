"""A group of ResNet blocks of one kind and width: one of the encoder's four stages."""

import keras

from simclr_tf.models.layer_utils import check_positive_int, trace_build
from simclr_tf.models.resnet_blocks import BLOCKS


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
