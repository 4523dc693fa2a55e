"""Networks: the ResNet encoder f(.), the projection head g(.), and the SimCLR model.

The framework of SimCLR, Chen et al. 2020, arXiv:2002.05709, §2.1.
"""

from simclr_tf.models.block_group import BlockGroup
from simclr_tf.models.conv2d_fixed_padding import Conv2DFixedPadding
from simclr_tf.models.heads import ProjectionHead, SupervisedHead
from simclr_tf.models.resnet import DEPTHS, ResNet
from simclr_tf.models.resnet_blocks import BottleneckBlock, ResidualBlock
from simclr_tf.models.selective_kernel import SelectiveKernelConv2D
from simclr_tf.models.simclr_model import (
    ENCODER_OUTPUTS,
    OUTPUT_NAMES,
    PROJECTION_OUTPUTS,
    REPRESENTATION,
    SUPERVISED_OUTPUT,
    SimCLRModel,
)
from simclr_tf.models.squeeze_excitation import SqueezeExcitation

ENCODERS = {"resnet": ResNet}

__all__ = [
    "DEPTHS",
    "ENCODERS",
    "ENCODER_OUTPUTS",
    "OUTPUT_NAMES",
    "PROJECTION_OUTPUTS",
    "REPRESENTATION",
    "SUPERVISED_OUTPUT",
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
