"""Places the original's variables on our model's: every one of theirs on exactly one of ours.

Our layers are listed per unit and kind in the order the original constructs its
layers (parse.py), e.g. a projection block's convs: shortcut, conv_1, conv_2; its BNs:
shortcut BN, bn_1, last BN. The k-th original layer of a kind in a unit goes to our
k-th. Any original variable left over, any of ours left unfilled and any shape that
differs is one MappingError that lists them all (big_vision's rule: nothing unmatched).
"""

from __future__ import annotations

import keras
import numpy as np

from simclr_tf.errors import UserError
from simclr_tf.models import SimCLRModel
from simclr_tf.reference_import.parse import Entry, layers_by_kind

_BN_LEAVES = ("gamma", "beta", "moving_mean", "moving_variance")
_SHOWN = 8  # Names listed per kind of problem.


class MappingError(UserError, ValueError):
    """The original's variables do not fit the model inferred from them; the message lists which."""


def our_layers(model: SimCLRModel) -> dict[tuple, dict[str, list[keras.layers.Layer]]]:
    """{unit: {kind: [our layers in the original's construction order]}} (units as in parse.Entry)."""
    encoder = model.encoder
    units = {("stem",): {"conv": [*encoder.deep_stem_convs, encoder.initial_conv],
                         "bn": [*encoder.deep_stem_bns, encoder.initial_bn]}}
    for g, group in enumerate(encoder.block_groups):
        for b, block in enumerate(group.blocks):
            shortcut_convs = [block.shortcut_conv] if block.use_projection else []
            shortcut_bns = [block.shortcut_bn] if block.use_projection else []
            if hasattr(block, "conv_3"):  # Bottleneck
                middle_convs = [] if block.sk_ratio > 0 else [block.conv_2]
                middle_bns = [] if block.sk_ratio > 0 else [block.bn_2]
                convs, bns = [block.conv_1, *middle_convs, block.conv_3], [block.bn_1, *middle_bns, block.bn_3]
            else:
                convs, bns = [block.conv_1, block.conv_2], [block.bn_1, block.bn_2]
            units[("block", g, b)] = {"conv": shortcut_convs + convs, "bn": shortcut_bns + bns}
            if getattr(block, "sk_conv", None) is not None:
                sk = block.sk_conv
                units[("sk", g, b)] = {"streams_conv": [sk.streams_conv], "conv": [sk.mixing_conv_0, sk.mixing_conv_1],
                                       "bn": [sk.streams_bn, sk.mixing_bn]}
            if block.se is not None:
                units[("se", g, b)] = {"conv": [block.se.se_reduce, block.se.se_expand]}
    head = model.projection_head
    for j, (dense, bn) in enumerate(zip(head.dense_layers, head.batch_norm_layers)):
        units[("head", j)] = {"dense": [dense], "bn": [bn]}
    if model.supervised_head is not None:
        units[("supervised",)] = {"dense": [model.supervised_head.dense]}
    return units


def layer_variables(layer: keras.layers.Layer) -> dict[str, keras.Variable]:
    """{leaf: variable} of one of our conv, BN or dense layers, by the original's leaf names."""
    if hasattr(layer, "conv") and not isinstance(layer, keras.layers.BatchNormalization):  # Conv2DFixedPadding
        layer = layer.conv
    if isinstance(layer, keras.layers.BatchNormalization):
        found = {leaf: getattr(layer, leaf, None) for leaf in _BN_LEAVES}
    else:
        found = {"kernel": layer.kernel, "bias": layer.bias}
    return {leaf: variable for leaf, variable in found.items() if variable is not None}


def map_variables(entries: list[Entry], arrays: dict[str, np.ndarray], model: SimCLRModel,
                  unknown: list[str] = ()) -> dict[str, tuple[str, np.ndarray]]:
    """{our variable path: (original name, array)} for every variable of `model`.

    `unknown`: original names the parser did not understand (reported as not placed).
    """
    theirs = layers_by_kind(entries)
    ours = our_layers(model)
    placed, not_placed, mismatched = {}, list(unknown), []
    for unit, kinds in theirs.items():
        for kind, their_layers in kinds.items():
            our_list = ours.get(unit, {}).get(kind, [])
            for k, leaves in enumerate(their_layers):
                variables = layer_variables(our_list[k]) if k < len(our_list) else {}
                for leaf, entry in leaves.items():
                    variable = variables.get(leaf)
                    if variable is None:
                        not_placed.append(entry.name)
                        continue
                    array = arrays[entry.name]
                    if tuple(array.shape) != tuple(variable.shape):
                        mismatched.append(f"{entry.name} {tuple(array.shape)} vs ours {variable.path} "
                                          f"{tuple(variable.shape)}")
                    placed[variable.path] = (entry.name, array)
    unfilled = [v.path for v in model.variables if v.path not in placed]
    problems = []
    for what, names in (("original variable(s) not placed on ours", not_placed),
                        ("of our variable(s) left unfilled", unfilled), ("shape mismatch(es)", mismatched)):
        if names:
            shown = "; ".join(sorted(names)[:_SHOWN]) + (f"; ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")
            problems.append(f"{len(names)} {what}: {shown}")
    if problems:
        raise MappingError("the original's variables do not fit the inferred model: " + " | ".join(problems))
    return placed


def assign(model: SimCLRModel, placed: dict[str, tuple[str, np.ndarray]]) -> None:
    """Sets each of `model`'s variables to its placed array."""
    for variable in model.variables:
        variable.assign(placed[variable.path][1].astype(variable.dtype))
