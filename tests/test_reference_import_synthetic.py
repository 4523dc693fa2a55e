"""Import of original google-research/simclr TF2 weights with bottleneck, SK and SE blocks.

The fixture of test_reference_import.py is a ResNet-18 without selective kernels or
squeeze-excitation. Here the original's object structure is rebuilt from its source
(tf2/resnet.py, tf2/model.py: attribute names, list positions, construction order and
Keras's per-class name counters) as nested AutoTrackables holding random variables;
they are written both as a checkpoint (object paths) and as a SavedModel (variable
names). The oracle is a forward pass of that structure with tf.nn ops in float64,
reading each array by its original attribute, independent of our model and mapping.
"""

from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.models import OUTPUT_NAMES
from simclr_tf.reference_import import MappingError, load_reference
from simclr_tf.reference_import.compare import difference, random_images
from simclr_tf.reference_import.infer import infer_architecture
from simclr_tf.reference_import.mapping import map_variables
from simclr_tf.reference_import.parse import parse_all
from simclr_tf.reference_import.read import SAVED_MODEL, read_reference

AutoTrackable = tf.__internal__.tracking.AutoTrackable
BATCH_NORM_EPSILON = 1e-5  # tf2/resnet.py BATCH_NORM_EPSILON
SK_MIN_DIM = 32  # SK_Conv2D's min_dim
TOLERANCE = 1e-5  # of each output's largest magnitude (float32 model vs float64 oracle)
STEP = 7


@dataclasses.dataclass(frozen=True)
class Case:
    """Flags of an original run: the ones that shape its variables."""

    resnet_depth: int
    width_multiplier: float
    image_size: int  # <= 32: CIFAR stem (model.py: cifar_stem=FLAGS.image_size <= 32)
    sk_ratio: float = 0.0
    se_ratio: float = 0.0
    num_proj_layers: int = 2
    proj_out_dim: int = 16
    num_classes: int | None = None  # a supervised head (finetune or lineareval_while_pretraining)
    global_bn: bool = True


CASES = {
    "bottleneck": Case(50, 0.125, 64, num_classes=5),
    "selective_kernel": Case(50, 0.125, 64, sk_ratio=0.0625, num_proj_layers=3, proj_out_dim=8, global_bn=False),
    "squeeze_excitation": Case(50, 0.125, 32, se_ratio=0.25, num_proj_layers=1, num_classes=3),
    # Basic blocks have no SK layers; sk_ratio > 0 gives them the deep stem and ResNet-D shortcuts.
    "resnet_d_basic_with_squeeze_excitation": Case(18, 0.25, 64, sk_ratio=0.0625, se_ratio=0.25),
    # image_size <= 32 with sk_ratio: the CIFAR stem, ResNet-D shortcuts, SE after the SK block's last BN.
    "selective_kernel_and_squeeze_excitation_cifar": Case(50, 0.125, 32, sk_ratio=0.0625, se_ratio=0.25,
                                                           num_classes=4),
}
BLOCKS = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3))}  # (bottleneck, per group)


class Node(AutoTrackable):
    """One original layer: `op` (and its settings) for the oracle; sublayers and variables as attributes."""

    def __init__(self, op: str, **settings):
        super().__init__()
        self.op = op
        for key, value in settings.items():
            setattr(self, key, value)


