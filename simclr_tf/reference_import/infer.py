"""The architecture of an original SimCLR model, read off its variables.

Rules (the original's topology is ours, so these give the ModelConfig that builds it):
  depth: blocks per group and block type (selective kernels or 4 convs in the first
    block - shortcut + 3 - mean bottleneck, 3 mean basic) looked up in models.DEPTHS.
  width_multiplier: output channels of the stem's last conv / 64.
  cifar_stem: one 3x3 stem conv (CIFAR, SimCLR Appendix B.9); one 7x7 conv is the
    ImageNet stem; three 3x3 convs the ResNet-D deep stem of sk_ratio > 0.
  sk_ratio / se_ratio: zero without selective-kernel / squeeze-excitation layers;
    otherwise a ratio that reproduces every such layer's hidden width (the published
    0.0625 / 0.25 first, as widths are clipped at 32 / 1 and so do not always determine it).
    Basic blocks (ResNet-18/34) have no selective kernels, but sk_ratio > 0 still gave them
    ResNet-D shortcuts (average pool, then a stride-1 1x1 conv: same variables) and the deep
    stem; so the deep stem, or a checkpoint's shortcut conv behind a pool in its list, means
    sk_ratio > 0, and any value > 0 builds the same network (0.0625 is reported). A SavedModel
    of such a network with the CIFAR stem cannot be told apart from one without: its names
    do not show the pool.
  projection head: its number of layers (none: mode "none"), proj_out_dim from the last.
    A "linear" head is a 1-layer "nonlinear" one (same layers, same computation).
  supervised head: its presence and number of classes.
Not in the variables, so arguments: BN decay (batch_norm_decay), train_mode and
ft_proj_selector (which hidden the supervised head reads when fine-tuning).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simclr_tf.config import ModelConfig
from simclr_tf.errors import UserError
from simclr_tf.models import DEPTHS
from simclr_tf.reference_import.parse import Entry, layers_by_kind

PUBLISHED_SK_RATIO = 0.0625
PUBLISHED_SE_RATIO = 0.25
SK_MIN_DIM = 32  # SelectiveKernelConv2D's min_dim (the original's default)


class ArchitectureError(UserError, ValueError):
    """The variables describe a network simclr_tf cannot build (or none at all)."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    model: ModelConfig
    num_classes: int | None

    def describe(self) -> str:
        m = self.model
        stem = "CIFAR stem" if m.cifar_stem else ("ResNet-D deep stem" if m.sk_ratio else "ImageNet stem")
        head = ("no projection head" if m.proj_head_mode == "none"
                else f"{m.num_proj_layers}-layer {m.proj_head_mode} projection head to {m.proj_out_dim}")
        classes = f"supervised head of {self.num_classes} classes" if self.num_classes else "no supervised head"
        return (f"ResNet-{m.resnet_depth} {m.width_multiplier:g}x ({stem}, sk_ratio {m.sk_ratio:g}, "
                f"se_ratio {m.se_ratio:g}), {head}, {classes}")


