"""Analytic forward FLOPs of a Keras model, counted from the ops of its traced graph.

Convention: FLOPs = 2 x multiply-accumulates (MACs) of the convolutions and matrix
products (Conv2D, DepthwiseConv2dNative, MatMul, BatchMatMul); batch norm, ReLU,
pooling, adds and the loss are not counted (together well under 1% of a ResNet).
A training step costs about 3x the forward pass (backward = gradient w.r.t. the
activations + w.r.t. the weights, each about one forward), so training FLOPs per
view = 3 x forward FLOPs per view.

Walking the traced graph instead of the Keras layers counts what actually runs,
whatever the nesting of our subclassed layers (Conv2DFixedPadding, blocks, heads).
Cross-check: ResNet-50 at 224 px is the well-known ~4.1 GMACs (8.2 GFLOPs) forward
(stride on the 3x3 conv, as in SimCLR's ResNet); ResNet-18 with the CIFAR stem at
32 px ~0.56 GMACs.

    PYTHONPATH=. .venv/bin/python benchmarks/flops.py --depth=50 --image_size=224
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import tensorflow as tf

from simclr_tf.config import ModelConfig
from simclr_tf.training.builders import build_model

# Ops with attribute "f" (or these names) call a function whose ops are counted too.
_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")


def _dims(tensor: tf.Tensor) -> list[int]:
    shape = tensor.shape
    if shape.rank is None or any(d is None for d in shape):
        raise ValueError(f"op input/output {tensor.name} has an unknown shape {shape}; trace with a fully defined input")
    return [int(d) for d in shape]


def op_macs(op: tf.Operation) -> int:
    """Multiply-accumulates of one graph op (0 for ops that are not conv/matmul)."""
    if op.type == "Conv2D":
        kh, kw, cin, cout = _dims(op.inputs[1])
        out = _dims(op.outputs[0])
        nchw = op.get_attr("data_format") == b"NCHW"
        n, h, w = (out[0], out[2], out[3]) if nchw else (out[0], out[1], out[2])
        return n * h * w * cout * kh * kw * cin  # cin is per group, so grouped convs are right too
    if op.type == "DepthwiseConv2dNative":
        kh, kw = _dims(op.inputs[1])[:2]
        return int(np.prod(_dims(op.outputs[0]))) * kh * kw
    if op.type == "MatMul":
        a = _dims(op.inputs[0])
        k = a[0] if op.get_attr("transpose_a") else a[1]
        m, n = _dims(op.outputs[0])
        return m * n * k
    if op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = _dims(op.inputs[0])
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return int(np.prod(_dims(op.outputs[0]))) * k
    return 0


def graph_macs(graph: tf.Graph, by_scope: collections.Counter, depth: int = 0) -> None:
    """Adds the MACs of every op of `graph` (and of the functions it calls) to `by_scope`."""
    for op in graph.get_operations():
        macs = op_macs(op)
        if macs:
            by_scope[scope_of(op.name)] += macs
        if op.type in _CALL_OPS and depth < 20:
            name = op.get_attr("f").name
            function = graph._get_function(name)  # noqa: SLF001 - the only way to reach a called function's graph
            if function is not None and hasattr(function, "graph"):
                graph_macs(function.graph, by_scope, depth + 1)


def scope_of(op_name: str) -> str:
    """The model-level part an op belongs to: "resnet", "projection_head", "supervised_head", ..."""
    parts = op_name.split("/")
    # Keras names scopes "<model>/<sublayer>/..."; a bare op has no model scope.
    name = parts[1] if len(parts) > 2 else parts[0]
    return name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name


def forward_macs(fn, input_shape: tuple[int, ...], dtype=tf.float32) -> dict[str, int]:
    """MACs of `fn(x)` per scope for one input of `input_shape` (batch dim included)."""
    concrete = tf.function(fn).get_concrete_function(tf.TensorSpec(input_shape, dtype))
    by_scope: collections.Counter = collections.Counter()
    graph_macs(concrete.graph, by_scope)
    return dict(by_scope)


def model_forward_flops(model, image_size: int) -> dict[str, float]:
    """Forward FLOPs per view of a SimCLRModel (inference-mode graph, batch of 1), by part.

    Returns {"resnet": ..., "projection_head": ..., "supervised_head": ..., "other": ...,
    "encoder_plus_projection": ..., "total": ...} in FLOPs (= 2 x MACs).
    """
    by_scope = forward_macs(lambda x: model(x, training=False), (1, image_size, image_size, 3))
    parts = {"resnet": 0, "projection_head": 0, "supervised_head": 0, "other": 0}
    for scope, macs in by_scope.items():
        parts[scope if scope in parts else "other"] += 2 * macs
    parts["encoder_plus_projection"] = parts["resnet"] + parts["projection_head"]
    parts["total"] = sum(parts[k] for k in ("resnet", "projection_head", "supervised_head", "other"))
    return {k: float(v) for k, v in parts.items()}


def build_simclr_model(depth: int, width_multiplier: float, image_size: int, cifar_stem: bool, num_classes: int | None = 10):
    """The model a pretraining run builds (simclr_tf.training.builders.build_model, one replica)."""
    config = ModelConfig(resnet_depth=depth, width_multiplier=width_multiplier, cifar_stem=cifar_stem)
    return build_model(config, image_size=image_size, num_classes=num_classes, train_mode="pretrain", num_replicas=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--width_multiplier", type=float, default=1.0)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--cifar_stem", action="store_true")
    args = parser.parse_args()
    model = build_simclr_model(args.depth, args.width_multiplier, args.image_size, args.cifar_stem)
    for part, flops in model_forward_flops(model, args.image_size).items():
        print(f"{part:24s} {flops / 1e9:9.4f} GFLOPs forward per view ({flops / 2e9:.4f} GMACs)")


if __name__ == "__main__":
    main()
