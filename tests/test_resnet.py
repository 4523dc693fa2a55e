"""ResNet encoder: parameter counts, named outputs, zero-init, SK/SE, arguments, Keras conventions."""

import gc

import keras
import numpy as np
import pytest

from keras_checks import check_layer_roundtrip
from simclr_tf.models import conv_utils
from simclr_tf.models.block_group import BlockGroup
from simclr_tf.models.conv2d_fixed_padding import Conv2DFixedPadding
from simclr_tf.models.resnet import OUTPUT_NAMES, ResNet
from simclr_tf.models.resnet_blocks import BottleneckBlock, ResidualBlock
from simclr_tf.models.selective_kernel import SelectiveKernelConv2D
from simclr_tf.models.squeeze_excitation import SqueezeExcitation


def _images(batch=2, size=16, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, size, size, 3)).astype(np.float32)


def _num_trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


# --- parameter counts (no classifier): torchvision / TF-official ResNet counts
# minus the fc layer, plus the group-1 projection shortcut of ResNet-18/34. ----


@pytest.mark.parametrize(
    "depth, cifar_stem, expected",
    [(18, False, 11_180_736), (18, True, 11_173_056), (34, False, 21_288_896), (50, False, 23_508_032)],
)
def test_parameter_counts(depth, cifar_stem, expected):
    model = ResNet(depth=depth, cifar_stem=cifar_stem)
    model.build((None, 224, 224, 3))  # Symbolic only: no image goes through.
    assert _num_trainable(model) == expected


@pytest.mark.parametrize(
    "depth, width_multiplier, expected",
    [(50, 2, 93_907_072), (50, 4, 375_378_176), (101, 1, 42_500_160)],
)
def test_parameter_counts_of_big_models(depth, width_multiplier, expected):
    model = ResNet(depth=depth, width_multiplier=width_multiplier)
    model.build((None, 224, 224, 3))
    count = _num_trainable(model)
    del model
    keras.backend.clear_session()
    gc.collect()
    assert count == expected


def test_projection_shortcut_on_first_block_of_every_group():
    model = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True)
    model.build((None, 16, 16, 3))
    for group in model.block_groups:
        assert [block.use_projection for block in group.blocks] == [True, False]
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    assert len(kernels) == 1 + 8 * 2 + 4  # stem + 2 convs per block + 4 shortcuts


# --- named outputs -------------------------------------------------------------


@pytest.mark.parametrize(
    "depth, cifar_stem, size, expected",
    [
        # ResNet-18 at 0.25x: widths 16, 32, 64, 128. ImageNet stem: strides 2, 4, 4, 8, 16, 32.
        (18, False, 32, {"initial_conv": (16, 16), "initial_max_pool": (8, 16), "block_group1": (8, 16),
                         "block_group2": (4, 32), "block_group3": (2, 64), "block_group4": (1, 128)}),
        # CIFAR stem: strides 1, 1, 1, 2, 4, 8.
        (18, True, 16, {"initial_conv": (16, 16), "initial_max_pool": (16, 16), "block_group1": (16, 16),
                        "block_group2": (8, 32), "block_group3": (4, 64), "block_group4": (2, 128)}),
        # ResNet-50 at 0.25x: bottlenecks output 4x their width.
        (50, True, 16, {"initial_conv": (16, 16), "initial_max_pool": (16, 16), "block_group1": (16, 64),
                        "block_group2": (8, 128), "block_group3": (4, 256), "block_group4": (2, 512)}),
    ],
)
def test_output_shapes(depth, cifar_stem, size, expected):
    model = ResNet(depth=depth, width_multiplier=0.25, cifar_stem=cifar_stem)
    outputs = model(_images(2, size), training=False)
    assert tuple(outputs) == OUTPUT_NAMES
    for name, (side, width) in expected.items():
        assert tuple(outputs[name].shape) == (2, side, side, width), name
    final_width = expected["block_group4"][1]
    assert tuple(outputs["final_avg_pool"].shape) == (2, final_width) == (2, model.num_features)


def test_final_avg_pool_is_the_mean_of_block_group4():
    model = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True)
    outputs = model(_images(3, 16), training=True)
    np.testing.assert_allclose(
        outputs["final_avg_pool"], np.mean(outputs["block_group4"], axis=(1, 2)), rtol=1e-5, atol=1e-6
    )


def test_cifar_initial_max_pool_is_bn_relu_of_initial_conv():
    """With no max-pool, the reference's initial_max_pool is the stem's BN-ReLU output."""
    model = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True, batch_norm_epsilon=1e-3)
    model.build((None, 16, 16, 3))
    rng = np.random.default_rng(3)
    bn = model.initial_bn
    gamma, beta, mean = (rng.normal(size=v.shape).astype(np.float32) for v in bn.weights[:3])
    variance = rng.uniform(0.5, 2.0, size=bn.weights[3].shape).astype(np.float32)
    bn.set_weights([gamma, beta, mean, variance])
    outputs = model(_images(2, 16), training=False)
    conv = np.asarray(outputs["initial_conv"])
    expected = np.maximum(gamma * (conv - mean) / np.sqrt(variance + 1e-3) + beta, 0.0)
    np.testing.assert_allclose(outputs["initial_max_pool"], expected, rtol=1e-5, atol=1e-5)