def infer_architecture(entries: list[Entry], arrays: dict[str, np.ndarray], *, batch_norm_decay: float = 0.9,
                       ft_proj_selector: int = 0) -> Architecture:
    """The ModelConfig and number of classes of the network whose variables are `entries`."""
    layers = layers_by_kind(entries)

    def shape(layer: dict[str, Entry], leaf: str = "kernel") -> tuple[int, ...]:
        return tuple(arrays[layer[leaf].name].shape)

    stem = layers.get(("stem",), {}).get("conv", [])
    if not stem or any("kernel" not in conv for conv in stem):
        raise ArchitectureError("no ResNet stem convolution among the variables: not a SimCLR ResNet")
    width = shape(stem[-1])[-1] / 64
    has_sk = any(unit[0] == "sk" for unit in layers)
    if len(stem) == 1 and shape(stem[0])[:2] in ((3, 3), (7, 7)):
        cifar_stem = shape(stem[0])[:2] == (3, 3)
    elif len(stem) == 3:
        cifar_stem = False
    else:
        raise ArchitectureError(f"stem of {len(stem)} conv(s) of kernel {[shape(c)[:2] for c in stem]}: "
                                "simclr_tf builds one 3x3 (CIFAR), one 7x7 (ImageNet) or three 3x3 (the ResNet-D "
                                "stem of sk_ratio > 0)")

    blocks = tuple(len({u[2] for u in layers if u[0] == "block" and u[1] == g}) for g in range(4))
    if not all(blocks) or any(u[0] == "block" and u[1] > 3 for u in layers):
        raise ArchitectureError(f"the ResNet needs blocks in exactly 4 groups, found {blocks}")
    first_block_convs = len(layers[("block", 0, 0)].get("conv", []))
    if has_sk or first_block_convs == 4:
        block_type = "bottleneck"
    elif first_block_convs == 3:
        block_type = "basic"
    else:
        raise ArchitectureError(f"the first block has {first_block_convs} convs: neither a basic (3 with its "
                                "shortcut) nor a bottleneck block (4)")
    depths = {value: depth for depth, value in DEPTHS.items()}
    if (block_type, blocks) not in depths:
        known = ", ".join(f"{d}: {t} {'-'.join(map(str, b))}" for d, (t, b) in sorted(DEPTHS.items()))
        raise ArchitectureError(f"{block_type} blocks {'-'.join(map(str, blocks))} per group is no ResNet depth "
                                f"simclr_tf builds ({known})")
    expansion = 4 if block_type == "bottleneck" else 1

    # (filters, hidden width) of each SK layer (filters = streams conv out / 2) and SE layer.
    sk = [(shape(kinds["streams_conv"][0])[-1] // 2, shape(kinds["conv"][0])[-1])
          for unit, kinds in layers.items() if unit[0] == "sk" and "streams_conv" in kinds and kinds.get("conv")]
    se = [(shape(kinds["conv"][-1])[-1] // expansion, shape(kinds["conv"][0])[-1])
          for unit, kinds in layers.items() if unit[0] == "se" and len(kinds.get("conv", [])) == 2]
    if has_sk:
        sk_ratio = _ratio("sk_ratio", sk, PUBLISHED_SK_RATIO, lambda f, r: max(int(f * r), SK_MIN_DIM))
    else:
        sk_ratio = PUBLISHED_SK_RATIO if len(stem) == 3 or _pooled_shortcut(layers) else 0.0
    se_ratio = _ratio("se_ratio", se, PUBLISHED_SE_RATIO, lambda f, r: max(1, int(f * r))) if se else 0.0

    head = [layers[("head", j)] for j in range(len([u for u in layers if u[0] == "head"]))
            if ("head", j) in layers]
    if len(head) != len([u for u in layers if u[0] == "head"]):
        raise ArchitectureError("the projection head's layers are not numbered 0..n-1")
    if head and any(not kinds.get("dense") for kinds in head):
        raise ArchitectureError("a projection-head layer has no dense kernel")
    num_classes = None
    if ("supervised",) in layers:
        dense = layers[("supervised",)].get("dense")
        if not dense or "kernel" not in dense[0]:
            raise ArchitectureError("the supervised head has no dense kernel")
        num_classes = shape(dense[0])[-1]
    try:
        config = ModelConfig(
            resnet_depth=depths[(block_type, blocks)],
            width_multiplier=width,
            cifar_stem=cifar_stem,
            sk_ratio=sk_ratio,
            se_ratio=se_ratio,
            batch_norm_decay=batch_norm_decay,
            proj_head_mode="nonlinear" if head else "none",
            proj_out_dim=shape(head[-1]["dense"][0])[-1] if head else 128,
            num_proj_layers=max(1, len(head)),
            ft_proj_selector=ft_proj_selector,
            # The original's global BN (SyncBatchNormalization) computes E[x^2] - E[x]^2.
            one_pass_batch_norm=True,
        )
    except UserError as error:
        raise ArchitectureError(f"the inferred architecture is not valid: {error}") from error
    return Architecture(config, num_classes)


def _pooled_shortcut(layers: dict) -> bool:
    """Whether the first block's shortcut conv follows a pool (ResNet-D): in a checkpoint, its
    rank is (list, position) and position > 0; SavedModel ranks are name counters (1 element)."""
    convs = layers[("block", 0, 0)].get("conv", [])
    rank = next(iter(convs[0].values())).rank if convs else ()
    return len(rank) == 2 and rank[0] == 0 and rank[1] > 0


def _ratio(name: str, layers: list[tuple[int, int]], published: float, width) -> float:
    """A ratio r with width(filters, r) == hidden for every (filters, hidden) of `layers`."""
    # hidden / filters can round below the hidden width; (hidden + 0.5) / filters cannot.
    candidates = [published] + sorted({c / filters for filters, hidden in layers for c in (hidden, hidden + 0.5)})
    for ratio in candidates:
        if 0 < ratio < 1 and all(width(filters, ratio) == hidden for filters, hidden in layers):
            return ratio
    raise ArchitectureError(f"no {name} gives the hidden widths {sorted(set(layers))} (filters, width) of the "
                            "original's layers")
