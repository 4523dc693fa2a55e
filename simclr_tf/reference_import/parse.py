"""Where each original variable sits in the network, read from its name or object path.

The original code names its layers in two ways, one per file format:

    SavedModel variable names (Keras name scopes with global counters):
      resnet/block_group1/residual_block/conv2d_fixed_padding_2/conv2d_2/kernel:0
    checkpoint object paths (Python attributes and list indices):
      model/resnet_model/block_groups/0/layers/0/conv2d_bn_layers/0/conv2d/kernel

Both are turned into the same `Entry`: the unit holding the layer (the stem, one block,
its selective-kernel or squeeze-excitation layer, a head layer), the kind of layer
("conv", "bn", ...), a rank that orders the layers of one kind in a unit as the
original constructed them (a name counter or a list index), and the variable ("kernel",
"gamma", ...). mapping.py places entries on our layers by that order.
"""

from __future__ import annotations

import dataclasses
import re

LEAVES = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")
_COUNTER = re.compile(r"^(.*?)(?:_(\d+))?$")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One original variable: `unit` is ("stem",), ("block", g, b), ("sk", g, b), ("se", g, b),
    ("head", j) or ("supervised",), with g the block group (0-3) and b the block's rank in it."""

    name: str
    unit: tuple
    kind: str
    rank: tuple
    leaf: str


def _counter(component: str) -> tuple[str, int]:
    """("conv2d_fixed_padding", 2) from "conv2d_fixed_padding_2"; counter 0 without a suffix."""
    base, number = _COUNTER.match(component).groups()
    return base, int(number) if number else 0


def parse_saved_model_name(name: str) -> Entry | None:
    """The Entry of a SavedModel variable name, or None when it is not one of the network's."""
    parts = name.removesuffix(":0").split("/")
    leaf = parts[-1]
    if leaf not in LEAVES or len(parts) < 3:
        return None
    scope = _counter(parts[0])[0]
    if scope == "resnet":
        if re.fullmatch(r"block_group[1-4]", parts[1]):
            if len(parts) < 5:
                return None
            group, block = int(parts[1][-1]) - 1, _counter(parts[2])[1]
            return _block_child(name, group, block, parts[3:])
        return _layer(name, ("stem",), parts[1:])
    if scope == "projection_head" and re.fullmatch(r"n?l_\d+", parts[1]):
        return _layer(name, ("head", int(parts[1].split("_")[1])), parts[2:])
    if scope == "head_supervised" and parts[1] == "linear_layer" and len(parts) == 4:
        return _layer(name, ("supervised",), parts[2:])
    return None


def _block_child(name: str, group: int, block: int, parts: list[str]) -> Entry | None:
    base = _counter(parts[0])[0]
    if base.startswith("sk_"):  # "sk__conv2d": Keras's snake case of SK_Conv2D
        if _counter(parts[1])[0] == "conv2d_fixed_padding":
            return _make(name, ("sk", group, block), "streams_conv", (0,), parts[-1])
        return _layer(name, ("sk", group, block), parts[1:])
    if base.startswith("se_"):  # "se__layer"
        return _layer(name, ("se", group, block), parts[1:])
    return _layer(name, ("block", group, block), parts)


def _layer(name: str, unit: tuple, parts: list[str]) -> Entry | None:
    """A conv (conv2d_fixed_padding_N/conv2d_M/kernel or conv2d_M/kernel), BN
    (batch_norm_relu_N/[sync_]batch_normalization_N/gamma) or dense (dense_M/kernel)."""
    base, number = _counter(parts[0])
    kinds = {"conv2d_fixed_padding": "conv", "conv2d": "conv", "batch_norm_relu": "bn", "dense": "dense"}
    if base not in kinds:
        return None
    return _make(name, unit, kinds[base], (number,), parts[-1])


def _make(name, unit, kind, rank, leaf) -> Entry:
    return Entry(name=name, unit=unit, kind=kind, rank=rank, leaf=leaf)


