"""The SimCLR augmentation pipeline and the named ops of the paper's ablation.

The pipeline of SimCLR, Chen et al. 2020, arXiv:2002.05709, §3 and Appendix A.

`AugmentConfig` holds every probability, strength and range; `build_pipeline`
turns it into a `Compose` of ops. `ops` chooses which ops run and in what order,
by name, so users can reproduce the paper's augmentation study (its Figure 5):
e.g. ("crop", "flip", "color_jitter", "grayscale") or ("crop", "cutout").
"""

import dataclasses
from typing import Callable

from simclr_tf.augment.color import ColorJitter, Grayscale
from simclr_tf.augment.compose import AugmentOp, Clip, Compose, RandomApply, check_probability, check_range
from simclr_tf.augment.filters import GaussianBlur, GaussianNoise, Sobel
from simclr_tf.augment.geometric import Cutout, RandomFlip, RandomResizedCrop, RandomRotation90
from simclr_tf.errors import ConfigError

SIMCLR_OPS = ("crop", "flip", "color_jitter", "grayscale", "blur")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Every knob of the SimCLR views; defaults are the paper's ImageNet settings.

    For CIFAR-size images the paper uses color_jitter_strength=0.5 and no blur:
    `AugmentConfig.for_image_size(32)` picks those.
    """

    image_size: int = 224
    ops: tuple[str, ...] = SIMCLR_OPS
    crop_area_range: tuple[float, float] = (0.08, 1.0)
    crop_aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3)
    crop_max_attempts: int = 100
    flip_probability: float = 0.5
    color_jitter_strength: float = 1.0
    color_jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5
    blur_sigma_range: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1
    cutout_probability: float = 1.0
    cutout_size_fraction: float = 0.5
    rotation_probability: float = 1.0
    noise_probability: float = 1.0
    noise_stddev_range: tuple[float, float] = (0.0, 0.1)
    sobel_probability: float = 1.0

    def __post_init__(self):
        if self.image_size < 1:
            raise ConfigError("AugmentConfig.image_size", "must be >= 1", value=self.image_size)
        unknown = [name for name in self.ops if name not in OP_BUILDERS]
        if unknown:
            raise ConfigError("AugmentConfig.ops", f"holds unknown augmentation(s) {unknown}; choose from "
                                                   f"{sorted(OP_BUILDERS)}")
        checks = [(field.name, check_probability, ()) for field in dataclasses.fields(self)
                  if field.name.endswith("_probability")]
        checks.append(("crop_area_range", check_range, (1e-6, 1.0)))
        for name, check, bounds in checks:
            try:
                check(name, getattr(self, name), *bounds)
            except ValueError as error:
                raise ConfigError(f"AugmentConfig.{name}", str(error).removeprefix(f"{name} ")) from error
        # Building validates each op's own arguments (e.g. blur vs image_size) now, not mid-run.
        for name in self.ops:
            try:
                OP_BUILDERS[name](self)
            except ValueError as error:  # The op names its own arguments; say which op of the config.
                raise ConfigError("AugmentConfig.ops", f"has {name!r}, which this config cannot build: {error}") \
                    from error

    @classmethod
    def for_image_size(cls, image_size: int, **overrides) -> "AugmentConfig":
        """The paper's settings for this resolution: CIFAR-size (<= 32 px) images use
        colour strength 0.5 and no blur (SimCLR Appendix B.9)."""
        if image_size <= 32:
            defaults = dict(color_jitter_strength=0.5, ops=tuple(o for o in SIMCLR_OPS if o != "blur"))
        else:
            defaults = {}
        return cls(image_size=image_size, **{**defaults, **overrides})


OP_BUILDERS: dict[str, Callable[[AugmentConfig], AugmentOp]] = {
    "crop": lambda c: RandomResizedCrop(
        c.image_size, c.crop_area_range, c.crop_aspect_ratio_range, c.crop_max_attempts
    ),
    "flip": lambda c: RandomFlip(c.flip_probability),
    "color_jitter": lambda c: RandomApply(ColorJitter(c.color_jitter_strength), c.color_jitter_probability),
    "grayscale": lambda c: RandomApply(Grayscale(), c.grayscale_probability),
    "blur": lambda c: RandomApply(
        GaussianBlur(c.image_size, c.blur_sigma_range, c.blur_kernel_fraction), c.blur_probability
    ),
    "cutout": lambda c: RandomApply(Cutout(c.cutout_size_fraction), c.cutout_probability),
    "rotate": lambda c: RandomApply(RandomRotation90(), c.rotation_probability),
    "noise": lambda c: RandomApply(GaussianNoise(c.noise_stddev_range), c.noise_probability),
    "sobel": lambda c: RandomApply(Sobel(), c.sobel_probability),
}


def build_pipeline(config: AugmentConfig) -> Compose:
    """The ops named in `config.ops`, in that order, then a final clip to [0, 1].

    Without "crop", images are only resized, so every view has `image_size`.
    """
    ops = [OP_BUILDERS[name](config) for name in config.ops]
    if "crop" not in config.ops:
        ops.insert(0, RandomResizedCrop(config.image_size, area_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0)))
    return Compose(tuple(ops) + (Clip(),))


def parse_ops(text: str) -> tuple[str, ...]:
    """'crop,flip,color_jitter' -> ('crop', 'flip', 'color_jitter'), for CLI flags."""
    return tuple(name.strip() for name in text.split(",") if name.strip())
