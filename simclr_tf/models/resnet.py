"""The SimCLR encoder f(.): ResNet v1.5 returning a dict of named feature maps.

The base encoder f(.) of SimCLR, Chen et al. 2020, arXiv:2002.05709, §2.1.
"""

import keras
from keras import ops

from simclr_tf.models.batch_norm_mixin import BatchNormMixin
from simclr_tf.models.block_group import BlockGroup
from simclr_tf.models.conv2d_fixed_padding import Conv2DFixedPadding
from simclr_tf.models.conv_utils import channels
from simclr_tf.models.layer_utils import check_ratio, trace_build

# depth -> (block type, number of blocks in each of the four groups)
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}

OUTPUT_NAMES = (
    "initial_conv",
    "initial_max_pool",
    "block_group1",
    "block_group2",
    "block_group3",
    "block_group4",
    "final_avg_pool",
)


@keras.saving.register_keras_serializable(package="simclr_tf")
class ResNet(BatchNormMixin, keras.Model):
    """ResNet v1.5 encoder of SimCLR, with the reference's options.

    The encoder f(.) of SimCLR, Chen et al. 2020, arXiv:2002.05709, §2.1;
    selective kernels from SimCLRv2, Chen et al. 2020, arXiv:2006.10029.

    The topology is the SimCLR TF2 reference's (TF's official ResNet): post-
    activation blocks, stride on the 3x3 conv of bottlenecks, a projection
    shortcut (1x1 conv + BN) on the first block of every group (also in group 1
    of ResNet-18/34), bias-free convs with VarianceScaling(1.0, fan_in) init.
    The last BN of each block starts with gamma = 0 (`zero_init_last_bn`), so
    every block starts as relu(shortcut). Weight decay is not in the model: the
    LARS optimizer applies it, skipping variables whose path contains
    "batch_normalization" (every BN layer here) or "bias".

    Stems: ImageNet - 7x7 stride-2 conv, BN-ReLU, 3x3 stride-2 max-pool; with
    sk_ratio > 0 the 7x7 conv becomes three 3x3 convs (ResNet-D deep stem).
    CIFAR (`cifar_stem=True`, SimCLR Appendix B.9, for images <= 32 px) - one
    3x3 stride-1 conv, BN-ReLU, no max-pool.

    `call(images, training=False)` takes float NHWC images in [0, 1] and returns
    a dict (the reference's named tensors):
      initial_conv: the stem's last conv output, BEFORE its BN-ReLU (stride 2,
        or 1 with the CIFAR stem).
      initial_max_pool: the stem's output, after BN-ReLU and max-pool (stride 4).
        With the CIFAR stem there is no pool, so it is BN-ReLU(initial_conv), not
        initial_conv itself, as in the reference.
      block_group1..4: output of each group (strides 4, 8, 16, 32 with the
        ImageNet stem; 1, 2, 4, 8 with the CIFAR stem).
      final_avg_pool: h, the global average pool of block_group4, shape
        (batch, 512 * expansion * width), ALWAYS float32 (computed in float32
        from block_group4), so heads and losses get float32 under the
        "mixed_bfloat16" policy. The other outputs are in the compute dtype.

    Example:
        encoder = ResNet(depth=18, width_multiplier=1.0, cifar_stem=True)
        features = encoder(keras.random.uniform((8, 32, 32, 3)), training=True)
        h = features["final_avg_pool"]  # (8, 512)
    """

    def __init__(
        self,
        depth: int = 50,
        width_multiplier: float = 1.0,
        cifar_stem: bool = False,
        sk_ratio: float = 0.0,
        se_ratio: float = 0.0,
        batch_norm_momentum: float = 0.9,
        batch_norm_epsilon: float = 1e-5,
        global_bn: bool = True,
        zero_init_last_bn: bool = True,
        **kwargs,
    ):
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        if not width_multiplier > 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
        check_ratio("sk_ratio", sk_ratio)
        check_ratio("se_ratio", se_ratio)
        super().__init__(**kwargs)
        self._init_batch_norm(batch_norm_momentum, batch_norm_epsilon, global_bn)
        self.depth = depth
        self.width_multiplier = width_multiplier
        self.cifar_stem = cifar_stem
        self.sk_ratio = sk_ratio
        self.se_ratio = se_ratio
        self.zero_init_last_bn = zero_init_last_bn

        # Stem. initial_conv is the conv whose output is named "initial_conv"; the
        # ResNet-D deep stem (sk_ratio > 0, not with the CIFAR stem) puts two
        # 3x3 conv + BN-ReLU pairs of half width before it.
        width = channels(64, width_multiplier)
        dtype = self.dtype_policy
        self.deep_stem_convs, self.deep_stem_bns = [], []
        if cifar_stem:
            self.initial_conv = Conv2DFixedPadding(width, 3, 1, dtype=dtype, name="initial_conv")
        elif sk_ratio > 0:
            half_width = channels(32, width_multiplier)
            for i, strides in enumerate((2, 1)):
                conv = Conv2DFixedPadding(half_width, 3, strides, dtype=dtype, name=f"stem_{i}")
                self.deep_stem_convs.append(conv)
                self.deep_stem_bns.append(self._batch_norm(f"stem_{i}"))
            self.initial_conv = Conv2DFixedPadding(width, 3, 1, dtype=dtype, name="initial_conv")
        else:
            self.initial_conv = Conv2DFixedPadding(width, 7, 2, dtype=dtype, name="initial_conv")
        self.initial_bn = self._batch_norm("initial")
        if not cifar_stem:
            self.max_pool = keras.layers.MaxPooling2D(3, 2, padding="same", dtype=dtype, name="max_pool")

        block_type, blocks_per_group = DEPTHS[depth]
        block_kwargs = dict(sk_ratio=sk_ratio, se_ratio=se_ratio, zero_init_last_bn=zero_init_last_bn)
        block_kwargs.update(self._batch_norm_config())
        self.block_groups = []
        for i, (base, num_blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_group)):
            self.block_groups.append(
                BlockGroup(
                    channels(base, width_multiplier),
                    num_blocks,
                    strides=1 if i == 0 else 2,
                    block_type=block_type,
                    block_kwargs=block_kwargs,
                    dtype=dtype,
                    name=f"block_group{i + 1}",
                )
            )

    @property
    def num_features(self) -> int:
        """Dimension of h = final_avg_pool (2048 for ResNet-50 1x)."""
        expansion = 4 if DEPTHS[self.depth][0] == "bottleneck" else 1
        return expansion * channels(512, self.width_multiplier)

    def build(self, input_shape):
        trace_build(self, input_shape)

    def call(self, images, training=False):
        outputs = {}
        x = images
        for conv, bn in zip(self.deep_stem_convs, self.deep_stem_bns):
            x = ops.relu(bn(conv(x), training=training))
        x = self.initial_conv(x)
        outputs["initial_conv"] = x
        x = ops.relu(self.initial_bn(x, training=training))
        if not self.cifar_stem:
            x = self.max_pool(x)
        outputs["initial_max_pool"] = x
        for i, group in enumerate(self.block_groups):
            x = group(x, training=training)
            outputs[f"block_group{i + 1}"] = x
        outputs["final_avg_pool"] = ops.mean(ops.cast(x, "float32"), axis=(1, 2))
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            depth=self.depth,
            width_multiplier=self.width_multiplier,
            cifar_stem=self.cifar_stem,
            sk_ratio=self.sk_ratio,
            se_ratio=self.se_ratio,
            zero_init_last_bn=self.zero_init_last_bn,
            **self._batch_norm_config(),
        )
        return config