def parse_checkpoint_key(key: str) -> Entry | None:
    """The Entry of a checkpoint object path (without /.ATTRIBUTES/VARIABLE_VALUE), or None."""
    parts = key.split("/")
    leaf = parts[-1]
    if leaf not in LEAVES or parts[0] != "model" or len(parts) < 4:
        return None
    if parts[1] == "resnet_model":
        if parts[2] == "initial_conv_relu_max_pool" and parts[3].isdigit():
            return _checkpoint_layer(key, ("stem",), (int(parts[3]),), parts[4:])
        if parts[2] == "block_groups" and len(parts) >= 8 and parts[4] == "layers":
            return _checkpoint_block(key, int(parts[3]), int(parts[5]), parts[6:])
        return None
    if parts[1] == "_projection_head" and parts[2] == "linear_layers" and parts[3].isdigit():
        inner = parts[4:]
        return _checkpoint_layer(key, ("head", int(parts[3])), (0,), inner[1:] if inner[0] == "bn_relu" else inner)
    if parts[1] == "supervised_head" and parts[2] == "linear_layer":
        return _checkpoint_layer(key, ("supervised",), (0,), parts[3:])
    return None


def _checkpoint_block(key: str, group: int, block: int, parts: list[str]) -> Entry | None:
    # The shortcut's layers are constructed before the residual branch's, in both block types.
    lists = {"shortcut_layers": 0, "projection_layers": 0, "conv2d_bn_layers": 1, "conv_relu_dropblock_layers": 1}
    if parts[0] == "se_layer":  # ResidualBlock.se_layer
        return _checkpoint_se(key, group, block, parts[1:])
    if parts[0] not in lists or not parts[1].isdigit():
        return None
    rank, inner = (lists[parts[0]], int(parts[1])), parts[2:]
    if inner[0] in ("se_reduce", "se_expand"):  # BottleneckBlock's SE_Layer, last in its list
        return _checkpoint_se(key, group, block, inner)
    sk_layers = {"conv2d_fixed_padding": ("streams_conv", 0), "conv2d_0": ("conv", 0), "conv2d_1": ("conv", 1),
                 "batch_norm_relu": ("bn", 0), "batch_norm_relu_1": ("bn", 1)}
    if inner[0] in sk_layers:  # SK_Conv2D's attributes
        kind, sk_rank = sk_layers[inner[0]]
        return _make(key, ("sk", group, block), kind, (sk_rank,), inner[-1])
    return _checkpoint_layer(key, ("block", group, block), rank, inner)


def _checkpoint_se(key, group, block, parts) -> Entry | None:
    if len(parts) != 2 or parts[0] not in ("se_reduce", "se_expand"):
        return None
    return _make(key, ("se", group, block), "conv", (int(parts[0] == "se_expand"),), parts[1])


def _checkpoint_layer(key: str, unit: tuple, rank: tuple, parts: list[str]) -> Entry | None:
    """conv2d/kernel (Conv2dFixedPadding), bn/<leaf> (BatchNormRelu) or dense/<leaf>."""
    kinds = {"conv2d": "conv", "bn": "bn", "dense": "dense"}
    if len(parts) != 2 or parts[0] not in kinds:
        return None
    return _make(key, unit, kinds[parts[0]], rank, parts[1])


def parse_all(names, style_is_saved_model: bool) -> tuple[list[Entry], list[str]]:
    """(entries, names not understood) for all `names`; block ranks become 0-based indices."""
    parse = parse_saved_model_name if style_is_saved_model else parse_checkpoint_key
    entries, unknown = [], []
    for name in sorted(names):
        entry = parse(name)
        (entries.append(entry) if entry else unknown.append(name))
    blocks = {}
    for entry in entries:
        if entry.unit[0] in ("block", "sk", "se"):
            blocks.setdefault(entry.unit[1], set()).add(entry.unit[2])
    index = {group: {rank: i for i, rank in enumerate(sorted(ranks))} for group, ranks in blocks.items()}
    entries = [
        dataclasses.replace(e, unit=(e.unit[0], e.unit[1], index[e.unit[1]][e.unit[2]]))
        if e.unit[0] in ("block", "sk", "se") else e
        for e in entries
    ]
    return entries, unknown


def layers_by_kind(entries: list[Entry]) -> dict[tuple, dict[str, list[dict[str, Entry]]]]:
    """{unit: {kind: [{leaf: entry} for each layer, in construction order]}}."""
    grouped: dict = {}
    for entry in entries:
        grouped.setdefault(entry.unit, {}).setdefault(entry.kind, {}).setdefault(entry.rank, {})[entry.leaf] = entry
    return {unit: {kind: [layers[rank] for rank in sorted(layers)] for kind, layers in kinds.items()}
            for unit, kinds in grouped.items()}