def test_final_avg_pool_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True)
        outputs = model(_images(2, 8), training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert outputs["block_group4"].dtype == "bfloat16"
    assert outputs["final_avg_pool"].dtype == "float32"
    assert all(v.dtype == "float32" for v in model.variables)


# --- padding and initialisation ------------------------------------------------


def test_strided_conv_pads_like_tf_official_resnet():
    """A 3x3 stride-2 conv on an even side pads (1, 1), not (0, 1) as 'same' would."""
    conv = Conv2DFixedPadding(filters=1, kernel_size=3, strides=2)
    conv.build((None, 4, 4, 1))
    conv.set_weights([np.ones((3, 3, 1, 1), np.float32)])
    out = conv(np.ones((1, 4, 4, 1), np.float32))
    np.testing.assert_allclose(out[0, :, :, 0], [[4.0, 6.0], [6.0, 9.0]])


@pytest.mark.parametrize("zero_init_last_bn", [True, False])
def test_last_batch_norm_of_every_block_is_zero_initialised(zero_init_last_bn):
    model = ResNet(depth=50, width_multiplier=0.125, zero_init_last_bn=zero_init_last_bn)
    model.build((None, 32, 32, 3))
    blocks = [block for group in model.block_groups for block in group.blocks]
    assert len(blocks) == 16
    for block in blocks:
        np.testing.assert_array_equal(block.bn_3.gamma.numpy(), 0.0 if zero_init_last_bn else 1.0)
        np.testing.assert_array_equal(block.bn_1.gamma.numpy(), 1.0)
    for group in model.block_groups:
        np.testing.assert_array_equal(group.blocks[0].shortcut_bn.gamma.numpy(), 1.0)


@pytest.mark.parametrize("block_class", [ResidualBlock, BottleneckBlock])
@pytest.mark.parametrize("training", [False, True])
def test_zero_initialised_block_starts_as_its_shortcut(block_class, training):
    """relu(0 + x) = x for the post-ReLU (non-negative) inputs a block receives."""
    filters = 4
    channels = filters * block_class.expansion
    block = block_class(filters, use_projection=False)
    inputs = np.random.default_rng(0).uniform(size=(2, 6, 6, channels)).astype(np.float32)
    np.testing.assert_allclose(block(inputs, training=training), inputs, atol=1e-6)
    projecting = block_class(filters, strides=2, use_projection=True)
    outputs = projecting(inputs, training=training)
    shortcut = projecting.shortcut_bn(projecting.shortcut_conv(inputs), training=training)
    np.testing.assert_allclose(outputs, np.maximum(shortcut, 0.0), atol=1e-6)


def test_conv_initialisation_is_fan_in_variance_scaling():
    conv = Conv2DFixedPadding(filters=256, kernel_size=3)
    conv.build((None, 8, 8, 128))
    kernel = conv.conv.kernel.numpy()
    # Truncated normal at +-2 stddev with scale 1: std = sqrt(1 / fan_in) overall.
    assert np.std(kernel) == pytest.approx(np.sqrt(1.0 / (3 * 3 * 128)), rel=0.03)


def test_batch_norm_settings_and_variable_names():
    model = ResNet(depth=50, width_multiplier=0.125, se_ratio=0.25, global_bn=False, batch_norm_momentum=0.8)
    model.build((None, 32, 32, 3))
    layers = model._flatten_layers()
    batch_norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms
    assert all(bn.momentum == 0.8 and bn.epsilon == 1e-5 and not bn.synchronized for bn in batch_norms)
    assert ResNet(depth=18).block_groups[0].blocks[0].bn_1.synchronized  # global_bn=True by default
    for variable in model.variables:
        is_bn = any(variable is w for bn in batch_norms for w in bn.weights)
        assert ("batch_normalization" in variable.path) == is_bn, variable.path
        if not is_bn:  # Conv kernels get weight decay; SE conv biases do not.
            assert variable.path.endswith("/kernel") or variable.path.endswith("/bias"), variable.path
            assert ("bias" in variable.path) == variable.path.endswith("/bias"), variable.path


# --- SimCLRv2 options -------------------------------------------------------------


@pytest.mark.parametrize("depth", [18, 50])
def test_selective_kernels_and_squeeze_excitation_build_and_run(depth):
    model = ResNet(depth=depth, width_multiplier=0.125, sk_ratio=0.0625, se_ratio=0.25)
    outputs = model(_images(2, 32), training=True)
    assert tuple(outputs["block_group4"].shape)[:3] == (2, 1, 1)
    assert len(model.deep_stem_convs) == 2  # ResNet-D stem: three 3x3 convs in all
    for group in model.block_groups:
        assert hasattr(group.blocks[0], "shortcut_pool")  # ResNet-D shortcut
        assert all(block.se is not None for block in group.blocks)
        if depth == 50:
            assert all(isinstance(block.sk_conv, SelectiveKernelConv2D) for block in group.blocks)
    assert np.all(np.isfinite(outputs["final_avg_pool"]))


def test_resnet_d_shortcut_matches_average_pool_then_conv():
    block = ResidualBlock(4, strides=2, use_projection=True, sk_ratio=0.0625)
    inputs = np.random.default_rng(0).uniform(size=(1, 4, 4, 4)).astype(np.float32)
    block(inputs)
    kernel = block.shortcut_conv.conv.kernel.numpy()[0, 0]  # (in, out)
    pooled = inputs.reshape(1, 2, 2, 2, 2, 4).mean(axis=(2, 4))  # 2x2 stride-2 windows
    shortcut = block.shortcut_bn(block.shortcut_conv(block.shortcut_pool(inputs)), training=False)
    np.testing.assert_allclose(shortcut, block.shortcut_bn(pooled @ kernel, training=False), atol=1e-5)
    np.testing.assert_allclose(block._shortcut(inputs, training=False), shortcut, atol=1e-6)


def test_fractional_width_rounds_channel_counts():
    assert conv_utils.channels(64, 0.3) == 19
    assert conv_utils.channels(64, 0.001) == 1
    assert ResNet(depth=18, width_multiplier=0.3).num_features == 154


# --- arguments and Keras conventions -----------------------------------------------


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"depth": 42}, "depth"),
        ({"width_multiplier": 0}, "width_multiplier"),
        ({"width_multiplier": -1.0}, "width_multiplier"),
        ({"sk_ratio": 1.0}, "sk_ratio"),
        ({"se_ratio": -0.1}, "se_ratio"),
        ({"batch_norm_momentum": 1.5}, "batch_norm_momentum"),
        ({"batch_norm_epsilon": 0.0}, "batch_norm_epsilon"),
    ],
)
def test_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument) as error:
        ResNet(**kwargs)
    assert repr(list(kwargs.values())[0]) in str(error.value)


