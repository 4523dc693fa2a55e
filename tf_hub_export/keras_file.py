"""A run as a native Keras 3 file that loads without simclr_tf: built-in layers only.

    python -m tf_hub_export --model_dir=DIR --keras_file=encoder.keras
    model = keras.saving.load_model("encoder.keras")      # no `import simclr_tf`, safe_mode=True
    outputs = model(images, training=False)               # {"final_avg_pool": ..., "logits_sup": ...}

Our model is made of custom layers (ResNet blocks, the fixed-padding conv, selective kernels,
the fused batch norm), which a .keras file can only name, so loading it would need simclr_tf.
This module rebuilds the same network as a functional keras.Model of built-in layers and copies
every weight into it: a strided conv is ZeroPadding2D + Conv2D("valid"), a selective kernel's
two streams are two Conv2D / BatchNormalization halves of its kernel and statistics, and its
softmax over the two streams is sigmoid(l0 - l1). Nothing is a Lambda layer, so Keras's
default safe_mode loads it.

Differences from the model in simclr_tf, by design: float32; the supervised head (if any) reads
its input WITH gradient (fine-tuning semantics), also for a pretraining run whose online linear
head read stop_gradient(h); batch norm is keras.layers.BatchNormalization (two-pass variance, or
synchronized=True where the run computes E[x^2] - E[x]^2).
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from simclr_tf.errors import PathError
from simclr_tf.io_utils import is_remote
from simclr_tf.models import ProjectionHead, ResNet, SimCLRModel
from simclr_tf.models.conv2d_fixed_padding import Conv2DFixedPadding
from simclr_tf.models.resnet_blocks import BottleneckBlock
from simclr_tf.run_dir import RunDir
from simclr_tf.training.checkpoints import model_from_run

layers = keras.layers


class _Builder:
    """Creates built-in layers on symbolic tensors and remembers the weights each one takes."""

    def __init__(self):
        self.assignments: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []

    def apply(self, layer, inputs, weights=()):
        outputs = layer(inputs)
        if weights:
            self.assignments.append((layer, [np.asarray(w) for w in weights]))
        return outputs

    def conv(self, ours: Conv2DFixedPadding, x, name: str, kernel=None):
        if ours.strides > 1:
            pad = ours.kernel_size - 1
            x = layers.ZeroPadding2D(((pad // 2, pad - pad // 2),) * 2, name=f"{name}.pad")(x)
        kernel = ours.conv.kernel.numpy() if kernel is None else kernel
        conv = layers.Conv2D(kernel.shape[-1], ours.kernel_size, strides=ours.strides,
                             padding="same" if ours.strides == 1 else "valid", use_bias=False, name=name)
        return self.apply(conv, x, [kernel])

    def pointwise(self, ours: keras.layers.Conv2D, x, name: str, columns=slice(None)):
        weights = [w.numpy()[..., columns] for w in ours.weights]
        conv = layers.Conv2D(weights[0].shape[-1], 1, use_bias=ours.use_bias, name=name)
        return self.apply(conv, x, weights)

    def batch_norm(self, ours: keras.layers.BatchNormalization, x, name: str, channels=slice(None)):
        bn = layers.BatchNormalization(momentum=ours.momentum, epsilon=ours.epsilon, center=ours.center,
                                       scale=ours.scale, synchronized=ours.synchronized, name=name)
        return self.apply(bn, x, [w.numpy()[channels] for w in ours.weights])

    def dense(self, ours: keras.layers.Dense, x, name: str):
        dense = layers.Dense(ours.units, use_bias=ours.use_bias, name=name)
        return self.apply(dense, x, [w.numpy() for w in ours.weights])

    def conv_bn_relu(self, conv, bn, x, name: str):
        return layers.ReLU(name=f"{name}.relu")(self.batch_norm(bn, self.conv(conv, x, name), f"{name}.bn"))


def _selective_kernel(b: _Builder, sk, x, name: str):
    """Two 3x3 streams mixed per channel by softmax over the streams of their pooled sum."""
    filters = sk.filters
    kernel = sk.streams_conv.conv.kernel.numpy()
    streams = []
    for i, channels in enumerate((slice(0, filters), slice(filters, 2 * filters))):
        s = b.conv(sk.streams_conv, x, f"{name}.stream{i}", kernel=kernel[..., channels])
        s = b.batch_norm(sk.streams_bn, s, f"{name}.stream{i}_bn", channels=channels)
        streams.append(layers.ReLU(name=f"{name}.stream{i}_relu")(s))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}.pool")(layers.Add(name=f"{name}.sum")(streams))
    g = b.pointwise(sk.mixing_conv_0, pooled, f"{name}.mixing_conv_0")
    g = layers.ReLU(name=f"{name}.mixing_relu")(b.batch_norm(sk.mixing_bn, g, f"{name}.mixing_bn"))
    logits = [b.pointwise(sk.mixing_conv_1, g, f"{name}.mixing_conv_1_{i}", columns=channels)
              for i, channels in enumerate((slice(0, filters), slice(filters, 2 * filters)))]
    # softmax([l0, l1])[0] = sigmoid(l0 - l1); the mix is s1 + a0 * (s0 - s1).
    weight_0 = layers.Activation("sigmoid", name=f"{name}.weight0")(layers.Subtract(name=f"{name}.logit_diff")(logits))
    difference = layers.Subtract(name=f"{name}.stream_diff")(streams)
    return layers.Add(name=f"{name}.mix")([streams[1], layers.Multiply(name=f"{name}.weighted")([weight_0, difference])])


def _block(b: _Builder, block, x, name: str):
    shortcut = x
    if block.use_projection:
        s = x
        if block.sk_ratio > 0:  # ResNet-D: average-pool, then a stride-1 1x1 conv.
            if block.strides > 1:
                s = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}.shortcut_pad")(s)
            pool = block.shortcut_pool
            s = layers.AveragePooling2D(pool.pool_size, pool.strides, padding=pool.padding,
                                        name=f"{name}.shortcut_pool")(s)
        shortcut = b.batch_norm(block.shortcut_bn, b.conv(block.shortcut_conv, s, f"{name}.shortcut"),
                                f"{name}.shortcut_bn")
    r = b.conv_bn_relu(block.conv_1, block.bn_1, x, f"{name}.conv_1")
    if isinstance(block, BottleneckBlock):
        if block.sk_ratio > 0:
            r = _selective_kernel(b, block.sk_conv, r, f"{name}.sk_conv")
        else:
            r = b.conv_bn_relu(block.conv_2, block.bn_2, r, f"{name}.conv_2")
        r = b.batch_norm(block.bn_3, b.conv(block.conv_3, r, f"{name}.conv_3"), f"{name}.conv_3_bn")
    else:
        r = b.batch_norm(block.bn_2, b.conv(block.conv_2, r, f"{name}.conv_2"), f"{name}.conv_2_bn")
    if block.se is not None:
        se = block.se
        gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}.se_pool")(r)
        gate = layers.ReLU(name=f"{name}.se_relu")(b.pointwise(se.se_reduce, gate, f"{name}.se_reduce"))
        gate = layers.Activation("sigmoid", name=f"{name}.se_gate")(b.pointwise(se.se_expand, gate, f"{name}.se_expand"))
        r = layers.Multiply(name=f"{name}.se")([gate, r])
    return layers.ReLU(name=f"{name}.out")(layers.Add(name=f"{name}.add")([r, shortcut]))


def _encoder(b: _Builder, encoder: ResNet, images) -> dict:
    outputs = {}
    x = images
    for i, (conv, bn) in enumerate(zip(encoder.deep_stem_convs, encoder.deep_stem_bns)):
        x = b.conv_bn_relu(conv, bn, x, f"stem_{i}")
    x = b.conv(encoder.initial_conv, x, "initial_conv")
    outputs["initial_conv"] = x
    x = layers.ReLU(name="initial_relu")(b.batch_norm(encoder.initial_bn, x, "initial_bn"))
    if not encoder.cifar_stem:
        x = layers.MaxPooling2D(3, 2, padding="same", name="initial_max_pool")(x)
    outputs["initial_max_pool"] = x
    for g, group in enumerate(encoder.block_groups):
        for k, block in enumerate(group.blocks):
            x = _block(b, block, x, f"block_group{g + 1}.block{k + 1}")
        outputs[f"block_group{g + 1}"] = x
    outputs["final_avg_pool"] = layers.GlobalAveragePooling2D(name="final_avg_pool")(x)
    return outputs


def _projection_head(b: _Builder, head: ProjectionHead, h) -> tuple:
    hiddens = [h]
    for j, (dense, bn) in enumerate(zip(head.dense_layers, head.batch_norm_layers)):
        x = b.batch_norm(bn, b.dense(dense, hiddens[-1], f"head_{j}_dense"), f"head_{j}_bn")
        if j != head.num_layers - 1:
            x = layers.ReLU(name=f"head_{j}_relu")(x)
        hiddens.append(x)
    return hiddens[-1], hiddens[head.ft_proj_selector]


def functional_model(model: SimCLRModel, image_size: int | None = None) -> keras.Model:
    """`model` as a float32 functional keras.Model of built-in layers, with its weights and named outputs.

    `image_size` fixes the input's height and width (default: any size).
    """
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        b = _Builder()
        images = keras.Input((image_size, image_size, 3), name="images")
        outputs = _encoder(b, model.encoder, images)
        h = outputs["final_avg_pool"]
        outputs["proj_head_input"] = layers.Identity(name="proj_head_input")(h)
        z, supervised_input = _projection_head(b, model.projection_head, h)
        outputs["proj_head_output"] = layers.Identity(name="proj_head_output")(z)
        if model.supervised_head is not None:
            outputs["logits_sup"] = b.dense(model.supervised_head.dense, supervised_input, "logits_sup")
        functional = keras.Model(images, outputs, name="simclr")
    finally:
        keras.config.set_dtype_policy(policy)
    for layer, weights in b.assignments:
        layer.set_weights(weights)
    return functional


def export_keras_file(model_dir: str, path: str, *, checkpoint: str | None = None) -> str:
    """Writes a run's checkpoint (default: its newest) to `path` (.keras) atomically; returns `path`."""
    if not path.endswith(".keras"):
        raise PathError("keras_file", path, "must end in .keras (the file format of Keras 3)")
    model, _ = model_from_run(RunDir.open(model_dir), checkpoint)
    functional = functional_model(model)
    directory = os.path.dirname(os.path.abspath(path)) if not is_remote(path) else None
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        local = os.path.join(tmp, os.path.basename(path))
        functional.save(local)
        if directory:
            os.replace(local, path)  # Atomic: the file appears whole or not at all.
        else:
            tf.io.gfile.copy(local, path, overwrite=True)
    return path