class Original:
    """Builds the original's object tree for a Case, as tf2/resnet.py and tf2/model.py construct it.

    Variable names are what Keras gives them there: each layer takes a zero-based unique
    name per class ("conv2d_fixed_padding_3") when constructed, and its variables live under
    the name scopes of the layers that call it ("resnet/block_group1/bottleneck_block/...").
    """

    def __init__(self, case: Case, seed: int = 0):
        self.case = case
        self.rng = np.random.default_rng(seed)
        self.counts: collections.Counter = collections.Counter()
        self.bn_class = "sync_batch_normalization" if case.global_bn else "batch_normalization"

    def unique(self, base: str) -> str:
        count = self.counts[base]
        self.counts[base] += 1
        return base if count == 0 else f"{base}_{count}"

    def variable(self, scope: str, leaf: str, array: np.ndarray) -> tf.Variable:
        return tf.Variable(array.astype(np.float32), name=f"{scope}/{leaf}")

    # Layers. Each takes the scope its variables are created in and returns a Node.
    def keras_conv(self, scope, in_channels, filters, kernel_size=1, use_bias=False) -> Node:
        name = self.unique("conv2d")
        node = Node("conv")
        shape = (kernel_size, kernel_size, in_channels, filters)
        fan_in = kernel_size * kernel_size * in_channels  # VarianceScaling(1, fan_in)'s scale
        node.kernel = self.variable(f"{scope}/{name}", "kernel", self.rng.normal(0, fan_in ** -0.5, shape))
        if use_bias:
            node.bias = self.variable(f"{scope}/{name}", "bias", self.rng.normal(0, 0.5, filters))
        return node

    def conv2d_fixed_padding(self, scope, in_channels, filters, kernel_size, strides) -> Node:
        name = self.unique("conv2d_fixed_padding")
        node = Node("conv2d_fixed_padding", kernel_size=kernel_size, strides=strides)
        node.conv2d = self.keras_conv(f"{scope}/{name}", in_channels, filters, kernel_size)
        return node

    def batch_norm_relu(self, scope, channels, relu=True, center=True) -> Node:
        name, inner = self.unique("batch_norm_relu"), self.unique(self.bn_class)
        node, bn, where = Node("batch_norm_relu", relu=relu), Node("bn"), f"{scope}/{name}/{inner}"
        bn.gamma = self.variable(where, "gamma", self.rng.uniform(0.5, 1.5, channels))
        if center:
            bn.beta = self.variable(where, "beta", self.rng.normal(0, 0.3, channels))
        bn.moving_mean = self.variable(where, "moving_mean", self.rng.normal(0, 0.5, channels))
        bn.moving_variance = self.variable(where, "moving_variance", self.rng.uniform(0.5, 2.0, channels))
        node.bn = bn
        return node

    def sk_conv2d(self, scope, in_channels, filters, strides) -> Node:
        where = f"{scope}/{self.unique('sk__conv2d')}"  # Keras's snake case of SK_Conv2D
        node = Node("sk_conv2d")
        node.conv2d_fixed_padding = self.conv2d_fixed_padding(where, in_channels, 2 * filters, 3, strides)
        node.batch_norm_relu = self.batch_norm_relu(where, 2 * filters)
        mid_dim = max(int(filters * self.case.sk_ratio), SK_MIN_DIM)
        node.conv2d_0 = self.keras_conv(where, filters, mid_dim)
        node.batch_norm_relu_1 = self.batch_norm_relu(where, mid_dim)
        node.conv2d_1 = self.keras_conv(where, mid_dim, 2 * filters)
        return node

    def se_layer(self, scope, filters, channels) -> Node:
        where = f"{scope}/{self.unique('se__layer')}"
        node = Node("se_layer")
        reduced = max(1, int(filters * self.case.se_ratio))
        node.se_reduce = self.keras_conv(where, channels, reduced, use_bias=True)
        node.se_expand = self.keras_conv(where, reduced, channels, use_bias=True)  # filters set in build()
        return node

    def projection(self, scope, in_channels, filters_out, strides) -> list:
        """The projection shortcut; ResNet-D (average pool, stride-1 conv) with sk_ratio > 0."""
        layers = []
        if self.case.sk_ratio > 0:
            if strides > 1:
                layers.append(Node("fixed_padding", kernel_size=2))
            layers.append(Node("average_pool", strides=strides))
            layers.append(self.conv2d_fixed_padding(scope, in_channels, filters_out, 1, 1))
        else:
            layers.append(self.conv2d_fixed_padding(scope, in_channels, filters_out, 1, strides))
        layers.append(self.batch_norm_relu(scope, filters_out, relu=False))
        return layers

    def bottleneck_block(self, scope, in_channels, filters, strides, use_projection) -> Node:
        where = f"{scope}/{self.unique('bottleneck_block')}"
        node = Node("bottleneck_block")
        node.projection_layers = self.projection(where, in_channels, 4 * filters, strides) if use_projection else []
        node.shortcut_dropblock = Node("identity")
        layers = [self.conv2d_fixed_padding(where, in_channels, filters, 1, 1),
                  self.batch_norm_relu(where, filters), Node("identity")]  # DropBlock: identity at inference
        if self.case.sk_ratio > 0:
            layers.append(self.sk_conv2d(where, filters, filters, strides))
        else:
            layers += [self.conv2d_fixed_padding(where, filters, filters, 3, strides),
                       self.batch_norm_relu(where, filters)]
        layers += [Node("identity"), self.conv2d_fixed_padding(where, filters, 4 * filters, 1, 1),
                   self.batch_norm_relu(where, 4 * filters, relu=False), Node("identity")]
        if self.case.se_ratio > 0:
            layers.append(self.se_layer(where, filters, 4 * filters))
        node.conv_relu_dropblock_layers = layers
        return node

    def residual_block(self, scope, in_channels, filters, strides, use_projection) -> Node:
        where = f"{scope}/{self.unique('residual_block')}"
        node = Node("residual_block")
        node.shortcut_layers = self.projection(where, in_channels, filters, strides) if use_projection else []
        node.conv2d_bn_layers = [self.conv2d_fixed_padding(where, in_channels, filters, 3, strides),
                                 self.batch_norm_relu(where, filters),
                                 self.conv2d_fixed_padding(where, filters, filters, 3, 1),
                                 self.batch_norm_relu(where, filters, relu=False)]
        if self.case.se_ratio > 0:
            node.se_layer = self.se_layer(where, filters, filters)
        return node

    def resnet(self) -> Node:
        case, scope = self.case, self.unique("resnet")
        width = case.width_multiplier
        node = Node("resnet")
        stem = []
        if case.image_size <= 32:
            stem += [self.conv2d_fixed_padding(scope, 3, int(64 * width), 3, 1),
                     Node("identity", output="initial_conv"), self.batch_norm_relu(scope, int(64 * width)),
                     Node("identity", output="initial_max_pool")]
        else:
            if case.sk_ratio > 0:
                half = int(64 * width // 2)
                stem += [self.conv2d_fixed_padding(scope, 3, half, 3, 2), self.batch_norm_relu(scope, half),
                         self.conv2d_fixed_padding(scope, half, half, 3, 1), self.batch_norm_relu(scope, half),
                         self.conv2d_fixed_padding(scope, half, int(64 * width), 3, 1)]
            else:
                stem.append(self.conv2d_fixed_padding(scope, 3, int(64 * width), 7, 2))
            stem += [Node("identity", output="initial_conv"), self.batch_norm_relu(scope, int(64 * width)),
                     Node("max_pool"), Node("identity", output="initial_max_pool")]
        node.initial_conv_relu_max_pool = stem
        bottleneck, blocks = BLOCKS[case.resnet_depth]
        block_fn, expansion = (self.bottleneck_block, 4) if bottleneck else (self.residual_block, 1)
        channels, groups = int(64 * width), []
        for g, (base, num_blocks) in enumerate(zip((64, 128, 256, 512), blocks)):
            filters, where = int(base * width), f"{scope}/block_group{g + 1}"
            group = Node("block_group", output=f"block_group{g + 1}")
            layers = [block_fn(where, channels, filters, 1 if g == 0 else 2, True)]
            layers += [block_fn(where, expansion * filters, filters, 1, False) for _ in range(1, num_blocks)]
            group.layers = layers
            groups.append(group)
            channels = expansion * filters
        node.block_groups = groups
        self.num_features = channels
        return node

    def linear_layer(self, scope, in_channels, units, use_bias, use_bn) -> Node:
        node = Node("linear_layer", use_bn=use_bn)
        name = self.unique("dense")
        dense = Node("dense")
        kernel = self.rng.normal(0, in_channels ** -0.5, (in_channels, units))
        dense.kernel = self.variable(f"{scope}/{name}", "kernel", kernel)
        if use_bias and not use_bn:
            dense.bias = self.variable(f"{scope}/{name}", "bias", self.rng.normal(0, 0.5, units))
        node.dense = dense
        if use_bn:
            node.bn_relu = self.batch_norm_relu(scope, units, relu=False, center=use_bias)
        return node

    def model(self) -> Node:
        """model.Model: resnet_model, _projection_head ("nonlinear") and supervised_head."""
        case, root = self.case, Node("model")
        root.resnet_model = self.resnet()
        width, head = self.num_features, Node("projection_head")
        layers = []
        for j in range(case.num_proj_layers):
            last = j == case.num_proj_layers - 1
            layers.append(self.linear_layer(f"projection_head/nl_{j}", width, case.proj_out_dim if last else width,
                                            use_bias=not last, use_bn=True))
        head.linear_layers = layers
        self.unique("projection_head")
        root._projection_head = head
        if case.num_classes:
            supervised = Node("supervised_head")
            supervised.linear_layer = self.linear_layer("head_supervised/linear_layer", width, case.num_classes,
                                                        use_bias=True, use_bn=False)
            root.supervised_head = supervised
        return root


def write_original(root: Node, directory: str) -> dict[str, str]:
    """{style: source}: the tree as a checkpoint (model/..., global_step) and as a SavedModel."""
    prefix = tf.train.Checkpoint(model=root, global_step=tf.Variable(STEP, dtype=tf.int64)).write(
        os.path.join(directory, f"ckpt-{STEP}"))
    module = tf.Module()
    module.model = root
    saved_model = os.path.join(directory, "saved_model")
    tf.saved_model.save(module, os.path.join(saved_model, str(STEP)))
    return {"checkpoint": prefix, "saved_model": saved_model}


# The oracle: the original's inference-mode computation, by hand, in float64.
def value(variable: tf.Variable) -> np.ndarray:
    return variable.numpy().astype(np.float64)


def conv(node: Node, x):
    """Conv2dFixedPadding: explicit (k-1) padding and VALID when strided, else SAME; or a plain 1x1 conv."""
    if node.op == "conv":
        y = tf.nn.conv2d(x, value(node.kernel), 1, "SAME")
        return y + value(node.bias) if hasattr(node, "bias") else y
    if node.strides > 1:
        x = pad(x, node.kernel_size)
        return tf.nn.conv2d(x, value(node.conv2d.kernel), node.strides, "VALID")
    return tf.nn.conv2d(x, value(node.conv2d.kernel), 1, "SAME")


def pad(x, kernel_size: int):
    begin = (kernel_size - 1) // 2
    end = kernel_size - 1 - begin
    return tf.pad(x, [[0, 0], [begin, end], [begin, end], [0, 0]])


def batch_norm(node: Node, x):
    bn = node.bn
    beta = value(bn.beta) if hasattr(bn, "beta") else 0.0
    y = value(bn.gamma) * (x - value(bn.moving_mean)) / np.sqrt(value(bn.moving_variance) + BATCH_NORM_EPSILON) + beta
    return tf.nn.relu(y) if node.relu else y


def apply(node: Node, x, outputs: dict):
    op = node.op
    if op in ("conv", "conv2d_fixed_padding"):
        return conv(node, x)
    if op == "batch_norm_relu":
        return batch_norm(node, x)
    if op == "identity":
        if hasattr(node, "output"):
            outputs[node.output] = x
        return x
    if op == "fixed_padding":
        return pad(x, node.kernel_size)
    if op == "average_pool":
        return tf.nn.avg_pool2d(x, 2, node.strides, "SAME" if node.strides == 1 else "VALID")
    if op == "max_pool":
        return tf.nn.max_pool2d(x, 3, 2, "SAME")
    if op == "sk_conv2d":
        streams = tf.stack(tf.split(batch_norm(node.batch_norm_relu, conv(node.conv2d_fixed_padding, x)), 2, axis=3))
        pooled = tf.reduce_mean(tf.reduce_sum(streams, 0), [1, 2], keepdims=True)
        mixing = conv(node.conv2d_1, batch_norm(node.batch_norm_relu_1, conv(node.conv2d_0, pooled)))
        return tf.reduce_sum(streams * tf.nn.softmax(tf.stack(tf.split(mixing, 2, axis=3)), axis=0), 0)
    if op == "se_layer":
        squeezed = tf.reduce_mean(x, [1, 2], keepdims=True)
        return tf.sigmoid(conv(node.se_expand, tf.nn.relu(conv(node.se_reduce, squeezed)))) * x
    if op in ("bottleneck_block", "residual_block"):
        if op == "bottleneck_block":
            shortcut_layers, residual_layers = node.projection_layers, node.conv_relu_dropblock_layers
        else:
            shortcut_layers, residual_layers = node.shortcut_layers, node.conv2d_bn_layers
        shortcut, residual = x, x
        for layer in shortcut_layers:
            shortcut = apply(layer, shortcut, outputs)
        for layer in residual_layers:
            residual = apply(layer, residual, outputs)
        if hasattr(node, "se_layer"):
            residual = apply(node.se_layer, residual, outputs)
        return tf.nn.relu(residual + shortcut)
    raise AssertionError(f"no oracle for {op}")


def linear_layer(node: Node, x):
    y = tf.matmul(x, value(node.dense.kernel))
    if hasattr(node.dense, "bias"):
        y = y + value(node.dense.bias)
    return batch_norm(node.bn_relu, y) if node.use_bn else y


def original_outputs(root: Node, images: np.ndarray) -> dict[str, np.ndarray]:
    """The named outputs of the original model (model.Model, resnet.Resnet) in inference mode."""
    outputs, x = {}, tf.constant(images, tf.float64)
    for layer in root.resnet_model.initial_conv_relu_max_pool:
        x = apply(layer, x, outputs)
    for group in root.resnet_model.block_groups:
        for block in group.layers:
            x = apply(block, x, outputs)
        outputs[group.output] = x
    h = tf.reduce_mean(x, [1, 2])
    outputs["final_avg_pool"] = outputs["proj_head_input"] = h
    hidden = h
    for j, layer in enumerate(root._projection_head.linear_layers):
        hidden = linear_layer(layer, hidden)
        if j != len(root._projection_head.linear_layers) - 1:
            hidden = tf.nn.relu(hidden)
    outputs["proj_head_output"] = hidden
    if hasattr(root, "supervised_head"):
        outputs["logits_sup"] = linear_layer(root.supervised_head.linear_layer, h)  # ft_proj_selector=0: h
    return {name: tensor.numpy() for name, tensor in outputs.items()}


@dataclasses.dataclass
class Built:
    case: Case
    root: Node
    sources: dict[str, str]
    num_variables: int


@pytest.fixture(scope="module", params=list(CASES))
def built(request, tmp_path_factory):
    case = CASES[request.param]
    root = Original(case).model()
    sources = write_original(root, str(tmp_path_factory.mktemp(request.param)))
    num_variables = len([v for v in tf.train.TrackableView(root).descendants() if isinstance(v, tf.Variable)])
    return Built(case, root, sources, num_variables)


@pytest.fixture(scope="module")
def loaded(built):
    """The checkpoint imported by load_reference; the SavedModel read, parsed, inferred and
    mapped onto that model (the same steps, without building a second model)."""
    reference = load_reference(built.sources["checkpoint"], image_size=built.case.image_size)
    weights = read_reference(built.sources["saved_model"])
    entries, unknown = parse_all(weights.arrays, weights.style == SAVED_MODEL)
    architecture = infer_architecture(entries, weights.arrays)
    return reference, weights, architecture, (entries, unknown)


def test_architecture_is_inferred_from_either_format(built, loaded):
    case = built.case
    reference, saved_model, saved_model_architecture, _ = loaded
    assert saved_model_architecture == reference.architecture
    config = reference.architecture.model
    got = (config.resnet_depth, config.width_multiplier, config.cifar_stem, config.sk_ratio, config.se_ratio,
           config.proj_head_mode, config.num_proj_layers, config.proj_out_dim, reference.architecture.num_classes)
    assert got == (case.resnet_depth, case.width_multiplier, case.image_size <= 32, case.sk_ratio, case.se_ratio,
                   "nonlinear", case.num_proj_layers, case.proj_out_dim, case.num_classes)
    assert reference.weights.step == saved_model.step == STEP
    stem = "CIFAR stem" if case.image_size <= 32 else ("ResNet-D deep stem" if case.sk_ratio else "ImageNet stem")
    assert f"({stem}," in reference.architecture.describe()


def test_every_original_variable_is_placed_and_both_formats_give_the_same_weights(built, loaded):
    reference, saved_model, _, (entries, unknown) = loaded
    model = reference.model
    assert len(reference.weights.arrays) == len(saved_model.arrays) == built.num_variables
    assert reference.num_variables == len(model.variables) == built.num_variables
    assert not unknown
    placed = map_variables(entries, saved_model.arrays, model, unknown)  # raises unless each fits one of ours
    assert len(placed) == built.num_variables
    for variable in model.variables:
        np.testing.assert_array_equal(placed[variable.path][1], variable.numpy(), err_msg=variable.path)


def test_outputs_equal_the_original_computation_in_inference_mode(built, loaded):
    images = random_images(2, built.case.image_size, seed=3)
    theirs = original_outputs(built.root, images)
    ours = {name: np.asarray(t) for name, t in loaded[0].model(images, training=False).items()}
    expected = set(OUTPUT_NAMES) - (set() if built.case.num_classes else {"logits_sup"})
    assert set(theirs) == expected and expected <= set(ours)
    differences = {}
    for name in sorted(expected):
        assert ours[name].shape == theirs[name].shape, (name, ours[name].shape, theirs[name].shape)
        differences[name] = difference(ours[name], theirs[name]).relative
    assert all(d <= TOLERANCE for d in differences.values()), differences
    assert np.std(theirs["block_group4"]) > 0 and np.std(theirs["proj_head_output"]) > 0  # not degenerate


# Failures: on the bottleneck model, a variable removed from / reshaped in the original tree.
def bottleneck_tree() -> Node:
    return Original(CASES["bottleneck"]).model()


def write_checkpoint(root: Node, directory) -> str:
    return tf.train.Checkpoint(model=root, global_step=tf.Variable(STEP, dtype=tf.int64)).write(
        os.path.join(str(directory), f"ckpt-{STEP}"))


def test_a_removed_variable_fails_naming_ours_left_unfilled(tmp_path):
    root = bottleneck_tree()
    del root.resnet_model.block_groups[1].layers[0].conv_relu_dropblock_layers[4].bn.moving_variance
    ours = "simclr/resnet/block_group2/block1/bn_2_batch_normalization/moving_variance"
    with pytest.raises(MappingError, match=f"1 of our variable.s. left unfilled: {ours}$"):
        load_reference(write_checkpoint(root, tmp_path), image_size=64)


def test_a_wrong_shape_fails_naming_the_variable_and_both_shapes(tmp_path):
    root = bottleneck_tree()
    root.resnet_model.block_groups[2].layers[1].conv_relu_dropblock_layers[3].conv2d.kernel = tf.Variable(
        np.zeros((3, 3, 32, 31), np.float32))
    key = "model/resnet_model/block_groups/2/layers/1/conv_relu_dropblock_layers/3/conv2d/kernel"
    with pytest.raises(MappingError, match=f"1 shape mismatch.es.: {key} .3, 3, 32, 31. vs ours "
                                           "simclr/resnet/block_group3/block2/conv_2/conv2d/kernel .3, 3, 32, 32.$"):
        load_reference(write_checkpoint(root, tmp_path), image_size=64)


def test_basic_blocks_with_resnet_d_shortcuts_and_the_cifar_stem_import_from_a_checkpoint(tmp_path):
    # Only the shortcut conv's list position (behind the average pool) shows sk_ratio > 0 here;
    # a SavedModel's names do not, so this holds for checkpoints only.
    case = Case(18, 0.25, 32, sk_ratio=0.0625, num_proj_layers=1)
    root = Original(case).model()
    reference = load_reference(write_checkpoint(root, tmp_path), image_size=32)
    config = reference.architecture.model
    assert (config.resnet_depth, config.cifar_stem, config.sk_ratio, config.se_ratio) == (18, True, 0.0625, 0.0)
    images = random_images(2, 32, seed=4)
    theirs = original_outputs(root, images)
    ours = reference.model(images, training=False)
    for name in ("block_group1", "block_group2", "proj_head_output"):
        assert difference(np.asarray(ours[name]), theirs[name]).relative <= TOLERANCE, name