def test_resnet_keras_roundtrip():
    model = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True, global_bn=False, name="encoder")
    outputs = check_layer_roundtrip(model, _images(2, 8))
    assert set(outputs) == set(OUTPUT_NAMES)
    config = model.get_config()
    assert {k: config[k] for k in ("depth", "width_multiplier", "cifar_stem", "global_bn")} == {
        "depth": 18, "width_multiplier": 0.125, "cifar_stem": True, "global_bn": False,
    }


def test_resnet_with_sk_and_se_keras_roundtrip():
    model = ResNet(depth=18, width_multiplier=0.0625, sk_ratio=0.0625, se_ratio=0.25)
    check_layer_roundtrip(model, _images(2, 32))  # Bottleneck SK blocks: see test_block_keras_roundtrip.


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (Conv2DFixedPadding(4, 7, 2), (2, 9, 9, 3)),
        (ResidualBlock(4, 2, use_projection=True, se_ratio=0.5), (2, 8, 8, 3)),
        (BottleneckBlock(2, 1, use_projection=True, sk_ratio=0.5, zero_init_last_bn=False), (2, 8, 8, 3)),
        (SelectiveKernelConv2D(4, 2, sk_ratio=0.25, min_dim=2), (2, 8, 8, 3)),
        (SqueezeExcitation(4, 0.5), (2, 4, 4, 6)),
        (BlockGroup(2, 2, 2, block_type="bottleneck", block_kwargs={"global_bn": False}), (2, 8, 8, 3)),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, keras.layers.Layer) else None,
)
def test_block_keras_roundtrip(layer, input_shape):
    inputs = np.random.default_rng(0).uniform(size=input_shape).astype(np.float32)
    check_layer_roundtrip(layer, inputs)


@pytest.mark.parametrize(
    "factory, argument",
    [
        (lambda: Conv2DFixedPadding(0, 3), "filters"),
        (lambda: ResidualBlock(4, strides=0), "strides"),
        (lambda: BottleneckBlock(4, sk_ratio=1.5), "sk_ratio"),
        (lambda: SqueezeExcitation(4, se_ratio=0.0), "se_ratio"),
        (lambda: BlockGroup(4, 2, block_type="wide"), "block_type"),
    ],
)
def test_block_bad_arguments_raise(factory, argument):
    with pytest.raises(ValueError, match=argument):
        factory()
