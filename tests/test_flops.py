"""The analytic FLOPs counter (benchmarks/flops.py) against hand-computed MACs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import flops


def test_conv_and_dense_macs_match_hand_count():
    # 8x8x3 input, 3x3 conv to 4 channels, stride 2, "same": 4x4x4 outputs, each 3*3*3 MACs;
    # a 1x1 conv to 5 channels on 4x4x4: 4*4*5*4; then flatten 80 -> dense 6: 80*6.
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, strides=2, padding="same"),
        keras.layers.Conv2D(5, 1),
        keras.layers.Flatten(),
        keras.layers.Dense(6),
    ])
    expected = 4 * 4 * 4 * 27 + 4 * 4 * 5 * 4 + 80 * 6
    by_scope = flops.forward_macs(lambda x: model(x), (1, 8, 8, 3))
    assert sum(by_scope.values()) == expected
    # Linear in the batch.
    assert sum(flops.forward_macs(lambda x: model(x), (3, 8, 8, 3)).values()) == 3 * expected


def test_depthwise_and_transposed_matmul():
    depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid")
    depthwise.build((1, 6, 6, 4))
    # Output 4x4x8, each 3*3 MACs.
    assert sum(flops.forward_macs(depthwise, (1, 6, 6, 4)).values()) == 4 * 4 * 8 * 9
    b = tf.constant(np.ones((7, 5), np.float32))
    # a is [k=7, m=2] transposed: m*n*k = 2*5*7.
    assert sum(flops.forward_macs(lambda a: tf.matmul(a, b, transpose_a=True), (7, 2)).values()) == 2 * 5 * 7


def test_resnet18_cifar_is_the_known_figure():
    model = flops.build_simclr_model(18, 1.0, 32, cifar_stem=True)
    parts = flops.model_forward_flops(model, 32)
    # ResNet-18, CIFAR stem, 32 px: ~0.56 GMACs; the 2-layer-wide 512-d head adds 0.59 MMACs.
    assert parts["resnet"] / 2 == pytest.approx(0.5566e9, rel=0.01)
    assert parts["projection_head"] / 2 == 512 * 512 * 2 + 512 * 128
    assert parts["supervised_head"] / 2 == 512 * 10
    assert parts["other"] == 0


def test_resnet50_224_is_the_known_figure():
    model = flops.build_simclr_model(50, 1.0, 224, cifar_stem=False)
    # ResNet-50 (stride on the 3x3 conv) at 224 px: ~4.1 GMACs = 8.2 GFLOPs forward, without the fc.
    assert flops.model_forward_flops(model, 224)["resnet"] / 2 == pytest.approx(4.09e9, rel=0.01)
