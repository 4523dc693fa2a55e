"""SimCLR data augmentation: composable stateless ops and the paper's pipeline.

The pipeline of SimCLR, Chen et al. 2020, arXiv:2002.05709, §3 and Appendix A.
"""

from simclr_tf.augment.color import ColorJitter, Grayscale
from simclr_tf.augment.compose import AugmentOp, Clip, Compose, RandomApply
from simclr_tf.augment.filters import GaussianBlur, GaussianNoise, Sobel
from simclr_tf.augment.geometric import (
    Cutout,
    RandomFlip,
    RandomResizedCrop,
    RandomRotation90,
    preprocess_for_eval,
    sample_crop_box,
)
from simclr_tf.augment.pipeline import OP_BUILDERS, SIMCLR_OPS, AugmentConfig, build_pipeline, parse_ops
from simclr_tf.augment.seeds import as_seed
from simclr_tf.augment.views import make_views, to_unit_float

__all__ = [
    "AugmentConfig", "AugmentOp", "Clip", "ColorJitter", "Compose", "Cutout", "GaussianBlur",
    "GaussianNoise", "Grayscale", "OP_BUILDERS", "RandomApply", "RandomFlip", "RandomResizedCrop",
    "RandomRotation90", "SIMCLR_OPS", "Sobel", "as_seed", "build_pipeline", "make_views",
    "parse_ops", "preprocess_for_eval", "sample_crop_box", "to_unit_float",
]
