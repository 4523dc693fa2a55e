"""Networks: the ResNet encoder f(.), the projection head g(.), and the SimCLR model (SPEC §2, §3)."""

from simclr_tf.models.heads import ProjectionHead, SupervisedHead
from simclr_tf.models.resnet import DEPTHS, OUTPUT_NAMES, ResNet
from simclr_tf.models.resnet_blocks import (
    BlockGroup,
    BottleneckBlock,
    Conv2DFixedPadding,
    ResidualBlock,
    SelectiveKernelConv2D,
    SqueezeExcitation,
)
from simclr_tf.models.simclr_model import SimCLRModel

ENCODERS = {"resnet": ResNet}

__all__ = [
    "DEPTHS",
    "ENCODERS",
    "OUTPUT_NAMES",
    "BlockGroup",
    "BottleneckBlock",
    "Conv2DFixedPadding",
    "ProjectionHead",
    "ResNet",
    "ResidualBlock",
    "SelectiveKernelConv2D",
    "SimCLRModel",
    "SqueezeExcitation",
    "SupervisedHead",
]
